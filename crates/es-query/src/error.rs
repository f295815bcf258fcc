//! The one error type of this crate.

use std::fmt;

/// Result alias used across this crate.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// How many bytes of an unexpected answer an error quotes.
pub const RECEIVED_SNIPPET_BYTES: usize = 200;

/// Everything that can go wrong while building a request or reading an answer.
///
/// Variants are named by meaning: the caller decides what to do from the
/// variant alone. [`QueryError::is_retryable`] says whether sending the same
/// request again later can succeed; [`QueryError::ContextExpired`] means
/// "reopen the point in time (or restart the scroll) and resume from the cursor".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A configuration value is not acceptable.
    #[error("invalid `{key}`: {reason}")]
    InvalidConfig {
        /// The configuration key (e.g. `tiebreaker_field`).
        key: String,
        /// Why it is refused and what is expected instead.
        reason: String,
    },

    /// A stored cursor does not fit this query (another sort, another tiebreaker).
    #[error(
        "the cursor {cursor} does not fit this query: {reason}. It was probably written by a \
         configuration with another timestamp_field/tiebreaker_field; reset the state or restore \
         the previous configuration"
    )]
    InvalidCursor {
        /// The cursor as JSON.
        cursor: String,
        /// What does not fit.
        reason: String,
    },

    /// The answer is not the JSON document expected (HTML from a proxy, truncated body...).
    #[error("unexpected answer to {what}: {reason}; received: {received:?}")]
    Malformed {
        /// Which answer was being read (`search`, `open point in time`, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
        /// The first bytes received (at most [`RECEIVED_SNIPPET_BYTES`]).
        received: String,
    },

    /// The server gave up before searching every shard (`timed_out: true`).
    /// The page may be incomplete, so it is refused as a whole.
    #[error(
        "the search timed out on the server after {took_ms} ms and may be incomplete; it was \
         refused so that no document is skipped: retry, or lower batch_size"
    )]
    TimedOut {
        /// The `took` of the answer, in milliseconds.
        took_ms: u64,
    },

    /// Some shards failed (`_shards.failed > 0`): the page lacks their documents.
    #[error(
        "{failed} of {total} shards failed (first failure: {reason}); the page was refused so \
         that no document is skipped"
    )]
    ShardFailure {
        /// How many shards failed.
        failed: u64,
        /// How many shards were searched.
        total: u64,
        /// The first failure's index, type and reason.
        reason: String,
    },

    /// The point in time or scroll context expired or is unknown on the server
    /// (`search_context_missing_exception`). Open a new one and resume from the cursor
    /// (see [`crate::QuerySpec::cursor_for_new_pit`]).
    #[error(
        "the search context (point in time or scroll) has expired or is unknown: {reason}; open a \
         new one and resume from the cursor, or raise keep_alive"
    )]
    ContextExpired {
        /// What the server said.
        reason: String,
    },

    /// The server answered with an error.
    #[error("the server answered HTTP {status} {error_type}: {reason}")]
    ServerError {
        /// The HTTP status (or the `status` of the error document).
        status: u16,
        /// The error's `type` (e.g. `index_not_found_exception`).
        error_type: String,
        /// The error's `reason`, with its root cause when it says more.
        reason: String,
    },
}

impl QueryError {
    /// Whether sending the same request again later can succeed: time-outs, shard
    /// failures (usually a node restarting), HTTP 429 and 502/503/504.
    ///
    /// [`QueryError::ContextExpired`] is not retryable as such: the context must be
    /// reopened first.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueryError::TimedOut { .. } | QueryError::ShardFailure { .. } => true,
            QueryError::ServerError { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Whether the point in time or scroll must be reopened.
    pub fn is_context_expired(&self) -> bool {
        matches!(self, QueryError::ContextExpired { .. })
    }

    /// Shorthand for [`QueryError::InvalidConfig`].
    pub fn invalid_config(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        QueryError::InvalidConfig {
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl fmt::Display, body: &[u8]) -> Self {
        QueryError::Malformed {
            what,
            reason: reason.to_string(),
            received: snippet(body),
        }
    }
}

/// The first [`RECEIVED_SNIPPET_BYTES`] of `body` as text, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let cut = &body[..body.len().min(RECEIVED_SNIPPET_BYTES)];
    let mut text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > RECEIVED_SNIPPET_BYTES {
        text.push_str("...");
    }
    if body.is_empty() {
        text.push_str("(empty body)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_by_meaning() {
        assert!(QueryError::TimedOut { took_ms: 1 }.is_retryable());
        let server = |status| QueryError::ServerError {
            status,
            error_type: "x".into(),
            reason: "y".into(),
        };
        assert!(server(429).is_retryable());
        assert!(server(503).is_retryable());
        assert!(!server(400).is_retryable());
        assert!(!QueryError::ContextExpired { reason: "x".into() }.is_retryable());
        assert!(!QueryError::invalid_config("index", "empty").is_retryable());
    }

    #[test]
    fn snippet_is_bounded_and_printable() {
        let long = vec![b'a'; 1000];
        assert_eq!(snippet(&long).len(), RECEIVED_SNIPPET_BYTES + 3);
        assert_eq!(snippet(b"a\nb"), "a b");
        assert_eq!(snippet(b""), "(empty body)");
    }
}
