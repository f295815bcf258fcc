//! Where messages go. An output acknowledges a batch only once it is durable
//! there; the source advances its state only after that acknowledgement.

mod elasticsearch;
mod file;

use std::fmt;

use async_trait::async_trait;

use crate::message::Message;

pub use elasticsearch::ElasticsearchOutput;
pub use file::{FileOutput, StdoutOutput};

/// Why an output could not take a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// Could not write now; the same batch may be sent again later.
    #[error("{output} output is unavailable: {reason}")]
    Unavailable {
        /// Which output (`file /path`, `stdout`, `elasticsearch http://host/index`).
        output: String,
        /// What failed.
        reason: String,
    },
    /// Refused for a reason retrying will not fix.
    #[error("{output} output refused the batch: {reason}")]
    Refused {
        /// Which output.
        output: String,
        /// Why.
        reason: String,
    },
}

impl OutputError {
    /// Whether sending the same batch again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, OutputError::Unavailable { .. })
    }
}

/// A destination for messages.
#[async_trait]
pub trait Output: Send + Sync + fmt::Debug {
    /// Delivers `batch`; `Ok` means every message is durable at the destination.
    /// On `Err` nothing is acknowledged: the batch will be sent again, so
    /// destinations see at-least-once delivery (deduplicate by message id).
    async fn send(&mut self, batch: &[Message]) -> Result<(), OutputError>;

    /// Flushes and releases resources.
    async fn close(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}
