//! The connector's error type.

use std::path::PathBuf;

use es_query::QueryError;
use state_core::StateError;

use crate::output::OutputError;

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
    /// The configuration text is neither TOML nor the documentation's dialect
    /// of it (`key = {` over several lines).
    #[error("{origin}, line {line}: {reason}")]
    ConfigSyntax {
        /// The file, or "the configuration text" when none was read.
        origin: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong there and how to write it.
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
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach {url} ({what}): {reason}; retrying with backoff")]
    Unreachable {
        /// The cluster URL, without credentials.
        url: String,
        /// The request (`search logs-*`, `open point in time`...).
        what: String,
        /// What failed.
        reason: String,
    },
    /// The server's TLS certificate was refused: not signed by a trusted CA
    /// (`ca_file`), expired, or for another host name. Asking again cannot help.
    #[error(
        "cannot reach {url} ({what}): its TLS certificate was refused: {reason}; check \
         `plugin_config.ca_file` (the CA that signed the server's certificate) and that the \
         URL's host name is one the certificate names"
    )]
    TlsCertificate {
        /// The cluster URL, without credentials.
        url: String,
        /// The request (`search logs-*`, `open point in time`...).
        what: String,
        /// What the TLS library said.
        reason: String,
    },
    /// The server answered, but the answer was refused (an error, malformed, incomplete).
    #[error("{what} at {url}: {source}")]
    Search {
        /// The cluster URL, without credentials.
        url: String,
        /// The request (`search logs-*`, `open point in time`...).
        what: String,
        /// What was wrong with the answer.
        #[source]
        source: QueryError,
    },
    /// An output failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The input of `es-connector sink` failed.
    #[error("{input} input failed: {reason}")]
    Input {
        /// Which input.
        input: String,
        /// What failed, and what to do when a person must act.
        reason: String,
        /// Whether trying again later may succeed.
        retryable: bool,
    },
    /// A method that needs [`crate::ElasticsearchSource::open`] was called before it.
    #[error("the source is not open: call open() first")]
    NotOpen,
    /// [`crate::ElasticsearchSource::commit`] was given a batch out of order.
    #[error(
        "batch {got} cannot be committed: the next batch to commit is {expected}; commit batches in the order poll returned them"
    )]
    OutOfOrder {
        /// The sequence number of the next batch to commit.
        expected: u64,
        /// The sequence number of the batch given.
        got: u64,
    },
}

impl ConnectorError {
    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectorError::State(e) => e.is_retryable(),
            ConnectorError::Unreachable { .. } => true,
            // Answers that will not change by asking again stop the run: a
            // refused query (400), bad credentials (401/403). A missing index
            // (404) may still be created, so it is retried (see `is_missing_index`).
            ConnectorError::Search { source, .. } => !matches!(
                source,
                QueryError::InvalidConfig { .. }
                    | QueryError::InvalidCursor { .. }
                    | QueryError::ServerError {
                        status: 400 | 401 | 403 | 405 | 413,
                        ..
                    }
            ),
            ConnectorError::Output(e) => e.is_retryable(),
            ConnectorError::Input { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Whether the server said the configured index does not exist.
    pub fn is_missing_index(&self) -> bool {
        matches!(
            self,
            ConnectorError::Search { source: QueryError::ServerError { status: 404, error_type, .. }, .. }
                if error_type.contains("index_not_found")
        )
    }

    /// Whether this is a state compare-and-set conflict: another writer owns the state.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ConnectorError::State(StateError::Conflict { .. }))
    }

    pub(crate) fn invalid(key: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ConnectorError::InvalidConfig {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(status: u16, error_type: &str) -> ConnectorError {
        ConnectorError::Search {
            url: "http://h:9200".into(),
            what: "search logs".into(),
            source: QueryError::ServerError {
                status,
                error_type: error_type.into(),
                reason: "r".into(),
            },
        }
    }

    #[test]
    fn permanent_answers_stop_transient_ones_are_retried() {
        for status in [400, 401, 403] {
            assert!(!search(status, "x").is_retryable(), "{status}");
        }
        for status in [429, 502, 503, 504] {
            assert!(search(status, "x").is_retryable(), "{status}");
        }
        let missing = search(404, "index_not_found_exception");
        assert!(missing.is_retryable(), "an index may still be created");
        assert!(missing.is_missing_index());
        assert!(!search(404, "other").is_missing_index());
    }
}
