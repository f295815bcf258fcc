//! What goes over the wire: the index mapping, the stored envelope, URL path
//! encoding, revisions and the shapes of the responses this crate reads.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use state_core::{ConnectorState, Revision, format_timestamp};

/// The mapping of the state index.
///
/// `dynamic: strict` refuses any field not listed, and the state document
/// itself lives in `state`, an object with `enabled: false`: it is kept in
/// `_source` verbatim but never parsed into the mapping, so whatever fields a
/// newer release adds to the document can never cause a mapping conflict or a
/// field explosion.
///
/// `id` (keyword) is what [`list`](state_core::StateStore::list) sorts and
/// pages on. `last_updated` and `size_bytes` are typed (a wrong value is
/// refused) but neither indexed nor given doc values: `list` reads them from
/// `_source`, and indexing a date and a number roughly doubled the cost of a
/// save on the test server for nothing this crate queries.
///
/// Use it when the index is created by someone else
/// ([`EsStoreBuilder::with_create_index(false)`](crate::EsStoreBuilder::with_create_index)).
pub fn index_mapping() -> Value {
    json!({
        "dynamic": "strict",
        "properties": {
            "id": { "type": "keyword" },
            "last_updated": { "type": "date", "index": false, "doc_values": false },
            "size_bytes": { "type": "long", "index": false, "doc_values": false },
            "state": { "type": "object", "enabled": false }
        }
    })
}

/// Percent-encodes `s` as one URL path segment: every byte outside the RFC 3986
/// unreserved set (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so `+`, `?`, `#`,
/// `%`, spaces and non-ASCII letters all reach the server as themselves.
pub(crate) fn encode_segment(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// The stored document: `{"id", "last_updated", "size_bytes", "state": <the state>}`.
///
/// Built by concatenation around the state's compact JSON, so the state is
/// serialised exactly once per save.
pub(crate) fn envelope(state: &ConnectorState) -> Vec<u8> {
    let json = state.to_json();
    // A string always serialises.
    let id = serde_json::to_string(&state.id).unwrap_or_default();
    let mut body = Vec::with_capacity(json.len() + id.len() + 96);
    body.extend_from_slice(b"{\"id\":");
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(b",\"last_updated\":\"");
    body.extend_from_slice(format_timestamp(&state.last_updated).as_bytes());
    body.extend_from_slice(b"\",\"size_bytes\":");
    body.extend_from_slice(json.len().to_string().as_bytes());
    body.extend_from_slice(b",\"state\":");
    body.extend_from_slice(&json);
    body.push(b'}');
    body
}

/// A revision is `seq_no:primary_term`.
pub(crate) fn revision(seq_no: u64, primary_term: u64) -> Revision {
    Revision::new(format!("{seq_no}:{primary_term}"))
}

/// `(seq_no, primary_term)` of a revision this backend issued, else `None`.
pub(crate) fn parse_revision(revision: &Revision) -> Option<(u64, u64)> {
    let (seq_no, term) = revision.as_str().split_once(':')?;
    Some((seq_no.parse().ok()?, term.parse().ok()?))
}

/// The reply to an index, create or delete of one document.
#[derive(Debug, Deserialize)]
pub(crate) struct WriteReply {
    #[serde(rename = "_seq_no")]
    pub seq_no: Option<u64>,
    #[serde(rename = "_primary_term")]
    pub primary_term: Option<u64>,
    #[serde(default)]
    pub result: String,
}

/// The reply to a GET of one document; `_source` is left unparsed.
#[derive(Debug, Deserialize)]
pub(crate) struct GetReply<'a> {
    #[serde(default)]
    pub found: bool,
    #[serde(rename = "_seq_no")]
    pub seq_no: Option<u64>,
    #[serde(rename = "_primary_term")]
    pub primary_term: Option<u64>,
    #[serde(rename = "_source", borrow)]
    pub source: Option<&'a RawValue>,
}

