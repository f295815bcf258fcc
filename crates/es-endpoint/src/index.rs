//! The name of one concrete index.

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::Invalid;

/// A concrete index name as Elasticsearch and OpenSearch accept it: not empty,
/// lowercase, at most 255 bytes, none of `\ / * ? " < > | , # :` or a space, not
/// starting with `-`, `_`, `+` or `.`. (Patterns and aliases with `*` are not
/// index names: a source's `index` is not one of these.)
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexName(String);

impl IndexName {
    /// Checks `name`; the error says which rule it breaks.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        let rule = if name.is_empty() {
            Some("is empty")
        } else if name.len() > 255 {
            Some("is longer than 255 bytes")
        } else if name != name.to_lowercase() {
            Some("has uppercase letters")
        } else if name.starts_with(['-', '_', '+', '.']) {
            Some("starts with one of - _ + .")
        } else if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
            Some("contains one of \\ / * ? \" < > | , # : or a space")
        } else {
            None
        };
        match rule {
            Some(rule) => Err(Invalid::new(format!(
                "{name:?} is not a valid index name: it {rule}; write it lowercase, without \\/*?\"<>|,#: or spaces, not starting with -_+."
            ))),
            None => Ok(IndexName(name.to_owned())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IndexName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for IndexName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IndexName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for IndexName {
    type Err = Invalid;

    fn from_str(name: &str) -> Result<Self, Invalid> {
        IndexName::parse(name)
    }
}

impl<'de> Deserialize<'de> for IndexName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        IndexName::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_is_named() {
        for (bad, rule) in [
            ("", "is empty"),
            ("Logs", "uppercase"),
            ("_states", "starts with"),
            (".hidden", "starts with"),
            ("a b", "contains"),
            ("a*", "contains"),
            ("a:b", "contains"),
        ] {
            let e = IndexName::parse(bad).map(|_| ()).unwrap_err();
            assert!(e.reason().contains(rule), "{bad:?}: {e}");
        }
        let long = "a".repeat(256);
        assert!(IndexName::parse(&long).is_err());
        assert!(IndexName::parse(&long[..255]).is_ok());
    }

    #[test]
    fn good_names_are_kept_as_written() {
        for good in ["connector_states", "logs-2026.12.01", "a"] {
            let name = IndexName::parse(good).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((name.as_str(), name.to_string()), (good, good.to_owned()));
        }
    }
}
