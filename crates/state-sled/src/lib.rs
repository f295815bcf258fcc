#![doc = include_str!("../README.md")]

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod record;
mod store;

pub use store::SledStore;
