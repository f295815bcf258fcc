//! The connector's error type.

use std::path::PathBuf;

use state_core::StateError;

/// Result alias of this crate.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// What can go wrong in the connector library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file {}: {reason}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A configuration value is not acceptable.
    #[error("invalid `{key}`: {reason}")]
    InvalidConfig {
        /// The full key, e.g. `plugin_config.batch_size`.
        key: String,
        /// Why, and what is expected.
        reason: String,
    },
    /// State management failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl ConnectorError {
    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectorError::State(e) => e.is_retryable(),
            _ => false,
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ConnectorError::InvalidConfig {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}
