//! The bulk crate's error type.

use crate::request::BulkRequest;

/// What `build`, `add`, `flush` and `close` can report. Errors about a request
/// hand the request back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BulkError {
    /// A builder setting is not acceptable.
    #[error("invalid bulk processor setting `{key}`: {reason}")]
    InvalidConfig {
        /// The setting.
        key: String,
        /// Why.
        reason: String,
    },
    /// The request is incomplete or its document could not be serialised.
    #[error("invalid bulk request ({} {}): {reason}", request.op().as_str(), describe(request))]
    InvalidRequest {
        /// Why.
        reason: String,
        /// The request, handed back.
        request: Box<BulkRequest>,
    },
    /// The request alone is larger than the memory bound.
    #[error(
        "bulk request {} is {size} bytes, more than max_buffered_bytes ({limit}); raise the limit",
        describe(request)
    )]
    TooLarge {
        /// Its NDJSON size.
        size: usize,
        /// The memory bound.
        limit: usize,
        /// The request, handed back.
        request: Box<BulkRequest>,
    },
    /// The processor was closed; the request was not taken.
    #[error("the bulk processor is closed; request {} was not added", describe(.0))]
    Closed(Box<BulkRequest>),
    /// `close_with_deadline` gave up while this call was waiting.
    #[error("the bulk processor was stopped at its close deadline")]
    Cancelled,
}

fn describe(r: &BulkRequest) -> String {
    format!(
        "{}/{}",
        r.index_name().unwrap_or("<no index>"),
        r.doc_id().unwrap_or("<no id>")
    )
}
