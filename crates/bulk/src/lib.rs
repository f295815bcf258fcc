#![doc = include_str!("../README.md")]

mod backoff;
mod error;
#[cfg(feature = "http")]
mod http;
mod processor;
mod request;
mod response;
mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
mod transport;

pub use backoff::{Backoff, JitterRng};
pub use error::BulkError;
#[cfg(feature = "http")]
pub use http::HttpTransport;
pub use processor::{
    AfterFn, BeforeFn, BulkProcessor, BulkProcessorBuilder, CloseReport, DEFAULT_BULK_ACTIONS,
    DEFAULT_BULK_SIZE, DEFAULT_RETRY_STATUSES, FailedItem, FailureFn,
};
pub use request::{BulkRequest, OpType, VersionType};
pub use response::{Decision, ItemDecision, ItemResult, ResultKind, decide};
pub use stats::{BulkStats, WorkerStats};
pub use transport::{Transport, TransportError, TransportResponse};
