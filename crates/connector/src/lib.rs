#![doc = include_str!("../README.md")]

pub mod config;
mod error;
pub mod message;
pub mod output;
pub mod state;

pub use config::{ConnectorConfig, PluginConfig, QuerySpec};
pub use error::{ConnectorError, Result};
pub use message::{Message, MessageId};
pub use output::{FileOutput, Output, OutputError, StdoutOutput};
