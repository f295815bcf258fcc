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

/// Whether a `_bulk` call that got no answer may have reached the server.
/// It decides what may be sent again: see [`Resend`](crate::Resend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Certainly not processed: the connection could not be opened (refused,
    /// host name not resolved, TLS handshake failed, connect timeout) or the
    /// request could not be built. Sending it again is safe for every request.
    NotSent,
    /// Sent, or possibly sent, and no complete answer came back (timeout,
    /// connection reset or closed while waiting, answer cut off): the server
    /// may have applied any part of it. When in doubt, a transport says this.
    MaybeApplied,
}

/// A `_bulk` call that got no HTTP answer, and whether it may have been applied.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    message: String,
    delivery: Delivery,
}

impl TransportError {
    /// The request certainly did not reach the server (see [`Delivery::NotSent`]).
    pub fn not_sent(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            delivery: Delivery::NotSent,
        }
    }

    /// The request may have reached the server (see [`Delivery::MaybeApplied`]).
    pub fn maybe_applied(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            delivery: Delivery::MaybeApplied,
        }
    }

    /// Whether the request may have reached the server.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Sends one NDJSON body to `_bulk`. Implement it to put anything between the
/// processor and the cluster (tests put a fault-injecting proxy; users may wrap
/// their own client).
///
/// A call that gets no HTTP answer must say whether the request may have reached
/// the server ([`TransportError::not_sent`] or [`TransportError::maybe_applied`]):
/// after "maybe applied" the processor resends only the requests that cannot be
/// applied twice.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// POSTs `body` (NDJSON) to the bulk endpoint.
    async fn bulk(&self, body: Bytes) -> Result<TransportResponse, TransportError>;
}
