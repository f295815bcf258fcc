#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod audit;
mod backfill;
mod build;
mod cursor;
mod error;
mod flavor;
#[cfg(feature = "elasticsearch")]
mod official;
mod request;
mod response;
mod spec;

pub use audit::parse_bucket_counts;
pub use backfill::backfill_hits;
pub use cursor::Cursor;
pub use error::{QueryError, RECEIVED_SNIPPET_BYTES, Result};
pub use flavor::Flavor;
#[cfg(feature = "elasticsearch")]
pub use official::Answer;
pub use request::{Method, Request};
pub use response::{CONTEXT_MISSING, Hit, PitId, ScrollId, SearchPage, parse_close, parse_count};
pub use spec::{
    DEFAULT_BATCH_SIZE, DEFAULT_TIMESTAMP_FIELD, MAX_BATCH_SIZE, MissingTimestamp, QueryConfig,
    QuerySpec, RANGE_DATE_FORMAT, Slice, Tiebreaker, TimeBound, TimestampKind,
};

/// Re-exported so callers name the same raw JSON type as [`Hit::source`].
pub use serde_json::value::RawValue;
