#![doc = include_str!("../README.md")]

pub mod config;
mod error;
pub mod state;

pub use config::{ConnectorConfig, PluginConfig, QuerySpec};
pub use error::{ConnectorError, Result};
