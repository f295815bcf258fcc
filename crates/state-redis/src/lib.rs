#![doc = include_str!("../README.md")]

mod builder;
mod error;
mod keys;
mod scripts;
mod store;

pub use builder::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RECONNECT_RETRIES, DEFAULT_RESPONSE_TIMEOUT,
    RedisStoreBuilder,
};
pub use keys::escape_glob;
pub use store::RedisStore;

/// The `redis` crate this store is built on, for [`RedisStore::connection`].
pub use redis;
