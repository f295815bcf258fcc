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
        let seq = seq_no.map(|s| s.to_string()).unwrap_or_default();
        Self::of_decimal(index, id, &seq)
    }

    /// [`MessageId::of`] with `_seq_no` already in decimal (empty without one).
    fn of_decimal(index: &str, id: &str, seq: &str) -> Self {
        const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
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
        // `_seq_no` in decimal once, for the id and the header.
        let seq = seq_no.map(|s| s.to_string());
        let id_of = MessageId::of_decimal(index, id, seq.as_deref().unwrap_or_default());
        let mut headers = BTreeMap::new();
        headers.insert(HEADER_INDEX, index.to_owned());
        headers.insert(HEADER_ID, id.to_owned());
        if let Some(ts) = timestamp {
            headers.insert(HEADER_TIMESTAMP, ts);
        }
        if let Some(seq) = seq {
            headers.insert(HEADER_SEQ_NO, seq);
        }
        Message {
            id: id_of,
            headers,
            payload,
        }
    }

    /// The JSON line outputs write: `{"id": "...", "headers": {...}, "payload": {...}}`.
    pub fn to_json_line(&self) -> String {
        // Serialising strings and an already-valid raw JSON value cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Appends [`Message::to_json_line`]'s line and a newline to `buf`, without
    /// a string of its own.
    pub fn write_json_line(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        if serde_json::to_writer(&mut *buf, self).is_err() {
            // Cannot happen (see `to_json_line`); never leave half a line.
            buf.truncate(start);
            return;
        }
        buf.push(b'\n');
    }
}

/// Where a message's document goes in a target index (the Elasticsearch output,
/// `es-connector sink` and the sink plugin alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDocument {
    /// `_id`: `{es_index}/{es_id}` for a document of the Elasticsearch source —
    /// documents of different source indices (read through a pattern or an
    /// alias) never collide, and sending one again rewrites the same document.
    /// When that would pass Elasticsearch's 512-byte `_id` limit: 32 hex digits,
    /// the [`MessageId`] of the document without its `_seq_no`. With `es_id` but
    /// no `es_index` (a producer of its own): `es_id`. Otherwise the message id
    /// in hex.
    pub id: String,
    /// The source document's `_seq_no` (`es_seq_no`), sent as an `external_gte`
    /// version: an older version never overwrites a newer one, in whatever order
    /// they arrive; the same version sent again is accepted.
    pub version: Option<i64>,
}

impl TargetDocument {
    /// Elasticsearch's longest `_id`, in bytes.
    const MAX_ID: usize = 512;

    /// From the `es_*` header values and the message id.
    pub fn of(
        index: Option<&str>,
        id: Option<&str>,
        seq_no: Option<&str>,
        message_id: MessageId,
    ) -> Self {
        let index = index.filter(|s| !s.is_empty());
        let doc = id.filter(|s| !s.is_empty());
        let id = match (index, doc) {
            (Some(index), Some(doc)) if index.len() + 1 + doc.len() <= Self::MAX_ID => {
                format!("{index}/{doc}")
            }
            (Some(index), Some(doc)) => MessageId::of(index, doc, None).to_string(),
            (None, Some(doc)) if doc.len() <= Self::MAX_ID => doc.to_owned(),
            _ => message_id.to_string(),
        };
        let version = seq_no
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|v| *v >= 0);
        TargetDocument { id, version }
    }

    /// For a message of this crate (its `es_*` headers).
    pub fn of_message(m: &Message) -> Self {
        let header = |name: &str| m.headers.get(name).map(String::as_str);
        Self::of(
            header(HEADER_INDEX),
            header(HEADER_ID),
            header(HEADER_SEQ_NO),
            m.id,
        )
    }

    /// The `_bulk` index request for this document into `index`.
    pub fn index_request(&self, index: &str, json: Vec<u8>) -> bulk::BulkRequest {
        let request = bulk::BulkRequest::index(index)
            .id(self.id.clone())
            .doc_json(json);
        match self.version {
            Some(v) => request
                .version(v)
                .version_type(bulk::VersionType::ExternalGte),
            None => request,
        }
    }

    /// Whether a refused item of a versioned request only says that the target
    /// already holds a newer version (HTTP 409 `version_conflict_engine_exception`):
    /// nothing to do, nothing lost.
    pub fn superseded(status: Option<u16>, error: &str) -> bool {
        status == Some(409) && error.contains("version_conflict_engine_exception")
    }
}

