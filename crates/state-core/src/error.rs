//! The one error type every state backend reports through.

use std::fmt;

/// Result alias used across the state crates.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, saving or managing state.
///
/// Variants are named by meaning, not by backend: a caller decides what to do
/// from the variant alone, and [`StateError::is_retryable`] says whether trying
/// the same call again later can succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// No state is stored under this id.
    #[error("state `{id}` was not found in the {backend} store")]
    NotFound {
        /// The state id that was looked up.
        id: String,
        /// The backend that was asked (`file`, `sled`, `redis`, `elasticsearch`, `memory`).
        backend: &'static str,
    },

    /// A compare-and-set save lost: somebody else saved this state since we read it.
    #[error(
        "state `{id}` was changed by another writer ({reason}); another connector instance is \
         probably using the same state_id: give each instance its own state_id, or stop the \
         other one and restart this one so it reloads the state"
    )]
    Conflict {
        /// The state id whose save was refused.
        id: String,
        /// What the store found instead of what we expected.
        reason: String,
    },

    /// The stored bytes are not a valid state document. Never replaced automatically.
    #[error(
        "state `{id}` at {location} is corrupt: {reason}. It was left untouched: repair it, \
         restore it from a backup or an export (`es-connector state import`), or delete it to \
         start from scratch"
    )]
    Corrupt {
        /// The state id.
        id: String,
        /// Where the bad bytes live (file path, Redis key, index/document).
        location: String,
        /// Why they could not be read.
        reason: String,
    },

    /// The stored document was written by a newer version of this software.
    #[error(
        "state `{id}` at {location} has format version {found}, but this build understands \
         versions up to {supported}; upgrade this program, it will not rewrite a newer state"
    )]
    UnsupportedVersion {
        /// The state id.
        id: String,
        /// Where the document lives.
        location: String,
        /// The version found in the document.
        found: u64,
        /// The newest version this build reads and writes.
        supported: u32,
    },

    /// The backend cannot be reached right now (connection refused, timeout, lock busy...).
    /// Retrying later can succeed.
    #[error("{backend} state store is unavailable: {reason}")]
    Unavailable {
        /// The backend name.
        backend: &'static str,
        /// What failed, naming the endpoint or path.
        reason: String,
    },

    /// The backend answered, but refused the operation for a reason retrying will not fix
    /// (permission denied, wrong key type, mapping error...).
    #[error("{backend} state store refused the operation: {reason}")]
    Backend {
        /// The backend name.
        backend: &'static str,
        /// What the backend said, naming the path, key or index.
        reason: String,
    },

    /// A configuration value or a state id is not acceptable.
    #[error("invalid `{key}`: {reason}")]
    InvalidConfig {
        /// The configuration key (e.g. `state.storage_config.url`) or `state_id`.
        key: String,
        /// Why it is refused and what is expected instead.
        reason: String,
    },
}

impl StateError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Unavailable { .. })
    }

    /// Shorthand for [`StateError::InvalidConfig`].
    pub fn invalid_config(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        StateError::InvalidConfig {
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`StateError::Unavailable`].
    pub fn unavailable(backend: &'static str, reason: impl fmt::Display) -> Self {
        StateError::Unavailable {
            backend,
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`StateError::Backend`].
    pub fn backend(backend: &'static str, reason: impl fmt::Display) -> Self {
        StateError::Backend {
            backend,
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`StateError::Conflict`].
    pub fn conflict(id: impl Into<String>, reason: impl fmt::Display) -> Self {
        StateError::Conflict {
            id: id.into(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(StateError::unavailable("redis", "connection refused").is_retryable());
        assert!(!StateError::backend("file", "permission denied").is_retryable());
        assert!(!StateError::conflict("a", "revision moved").is_retryable());
        assert!(!StateError::invalid_config("state_id", "empty").is_retryable());
    }

    #[test]
    fn corrupt_message_names_location_and_way_out() {
        let e = StateError::Corrupt {
            id: "c1".into(),
            location: "/var/lib/states/c1.json".into(),
            reason: "EOF while parsing".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("/var/lib/states/c1.json"), "{msg}");
        assert!(msg.contains("delete it"), "{msg}");
    }
}
