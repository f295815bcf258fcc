#![doc = include_str!("../README.md")]

pub mod audit;
pub mod config;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "iggy")]
pub mod iggy;
pub mod message;
pub mod metrics;
pub mod output;
pub mod progress;
pub mod run;
#[cfg(feature = "iggy")]
pub mod sink;
pub mod source;
pub mod state;

pub use config::{
    ConnectorConfig, HttpUrl, OutputConfig, Pagination, PluginConfig, QuerySpec, Secret,
};
pub use error::{ConnectorError, Result};
pub use message::{Message, MessageId};
pub use metrics::{Metrics, MetricsServer};
pub use output::{ElasticsearchOutput, FileOutput, Output, OutputError, StdoutOutput};
pub use progress::{ProgressBar, RunObserver};
pub use run::{RunOptions, RunSummary, open_with_retry, run};
pub use source::{
    Ack, Batch, ElasticsearchSource, LATE_COUNT_FIELD, LATE_FIELD, ReadMode, ServerInfo,
};
