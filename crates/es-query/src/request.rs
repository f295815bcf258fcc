//! A pure description of one HTTP request: the connector sends it.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{QueryError, Result};

/// The HTTP method of a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One HTTP request to send: method, path (index names already percent-encoded),
/// query parameters (not encoded) and an optional JSON body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The HTTP method.
    pub method: Method,
    /// The path, starting with `/`, index names percent-encoded (`*` and `,` kept).
    pub path: String,
    /// Query parameters in order, not encoded.
    #[serde(default)]
    pub query: Vec<(String, String)>,
    /// The JSON body, if any (`Content-Type: application/json`).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

impl Request {
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn param(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }

    pub(crate) fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The path followed by the percent-encoded query string, e.g.
    /// `/logs-*/_search?allow_partial_search_results=false`.
    pub fn path_and_query(&self) -> String {
        let mut out = self.path.clone();
        for (i, (key, value)) in self.query.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(&encode(key, b""));
            out.push('=');
            out.push_str(&encode(value, b""));
        }
        out
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `keep`.
fn encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Checks an index expression (`logs-*`, `a,b`, `remote:logs-*`, `<logs-{now/d}>`)
/// and percent-encodes it for a path segment, keeping `*`, `,` and `:`.
pub(crate) fn encode_index(index: &str) -> Result<String> {
    let bad = |reason: &str| QueryError::invalid_config("index", format!("`{index}` {reason}"));
    if index.trim().is_empty() {
        return Err(bad(
            "is empty; give an index, alias, data stream or pattern like `logs-*`",
        ));
    }
    if index.split(',').any(|part| part.trim().is_empty()) {
        return Err(bad("has an empty name in its comma-separated list"));
    }
    if index.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("contains whitespace or control characters"));
    }
    Ok(encode(index, b"*,:"))
}

/// Renders a keep-alive as an Elasticsearch time value: `1m`, `90s`, `1500ms`.
pub(crate) fn time_value(key: &str, duration: Duration) -> Result<String> {
    let millis = duration.as_millis();
    if millis == 0 {
        return Err(QueryError::invalid_config(
            key,
            "must be at least 1ms; a context that expires at once is useless (e.g. \"1m\")",
        ));
    }
    Ok(if millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding_keeps_patterns_and_lists() -> Result<()> {
        assert_eq!(encode_index("logs-*")?, "logs-*");
        assert_eq!(encode_index("a,b-*")?, "a,b-*");
        assert_eq!(encode_index("remote:logs")?, "remote:logs");
        assert_eq!(encode_index("<logs-{now/d}>")?, "%3Clogs-%7Bnow%2Fd%7D%3E");
        assert_eq!(encode_index("a?b#c")?, "a%3Fb%23c");
        assert!(encode_index("").is_err());
        assert!(encode_index("a,,b").is_err());
        assert!(encode_index("a b").is_err());
        Ok(())
    }

    #[test]
    fn time_values() -> Result<()> {
        assert_eq!(time_value("k", Duration::from_secs(60))?, "1m");
        assert_eq!(time_value("k", Duration::from_secs(90))?, "90s");
        assert_eq!(time_value("k", Duration::from_millis(1500))?, "1500ms");
        assert!(time_value("k", Duration::ZERO).is_err());
        Ok(())
    }

    #[test]
    fn path_and_query_encodes_parameters() {
        let r = Request::new(Method::Post, "/a/_search")
            .param("scroll", "1m")
            .param("x", "a b&c");
        assert_eq!(r.path_and_query(), "/a/_search?scroll=1m&x=a%20b%26c");
    }
}
