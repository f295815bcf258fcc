//! Reading the server's answers: search pages, point in time ids, counts, errors.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::cursor::Cursor;
use crate::error::{QueryError, Result, snippet};
use crate::spec::{QuerySpec, TimestampKind};

/// The error type that marks an expired or unknown point in time or scroll.
pub const CONTEXT_MISSING: &str = "search_context_missing_exception";

/// A point in time id. It can change between pages: always use the newest
/// ([`SearchPage::pit_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PitId(String);

impl PitId {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        PitId(id.into())
    }

    /// The id as sent to the server.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads the answer to [`QuerySpec::open_pit`]: `{"id"}` (Elasticsearch) or
    /// `{"pit_id"}` (OpenSearch).
    pub fn from_open_response(body: &[u8]) -> Result<PitId> {
        const WHAT: &str = "open point in time";
        let doc = parse_json(WHAT, body)?;
        check_shards(&doc)?;
        doc.get("id")
            .or_else(|| doc.get("pit_id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(PitId::new)
            .ok_or_else(|| QueryError::malformed(WHAT, "no `id` or `pit_id` string", body))
    }
}

/// A scroll id. It can change between pages: always use the newest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScrollId(String);

impl ScrollId {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        ScrollId(id.into())
    }

    /// The id as sent to the server.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One hit of a [`SearchPage`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Hit {
    /// The concrete index the document lives in (`_index`).
    pub index: String,
    /// The document id (`_id`).
    pub id: String,
    /// `_seq_no` (present because every search asks for `seq_no_primary_term`).
    pub seq_no: Option<i64>,
    /// `_primary_term`.
    pub primary_term: Option<i64>,
    /// `_source` exactly as received (`None` when `_source` was disabled).
    pub source: Option<Box<RawValue>>,
    /// The sort values `[timestamp, tiebreaker]`, exactly as received: inside an
    /// Elasticsearch point in time a third, the implicit `_shard_doc`, may follow
    /// ([`Hit::cursor`] leaves it out).
    pub sort: Vec<Value>,
}

impl Hit {
    /// The cursor just after this hit.
    pub fn cursor(&self) -> Option<Cursor> {
        Cursor::from_hit(self)
    }

    /// The document's time, read from its timestamp sort value; `None` for documents
    /// without a timestamp.
    pub fn timestamp(&self, kind: TimestampKind) -> Option<DateTime<Utc>> {
        kind.sort_value_to_time(self.sort.first()?)
    }
}

/// One page of a search or scroll, checked: a page that may be incomplete is an error.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SearchPage {
    /// The hits, in sort order.
    pub hits: Vec<Hit>,
    /// The newest point in time id, when searching in one.
    pub pit_id: Option<PitId>,
    /// The newest scroll id, when scrolling.
    pub scroll_id: Option<ScrollId>,
    /// `took`, in milliseconds.
    pub took_ms: u64,
}

