//! Which server we talk to, detected from the `GET /` answer (or, where `GET /` is
//! not there, from the local node's info).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{QueryError, Result};
use crate::request::{Method, Request};

/// The server family and version: decides PIT paths and which tiebreakers exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Flavor {
    /// Elasticsearch (any distribution that is not OpenSearch).
    Elasticsearch {
        /// Major version.
        major: u32,
        /// Minor version.
        minor: u32,
    },
    /// OpenSearch (`version.distribution == "opensearch"`).
    OpenSearch {
        /// Major version.
        major: u32,
        /// Minor version.
        minor: u32,
    },
}

impl Flavor {
    /// Reads the answer to `GET /`: `version.distribution == "opensearch"` means
    /// OpenSearch, anything else Elasticsearch; the version is `version.number`.
    pub fn from_root_response(body: &[u8]) -> Result<Flavor> {
        const WHAT: &str = "GET /";
        let root: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| QueryError::malformed(WHAT, format!("not JSON ({e})"), body))?;
        let version = root
            .get("version")
            .ok_or_else(|| QueryError::malformed(WHAT, "no `version` object", body))?;
        let number = version
            .get("number")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| QueryError::malformed(WHAT, "no `version.number` string", body))?;
        let (major, minor) = parse_version(number).ok_or_else(|| {
            QueryError::malformed(
                WHAT,
                format!("version `{number}` is not MAJOR.MINOR[...]"),
                body,
            )
        })?;
        let distribution = version.get("distribution").and_then(|d| d.as_str());
        Ok(if distribution == Some("opensearch") {
            Flavor::OpenSearch { major, minor }
        } else {
            Flavor::Elasticsearch { major, minor }
        })
    }

    /// Where to ask for the version when `GET /` is not there: `GET /_nodes/_local`,
    /// filtered to the node's `version` and `build_flavor`; read the answer with
    /// [`Flavor::from_local_node_response`].
    pub fn local_node_request() -> Request {
        Request::new(Method::Get, "/_nodes/_local")
            .param("filter_path", "nodes.*.version,nodes.*.build_flavor")
    }

    /// Reads the answer to [`Flavor::local_node_request`], for servers whose `GET /` is not
    /// there (a minimal Elasticsearch 8 distribution answers it with 405): the flavour
    /// and the version string of the node that answered. Elasticsearch (since 6.3)
    /// reports a `build_flavor`; OpenSearch does not.
    pub fn from_local_node_response(body: &[u8]) -> Result<(Flavor, String)> {
        const WHAT: &str = "GET /_nodes/_local";
        let doc: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| QueryError::malformed(WHAT, format!("not JSON ({e})"), body))?;
        let node = doc
            .get("nodes")
            .and_then(serde_json::Value::as_object)
            .and_then(|nodes| nodes.values().next())
            .ok_or_else(|| QueryError::malformed(WHAT, "no node in `nodes`", body))?;
        let number = node
            .get("version")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| QueryError::malformed(WHAT, "no `version` string", body))?;
        let (major, minor) = parse_version(number).ok_or_else(|| {
            QueryError::malformed(
                WHAT,
                format!("version `{number}` is not MAJOR.MINOR[...]"),
                body,
            )
        })?;
        let flavor = if node.get("build_flavor").is_some() {
            Flavor::Elasticsearch { major, minor }
        } else {
            Flavor::OpenSearch { major, minor }
        };
        Ok((flavor, number.to_owned()))
    }

    /// Whether point in time searches exist: Elasticsearch >= 7.10, OpenSearch >= 2.4.
    pub fn supports_pit(self) -> bool {
        match self {
            Flavor::Elasticsearch { major, minor } => (major, minor) >= (7, 10),
            Flavor::OpenSearch { major, minor } => (major, minor) >= (2, 4),
        }
    }

    /// Whether the `_shard_doc` sort (the implicit PIT tiebreaker) exists:
    /// Elasticsearch >= 7.12, OpenSearch >= 3.3 (opensearch-project/OpenSearch#18924).
    pub fn supports_shard_doc(self) -> bool {
        match self {
            Flavor::Elasticsearch { major, minor } => (major, minor) >= (7, 12),
            Flavor::OpenSearch { major, minor } => (major, minor) >= (3, 3),
        }
    }

    /// Whether this is OpenSearch.
    pub fn is_opensearch(self) -> bool {
        matches!(self, Flavor::OpenSearch { .. })
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flavor::Elasticsearch { major, minor } => write!(f, "Elasticsearch {major}.{minor}"),
            Flavor::OpenSearch { major, minor } => write!(f, "OpenSearch {major}.{minor}"),
        }
    }
}

/// `"8.11.1"`, `"8.0.0-SNAPSHOT"`, `"3.8.0"` -> (major, minor).
fn parse_version(number: &str) -> Option<(u32, u32)> {
    let mut parts = number.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("8.11.1"), Some((8, 11)));
        assert_eq!(parse_version("8.0.0-SNAPSHOT"), Some((8, 0)));
        assert_eq!(parse_version("8"), None);
        assert_eq!(parse_version("x.y"), None);
    }

    #[test]
    fn capabilities_at_their_boundaries() {
        let es = |major, minor| Flavor::Elasticsearch { major, minor };
        let os = |major, minor| Flavor::OpenSearch { major, minor };
        assert!(!es(7, 9).supports_pit());
        assert!(es(7, 10).supports_pit());
        assert!(!es(7, 11).supports_shard_doc());
        assert!(es(7, 12).supports_shard_doc());
        assert!(es(8, 0).supports_shard_doc());
        assert!(!os(2, 3).supports_pit());
        assert!(os(2, 4).supports_pit());
        assert!(!os(3, 2).supports_shard_doc());
        assert!(os(3, 3).supports_shard_doc());
    }
}
