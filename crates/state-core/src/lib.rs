#![doc = include_str!("../README.md")]

mod config;
mod error;
mod ext;
mod id;
mod manager;
mod memory;
mod model;
mod store;

#[cfg(feature = "conformance")]
pub mod bench;
#[cfg(feature = "conformance")]
pub mod conformance;

pub use config::{
    DEFAULT_AUTO_SAVE_INTERVAL, DEFAULT_BASE_PATH, DEFAULT_KEY_PREFIX, DEFAULT_REDIS_URL,
    DEFAULT_SLED_PATH, DEFAULT_STATE_ID, DEFAULT_STATE_INDEX, StateConfig, StorageConfig,
    StorageSettings, StorageType, TRACKABLE_FIELDS, humantime_duration,
};
pub use error::{Result, StateError};
/// The URL, secret and index-name types every crate talking to a cluster shares.
pub use es_endpoint::{self, HttpUrl, IndexName, redact_url, strip_userinfo};
pub use ext::{MigrationReport, StateStoreExt};
pub use id::{MAX_STATE_ID_BYTES, StateId};
pub use manager::{ManagerOptions, StateManager};
pub use memory::{InMemoryStore, check_precondition};
pub use model::{
    ConnectorState, FORMAT_VERSION, ProcessingStats, StateData, StateMetadata, format_timestamp,
};
pub use store::{Precondition, Revision, StateEntry, StateStore, StoreStats, Stored};

/// Re-exported so backends and users name one `async_trait`.
pub use async_trait::async_trait;