impl SearchPage {
    /// Reads the body of a search or scroll answer (any HTTP status: an error document
    /// becomes the matching error).
    ///
    /// Refuses `timed_out: true`, failed shards, a missing `hits` and anything that is
    /// not the expected JSON; an expired context is [`QueryError::ContextExpired`].
    pub fn parse(body: &[u8]) -> Result<SearchPage> {
        const WHAT: &str = "search";
        // One typed pass; `_source` stays raw bytes so it passes through untouched.
        let raw: RawSearch = match serde_json::from_slice(body) {
            Ok(raw) => raw,
            Err(e) => {
                // Say whether it is not JSON at all, or JSON of an unexpected shape.
                parse_json(WHAT, body)?;
                return Err(QueryError::malformed(
                    WHAT,
                    format!("unexpected shape: {e}"),
                    body,
                ));
            }
        };
        if let Some(error) = raw.error {
            let status = raw
                .status
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500);
            let doc = serde_json::json!({ "error": error });
            return Err(error_from_document(status, &doc, body));
        }
        if raw.timed_out == Some(true) {
            return Err(QueryError::TimedOut {
                took_ms: raw.took.unwrap_or(0),
            });
        }
        if let Some(shards) = raw.shards {
            check_shards(&serde_json::json!({ "_shards": shards }))?;
        }
        let hits = raw
            .hits
            .ok_or_else(|| QueryError::malformed(WHAT, "no `hits` object", body))?;
        let hits = hits
            .hits
            .into_iter()
            .map(|hit| Hit {
                index: hit.index,
                id: hit.id,
                seq_no: hit.seq_no,
                primary_term: hit.primary_term,
                source: hit.source,
                sort: hit.sort,
            })
            .collect();
        Ok(SearchPage {
            hits,
            pit_id: raw.pit_id.map(PitId::new),
            scroll_id: raw.scroll_id.map(ScrollId::new),
            took_ms: raw.took.unwrap_or(0),
        })
    }

    /// Reads an answer with its HTTP status: a non-2xx status is always an error
    /// ([`QueryError::ContextExpired`], or [`QueryError::ServerError`] quoting the body).
    pub fn from_response(status: u16, body: &[u8]) -> Result<SearchPage> {
        if (200..300).contains(&status) {
            SearchPage::parse(body)
        } else {
            Err(QueryError::from_error_response(status, body))
        }
    }

    /// The cursor after the last hit; `None` for an empty page.
    pub fn last_cursor(&self) -> Option<Cursor> {
        self.hits.last().and_then(Hit::cursor)
    }
}

impl QuerySpec {
    /// The hit's time, read from its sort value in this query's timestamp units.
    pub fn hit_timestamp(&self, hit: &Hit) -> Option<DateTime<Utc>> {
        hit.timestamp(self.config.timestamp_type)
    }
}

/// Reads a `_count` answer (checked for failed shards).
pub fn parse_count(body: &[u8]) -> Result<u64> {
    const WHAT: &str = "count";
    let doc = parse_json(WHAT, body)?;
    if doc.get("error").is_some() {
        return Err(error_from_document(500, &doc, body));
    }
    check_shards(&doc)?;
    doc.get("count")
        .and_then(Value::as_u64)
        .ok_or_else(|| QueryError::malformed(WHAT, "no `count` number", body))
}

/// Reads the answer to closing a point in time or clearing scrolls: how many
/// contexts were freed (Elasticsearch `num_freed`, OpenSearch the successful `pits`).
pub fn parse_close(body: &[u8]) -> Result<u64> {
    const WHAT: &str = "close point in time or clear scroll";
    let doc = parse_json(WHAT, body)?;
    if doc.get("error").is_some() {
        return Err(error_from_document(500, &doc, body));
    }
    if let Some(freed) = doc.get("num_freed").and_then(Value::as_u64) {
        return Ok(freed);
    }
    if let Some(pits) = doc.get("pits").and_then(Value::as_array) {
        let freed = pits
            .iter()
            .filter(|p| p.get("successful").and_then(Value::as_bool) == Some(true))
            .count();
        return Ok(u64::try_from(freed).unwrap_or(u64::MAX));
    }
    Err(QueryError::malformed(
        WHAT,
        "neither `num_freed` nor `pits`",
        body,
    ))
}

impl QueryError {
    /// Classifies a non-2xx answer: an expired or unknown point in time or scroll
    /// (`search_context_missing_exception` anywhere in the error) is
    /// [`QueryError::ContextExpired`]; anything else is [`QueryError::ServerError`].
    pub fn from_error_response(status: u16, body: &[u8]) -> QueryError {
        match serde_json::from_slice::<Value>(body) {
            Ok(doc) => error_from_document(status, &doc, body),
            Err(_) => QueryError::ServerError {
                status,
                error_type: "non-JSON answer".into(),
                reason: snippet(body),
            },
        }
    }
}