/// Milliseconds since the epoch from RFC 3339 text or an epoch number (seconds,
/// milliseconds, microseconds or nanoseconds, told apart by magnitude).
pub fn timestamp_millis(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    let n: f64 = text.parse().ok()?;
    if !n.is_finite() {
        return None;
    }
    let abs = n.abs();
    let millis = if abs >= 1e17 {
        n / 1e6
    } else if abs >= 1e14 {
        n / 1e3
    } else if abs >= 1e11 {
        n
    } else {
        n * 1e3
    };
    Some(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_line_is_the_json_line() {
        let payload = RawValue::from_string(r#"{"a":"x\"y"}"#.into()).unwrap_or_default();
        for (seq, ts) in [(Some(7), Some("2024-01-01T00:00:00Z")), (None, None)] {
            let m = Message::new("logs", "id-1", seq, ts.map(String::from), payload.clone());
            assert_eq!(m.id, MessageId::of("logs", "id-1", seq));
            let mut buf = b"before\n".to_vec();
            m.write_json_line(&mut buf);
            assert_eq!(buf, format!("before\n{}\n", m.to_json_line()).into_bytes());
        }
    }

    #[test]
    fn parses_timestamps() {
        let ms = 1_700_000_000_123;
        assert_eq!(timestamp_millis("2023-11-14T22:13:20.123Z"), Some(ms));
        assert_eq!(timestamp_millis("1700000000123"), Some(ms));
        assert_eq!(timestamp_millis("1700000000123000"), Some(ms));
        assert_eq!(timestamp_millis("1700000000123000000"), Some(ms));
        assert_eq!(timestamp_millis("1700000000"), Some(ms - 123));
        assert_eq!(timestamp_millis("yesterday"), None);
    }

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

    #[test]
    fn target_ids_do_not_collide_across_source_indices() {
        let a = TargetDocument::of(Some("logs-a"), Some("1"), Some("5"), MessageId(1));
        let b = TargetDocument::of(Some("logs-b"), Some("1"), Some("5"), MessageId(2));
        assert_eq!(a.id, "logs-a/1");
        assert_eq!(b.id, "logs-b/1");
        assert_eq!(a.version, Some(5));
        // The same document, sent again: the same target.
        assert_eq!(
            a,
            TargetDocument::of(Some("logs-a"), Some("1"), Some("5"), MessageId(9))
        );
    }

    #[test]
    fn target_ids_without_headers_or_too_long() {
        let own = TargetDocument::of(None, Some("m7"), None, MessageId(1));
        assert_eq!(own.id, "m7", "a producer's own es_id is kept");
        let plain = TargetDocument::of(None, None, None, MessageId(0xabc));
        assert_eq!(plain.id, MessageId(0xabc).to_string());
        assert_eq!(plain.version, None);
        let long = "x".repeat(600);
        let t = TargetDocument::of(Some("logs"), Some(&long), Some("-1"), MessageId(1));
        assert_eq!(t.id, MessageId::of("logs", &long, None).to_string());
        assert_eq!(t.version, None, "unassigned seq_no is no version");
    }

    #[test]
    fn only_version_conflicts_are_superseded() {
        let conflict =
            r#"{"type":"version_conflict_engine_exception","reason":"[x]: version conflict"}"#;
        assert!(TargetDocument::superseded(Some(409), conflict));
        assert!(!TargetDocument::superseded(Some(400), conflict));
        assert!(!TargetDocument::superseded(
            Some(409),
            r#"{"type":"other"}"#
        ));
    }
}
