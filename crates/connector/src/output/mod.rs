//! Where messages go. An output acknowledges a batch only once it is durable
//! there; the source advances its state only after that acknowledgement.

mod elasticsearch;
mod file;

use std::collections::HashSet;
use std::fmt;

use async_trait::async_trait;

use crate::message::{Message, MessageId};

pub use elasticsearch::{ElasticsearchOutput, ElasticsearchOutputOptions, Refusal};
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

    /// Ids of the messages among the last `window` this destination holds (per
    /// partition, where it has them), read once before the first send: the run loop
    /// skips them, so a crash between a send and the state save repeats nothing. The
    /// default knows none (at-least-once: the re-read batch is sent again).
    async fn recently_delivered(
        &mut self,
        window: usize,
    ) -> Result<HashSet<MessageId>, OutputError> {
        let _ = window;
        Ok(HashSet::new())
    }

    /// Whether a stop may abandon a send in flight (drop its future): the batch is
    /// then not acknowledged and is sent again after a restart. `true` (the
    /// default) suits a send that can wait long on the network (retries,
    /// timeouts); its future must be safe to drop. An output whose send is short
    /// and cannot be undone once begun (a local file write) says `false`: the
    /// run waits for it and commits what it wrote.
    fn cancel_on_stop(&self) -> bool {
        true
    }

    /// Flushes and releases resources.
    async fn close(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}