/// The stored envelope as read back; `state` is left unparsed.
#[derive(Debug, Deserialize)]
pub(crate) struct StoredEnvelope<'a> {
    #[serde(borrow)]
    pub state: Option<&'a RawValue>,
    pub size_bytes: Option<u64>,
}

/// The reply to a search.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchReply {
    #[serde(default)]
    pub timed_out: bool,
    #[serde(rename = "_shards")]
    pub shards: Option<Shards>,
    pub hits: Hits,
}

/// Shard figures of a search.
#[derive(Debug, Deserialize)]
pub(crate) struct Shards {
    #[serde(default)]
    pub failed: u64,
}

/// The hits of a search.
#[derive(Debug, Deserialize)]
pub(crate) struct Hits {
    pub hits: Vec<Hit>,
}

/// One hit of the listing search.
#[derive(Debug, Deserialize)]
pub(crate) struct Hit {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_source")]
    pub source: Option<ListedSource>,
    #[serde(default)]
    pub sort: Vec<Value>,
}

/// The fields the listing search fetches.
#[derive(Debug, Deserialize)]
pub(crate) struct ListedSource {
    pub last_updated: Option<Value>,
    pub size_bytes: Option<u64>,
}

/// `last_updated` as stored: RFC 3339 text (what this crate writes) or epoch millis.
pub(crate) fn parse_date(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        Value::Number(n) => DateTime::from_timestamp_millis(n.as_i64()?),
        _ => None,
    }
}

/// `type: reason` of an Elasticsearch error body, or a short excerpt of whatever came back.
pub(crate) fn describe_error_body(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        match value.get("error") {
            Some(Value::Object(error)) => {
                let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
                let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
                return format!("{kind}: {reason}");
            }
            Some(Value::String(error)) => return error.clone(),
            _ => {}
        }
    }
    excerpt(body)
}

/// The `error.type` of an Elasticsearch error body.
pub(crate) fn error_type(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.pointer("/error/type")?.as_str().map(str::to_owned)
}

/// The first 200 characters of a body, for messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return "an empty body".into();
    }
    let text = String::from_utf8_lossy(body);
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("{short:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_everything_outside_unreserved() {
        assert_eq!(encode_segment("abc-XYZ_0.9~"), "abc-XYZ_0.9~");
        assert_eq!(
            encode_segment("a b?#%+&=;:@!$'()*,"),
            "a%20b%3F%23%25%2B%26%3D%3B%3A%40%21%24%27%28%29%2A%2C"
        );
        assert_eq!(encode_segment("日"), "%E6%97%A5");
        assert_eq!(encode_segment("%2F"), "%252F");
    }

    #[test]
    fn envelope_wraps_the_compact_document() {
        let state = ConnectorState::new("a \"quoted\" id");
        let body = envelope(&state);
        let value: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(value["id"], "a \"quoted\" id");
        assert_eq!(value["state"], state.to_value());
        assert_eq!(value["size_bytes"], state.to_json().len());
        assert_eq!(parse_date(&value["last_updated"]), Some(state.last_updated));
    }

    #[test]
    fn revisions_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_revision(&revision(42, 3)), Some((42, 3)));
        for foreign in ["17", "a:b", "1:2:3", "", "-1:1"] {
            assert_eq!(parse_revision(&Revision::new(foreign)), None, "{foreign}");
        }
    }

    #[test]
    fn error_bodies_are_summarised() {
        let body = br#"{"error":{"type":"mapper_parsing_exception","reason":"failed to parse"},"status":400}"#;
        assert_eq!(
            describe_error_body(body),
            "mapper_parsing_exception: failed to parse"
        );
        assert_eq!(
            error_type(body).as_deref(),
            Some("mapper_parsing_exception")
        );
        assert_eq!(
            describe_error_body(br#"{"error":"not supported","status":406}"#),
            "not supported"
        );
        assert_eq!(
            describe_error_body(b"<html>bad gateway</html>"),
            "\"<html>bad gateway</html>\""
        );
        assert_eq!(describe_error_body(b""), "an empty body");
    }
}
