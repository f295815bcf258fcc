#![doc = include_str!("../README.md")]

mod builder;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "elasticsearch")]
mod official;
mod store;
mod transport;
mod wire;

pub use builder::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_LIST_PAGE_SIZE, DEFAULT_TIMEOUT, EsStoreBuilder,
};
#[cfg(feature = "elasticsearch")]
pub use official::OfficialEsStoreBuilder;
pub use store::EsStore;
pub use wire::index_mapping;

/// Re-exported so users of this crate alone can name the trait and the default index.
pub use state_core::{DEFAULT_STATE_INDEX, StateError, StateStore};
