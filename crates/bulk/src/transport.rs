//! The seam between the processor and the network: one `_bulk` call.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

/// The answer to one `_bulk` call, whatever its status.
#[derive(Debug, Clone)]
pub struct TransportResponse {
    /// HTTP status.
    pub status: u16,
    /// The body, unparsed.
    pub body: Bytes,
}

/// A `_bulk` call that got no HTTP answer. Always worth retrying: nothing is
/// known to have been applied.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Sends one NDJSON body to `_bulk`. Implement it to put anything between the
/// processor and the cluster (tests put a fault-injecting proxy; users may wrap
/// their own client).
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// POSTs `body` (NDJSON) to the bulk endpoint.
    async fn bulk(&self, body: Bytes) -> Result<TransportResponse, TransportError>;
}
