//! The messages a source produces: the document's `_source` as payload, where it
//! came from in headers, and an id that is the same every time the same
//! document version is read.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;

/// Header: the index the document was read from.
pub const HEADER_INDEX: &str = "es_index";
/// Header: the document's `_id`.
pub const HEADER_ID: &str = "es_id";
/// Header: the document's timestamp, as stored.
pub const HEADER_TIMESTAMP: &str = "es_timestamp";
/// Header: the document's `_seq_no`.
pub const HEADER_SEQ_NO: &str = "es_seq_no";

/// A deterministic 128-bit message id.
///
/// FNV-1a (128-bit) over `index`, `0x00`, `_id`, `0x00`, `_seq_no` in decimal.
/// The same document version always gets the same id, so a downstream that
/// deduplicates by id sees each version once. This function is part of the
/// output format: changing it would change every id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

impl MessageId {
    /// The id of document `id` at `seq_no` in `index`.
    pub fn of(index: &str, id: &str, seq_no: Option<i64>) -> Self {
        const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
        let seq = seq_no.map(|s| s.to_string()).unwrap_or_default();
        let mut hash = OFFSET;
        for part in [
            index.as_bytes(),
            b"\0",
            id.as_bytes(),
            b"\0",
            seq.as_bytes(),
        ] {
            for byte in part {
                hash ^= u128::from(*byte);
                hash = hash.wrapping_mul(PRIME);
            }
        }
        MessageId(hash)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for MessageId {
    type Err = std::num::ParseIntError;

    /// Parses the 32 hex digits [`MessageId`]'s `Display` writes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s, 16).map(MessageId)
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One document, ready for an output.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// Deterministic id (see [`MessageId`]).
    pub id: MessageId,
    /// `es_index`, `es_id`, `es_timestamp`, `es_seq_no`.
    pub headers: BTreeMap<&'static str, String>,
    /// The document's `_source`, byte for byte as the server sent it.
    pub payload: Box<RawValue>,
}

impl Message {
    /// A message for a document read from `index`.
    pub fn new(
        index: &str,
        id: &str,
        seq_no: Option<i64>,
        timestamp: Option<String>,
        payload: Box<RawValue>,
    ) -> Self {
        let mut headers = BTreeMap::new();
        headers.insert(HEADER_INDEX, index.to_owned());
        headers.insert(HEADER_ID, id.to_owned());
        if let Some(ts) = timestamp {
            headers.insert(HEADER_TIMESTAMP, ts);
        }
        if let Some(seq) = seq_no {
            headers.insert(HEADER_SEQ_NO, seq.to_string());
        }
        Message {
            id: MessageId::of(index, id, seq_no),
            headers,
            payload,
        }
    }

    /// The JSON line outputs write: `{"id": "...", "headers": {...}, "payload": {...}}`.
    pub fn to_json_line(&self) -> String {
        // Serialising strings and an already-valid raw JSON value cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ids_are_deterministic_and_distinguish_versions() {
        let a = MessageId::of("logs-1", "doc-1", Some(7));
        assert_eq!(a, MessageId::of("logs-1", "doc-1", Some(7)));
        assert_ne!(
            a,
            MessageId::of("logs-1", "doc-1", Some(8)),
            "a new version is a new message"
        );
        assert_ne!(a, MessageId::of("logs-2", "doc-1", Some(7)));
        // The separators keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            MessageId::of("ab", "c", None),
            MessageId::of("a", "bc", None)
        );
        // Pinned: the format is a contract with downstream deduplication.
        assert_eq!(
            MessageId::of("", "", None).to_string(),
            "0880945b4fab1be95aa0733055273845"
        );
    }

    #[test]
    fn json_line_has_id_headers_and_the_raw_payload() {
        let m = Message::new(
            "logs",
            "1",
            Some(3),
            Some("2024-01-15T10:30:00Z".into()),
            raw(r#"{"msg":"hi","n":1.50}"#),
        );
        let line = m.to_json_line();
        assert!(
            line.contains(r#""payload":{"msg":"hi","n":1.50}"#),
            "payload kept byte for byte: {line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["headers"]["es_index"], "logs");
        assert_eq!(v["headers"]["es_seq_no"], "3");
        assert_eq!(v["headers"]["es_timestamp"], "2024-01-15T10:30:00Z");
        assert_eq!(v["id"].as_str().map(str::len), Some(32));
    }
}
