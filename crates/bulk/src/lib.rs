#![doc = include_str!("../README.md")]

mod backoff;
mod batcher;
mod error;
#[cfg(feature = "http")]
mod http;
mod limiter;
#[cfg(feature = "elasticsearch")]
mod official;
mod outcome;
mod policy;
mod processor;
#[cfg(feature = "prometheus")]
mod prometheus;
mod request;
mod response;
mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
mod transport;

pub use backoff::{Backoff, JitterRng};
pub use error::BulkError;
#[cfg(feature = "http")]
pub use http::{DEFAULT_HTTP_TIMEOUT, HttpTransport};
pub use limiter::AdaptiveConcurrency;
#[cfg(feature = "elasticsearch")]
pub use official::{BulkProcessorExt, ElasticsearchTransport};
pub use outcome::{CloseReport, FailedItem, FailureKind};
pub use policy::{DEFAULT_ITEM_RETRY_STATUSES, RetryPolicy};
#[allow(deprecated)]
pub use processor::DEFAULT_RETRY_STATUSES;
pub use processor::{
    AfterFn, BeforeFn, BulkProcessor, BulkProcessorBuilder, DEFAULT_BULK_ACTIONS,
    DEFAULT_BULK_SIZE, FailureFn,
};
pub use request::{BulkRequest, OpType, Resend, VersionType};
pub use response::{
    Decision, ItemDecision, ItemResult, RequestFailure, ResultKind, StatusClass, classify_status,
    decide, decide_unanswered, reconcile,
};
pub use stats::{BulkStats, WorkerStats};
pub use transport::{Delivery, Transport, TransportError, TransportResponse};