pub(crate) fn error_from_document(status: u16, doc: &Value, body: &[u8]) -> QueryError {
    let Some(error) = doc.get("error") else {
        return QueryError::ServerError {
            status,
            error_type: "unknown".into(),
            reason: snippet(body),
        };
    };
    if let Some(text) = error.as_str() {
        return QueryError::ServerError {
            status,
            error_type: "error".into(),
            reason: text.to_string(),
        };
    }
    if let Some(reason) = find_type(error, CONTEXT_MISSING) {
        return QueryError::ContextExpired { reason };
    }
    let error_type = str_at(error, "type").unwrap_or("unknown").to_string();
    let mut reason = str_at(error, "reason")
        .unwrap_or("(no reason given)")
        .to_string();
    let root = error
        .get("root_cause")
        .and_then(|r| r.get(0))
        .or_else(|| error.get("caused_by"));
    if let Some(root) = root {
        let root_reason = str_at(root, "reason").unwrap_or("");
        if !root_reason.is_empty() && root_reason != reason {
            let root_type = str_at(root, "type").unwrap_or("unknown");
            reason = format!("{reason} (root cause {root_type}: {root_reason})");
        }
    }
    QueryError::ServerError {
        status,
        error_type,
        reason,
    }
}

/// The reason of the first object of type `wanted` in an error tree.
fn find_type(error: &Value, wanted: &str) -> Option<String> {
    if str_at(error, "type") == Some(wanted) {
        return Some(str_at(error, "reason").unwrap_or(wanted).to_string());
    }
    let nested = ["caused_by", "reason"]
        .iter()
        .filter_map(|key| error.get(*key))
        .filter(|v| v.is_object());
    let listed = ["root_cause", "failed_shards", "failures"]
        .iter()
        .filter_map(|key| error.get(*key).and_then(Value::as_array))
        .flatten();
    nested
        .chain(listed)
        .find_map(|child| find_type(child, wanted))
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// `_shards.failed > 0` is an error naming the first failure.
pub(crate) fn check_shards(doc: &Value) -> Result<()> {
    let Some(shards) = doc.get("_shards") else {
        return Ok(());
    };
    let failed = shards.get("failed").and_then(Value::as_u64).unwrap_or(0);
    if failed == 0 {
        return Ok(());
    }
    let total = shards.get("total").and_then(Value::as_u64).unwrap_or(0);
    let first = shards
        .get("failures")
        .and_then(|f| f.get(0))
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(reason) = find_type(&first, CONTEXT_MISSING) {
        return Err(QueryError::ContextExpired { reason });
    }
    let index = str_at(&first, "index").unwrap_or("?");
    let cause = first.get("reason").cloned().unwrap_or(Value::Null);
    let reason = format!(
        "index {index}: {} {}",
        str_at(&cause, "type").unwrap_or("unknown"),
        str_at(&cause, "reason").unwrap_or("(no reason given)")
    );
    Err(QueryError::ShardFailure {
        failed,
        total,
        reason,
    })
}

pub(crate) fn parse_json(what: &'static str, body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let reason = if first == Some(&b'<') {
            "HTML, not JSON: a proxy or load balancer answered, or the URL is not Elasticsearch/OpenSearch".to_string()
        } else if body.is_empty() {
            "an empty body".to_string()
        } else if e.is_eof() {
            format!("truncated JSON ({e})")
        } else {
            format!("not JSON ({e})")
        };
        QueryError::malformed(what, reason, body)
    })
}

#[derive(Deserialize)]
struct RawSearch {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    status: Option<u64>,
    #[serde(rename = "_shards", default)]
    shards: Option<Value>,
    #[serde(default)]
    timed_out: Option<bool>,
    #[serde(default)]
    took: Option<u64>,
    #[serde(default)]
    hits: Option<RawHits>,
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(rename = "_scroll_id", default)]
    scroll_id: Option<String>,
}

#[derive(Deserialize)]
struct RawHits {
    hits: Vec<RawHit>,
}

#[derive(Deserialize)]
struct RawHit {
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_seq_no", default)]
    seq_no: Option<i64>,
    #[serde(rename = "_primary_term", default)]
    primary_term: Option<i64>,
    #[serde(rename = "_source", default)]
    source: Option<Box<RawValue>>,
    #[serde(default)]
    sort: Vec<Value>,
}
