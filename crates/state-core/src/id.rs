//! State ids: validated once, so no backend can be tricked into touching
//! anything outside its own area (a file outside `base_path`, another key
//! namespace, another index).

use std::fmt;

use crate::error::{Result, StateError};

/// The longest accepted state id, in bytes.
pub const MAX_STATE_ID_BYTES: usize = 255;

/// A validated state id.
///
/// Accepted: 1 to 255 bytes of UTF-8 without path separators (`/`, `\`),
/// without NUL or other control characters, and not `.`, `..` or starting
/// with `.` (hidden files and temp files of the file backend start with a dot).
/// Unicode letters are fine.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateId(String);

impl StateId {
    /// Validates `id`, naming it in the error when it is refused.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        validate(&id)?;
        Ok(StateId(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(id: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(StateError::invalid_config(
            "state_id",
            format!("{id:?} is not a valid state id: {why}"),
        ))
    };
    if id.is_empty() {
        return refuse("it is empty");
    }
    if id.len() > MAX_STATE_ID_BYTES {
        return refuse(&format!(
            "it is {} bytes long, the limit is {MAX_STATE_ID_BYTES}",
            id.len()
        ));
    }
    if id.contains(['/', '\\']) {
        return refuse("it contains a path separator");
    }
    if id.starts_with('.') {
        return refuse("it starts with '.' (`.`, `..` and hidden names are reserved)");
    }
    if id.contains("..") {
        return refuse("it contains `..`");
    }
    if id.chars().any(char::is_control) {
        return refuse("it contains NUL or another control character");
    }
    Ok(())
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for StateId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for StateId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for StateId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for StateId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<StateId> for str {
    fn eq(&self, other: &StateId) -> bool {
        self == other.0
    }
}

impl PartialEq<StateId> for &str {
    fn eq(&self, other: &StateId) -> bool {
        *self == other.0
    }
}

impl PartialEq<StateId> for String {
    fn eq(&self, other: &StateId) -> bool {
        *self == other.0
    }
}

impl TryFrom<&str> for StateId {
    type Error = StateError;
    fn try_from(value: &str) -> Result<Self> {
        StateId::new(value)
    }
}

impl TryFrom<String> for StateId {
    type Error = StateError;
    fn try_from(value: String) -> Result<Self> {
        StateId::new(value)
    }
}

/// Ids that every backend must refuse: test data of the conformance suite
/// (`state_core::conformance::HOSTILE_IDS`), not part of the core's API.
#[cfg(any(test, feature = "conformance"))]
pub const HOSTILE_IDS: &[&str] = &[
    "",
    "..",
    ".",
    "../escape",
    "../../etc/passwd",
    "a/../../b",
    "/absolute",
    "dir/file",
    "back\\slash",
    "nul\0byte",
    "line\nbreak",
    "tab\there",
    "bell\u{7}",
    "del\u{7f}",
    ".hidden",
    "a..b",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_ids() {
        for id in [
            "elasticsearch_logs_connector",
            "logs-2024.01",
            "日本語-状態",
            "ünï cødé ✓",
        ] {
            assert_eq!(
                StateId::new(id).map(|i| i.to_string()).ok(),
                Some(id.into())
            );
        }
        let longest = "x".repeat(MAX_STATE_ID_BYTES);
        assert!(StateId::new(longest).is_ok());
    }

    #[test]
    fn refuses_hostile_ids_naming_them() {
        for id in HOSTILE_IDS {
            match StateId::new(*id) {
                Err(StateError::InvalidConfig { key, reason }) => {
                    assert_eq!(key, "state_id");
                    assert!(reason.contains(&format!("{id:?}")), "{reason}");
                }
                other => panic!("{id:?} was not refused: {other:?}"),
            }
        }
        assert!(StateId::new("x".repeat(MAX_STATE_ID_BYTES + 1)).is_err());
        // 86 three-byte characters = 258 bytes: the limit is in bytes, not chars.
        assert!(StateId::new("界".repeat(86)).is_err());
    }
}
