//! The request builders: every request of an incremental read.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Map, Value, json};

use crate::cursor::Cursor;
use crate::error::{QueryError, Result};
use crate::request::{Method, Request, time_value};
use crate::response::{PitId, ScrollId};
use crate::spec::{MissingTimestamp, QuerySpec, RANGE_DATE_FORMAT, Tiebreaker, TimestampKind};

/// `_shard_doc` values are `(shard index << 32) | doc id`, never negative: `-1`
/// sorts before every document of a timestamp.
const BEFORE_EVERY_SHARD_DOC: i64 = -1;

impl QuerySpec {
    /// The next page of a `search_after` read, after `cursor` (`None`: from the start).
    ///
    /// With `pit` (its id and keep-alive): `POST /_search` with `pit: {id, keep_alive}`
    /// and no index in the path. Without: `POST /{index}/_search`, which needs
    /// `tiebreaker_field` (`_shard_doc` exists only inside a point in time) and no slice.
    pub fn search_after_page(
        &self,
        cursor: Option<&Cursor>,
        pit: Option<(&PitId, Duration)>,
    ) -> Result<Request> {
        if pit.is_none() {
            self.refuse_shard_doc_outside_pit("a search without a point in time")?;
            if self.config.slice.is_some() {
                return Err(QueryError::invalid_config(
                    "slice",
                    "slicing needs a point in time or a scroll; plain search_after pages cannot be sliced",
                ));
            }
        }
        let cursor = cursor.map(|c| self.check_cursor(c)).transpose()?;
        let cursor = cursor.as_ref();
        let mut body = self.common_body(self.query(cursor.map(Hint::AtOrAfter))?);
        if self.config.track_total_hits {
            body.insert("track_total_hits".into(), true.into());
        } else {
            body.insert("track_total_hits".into(), false.into());
        }
        if let Some(cursor) = cursor {
            body.insert("search_after".into(), Value::Array(cursor.sort.clone()));
        }
        let path = match pit {
            Some((id, keep_alive)) => {
                if let Some(slice) = self.config.slice {
                    // Without a field, Elasticsearch slices a point in time by Lucene
                    // document id, which merges renumber: a document could change
                    // slice between two points in time and be delivered twice or
                    // never. The timestamp's doc values are the document's own.
                    body.insert("slice".into(), self.pit_slice(slice.id, slice.max));
                }
                self.in_pit(&mut body, id, keep_alive)?;
                "/_search".to_string()
            }
            None => format!("/{}/_search", self.index_path),
        };
        Ok(self
            .sliced(Request::new(Method::Post, path).param("allow_partial_search_results", "false"))
            .body(Value::Object(body)))
    }

    /// With a slice: `pre_filter_shard_size` at its largest. Elasticsearch gives
    /// slices whole shards when there are at least as many shards as slices,
    /// numbered among the shards its pre-filter keeps, and that pre-filter keeps
    /// or skips shards by the query's time range, which moves with the cursor: a
    /// shard would change slice from one page to the next.
    pub(crate) fn sliced(&self, request: Request) -> Request {
        if self.config.slice.is_some() {
            request.param("pre_filter_shard_size", i32::MAX.to_string())
        } else {
            request
        }
    }

    /// Resolves the index expression to what it names (`GET /_resolve/index/..`,
    /// Elasticsearch >= 7.9 and OpenSearch): indices, aliases, data streams.
    pub fn resolve_index(&self) -> Request {
        Request::new(Method::Get, format!("/_resolve/index/{}", self.index_path))
    }

    /// Opens a point in time on the index: Elasticsearch `POST /{index}/_pit`
    /// (answer `{"id"}`), OpenSearch `POST /{index}/_search/point_in_time` (answer
    /// `{"pit_id"}`); read the answer with [`PitId::from_open_response`].
    pub fn open_pit(&self, keep_alive: Duration) -> Result<Request> {
        self.require_pit()?;
        let endpoint = if self.flavor.is_opensearch() {
            "_search/point_in_time"
        } else {
            "_pit"
        };
        Ok(
            Request::new(Method::Post, format!("/{}/{endpoint}", self.index_path))
                .param("keep_alive", time_value("keep_alive", keep_alive)?),
        )
    }

    /// Closes a point in time: Elasticsearch `DELETE /_pit {"id"}`, OpenSearch
    /// `DELETE /_search/point_in_time {"pit_id": [..]}`.
    pub fn close_pit(&self, pit: &PitId) -> Result<Request> {
        self.require_pit()?;
        Ok(if self.flavor.is_opensearch() {
            Request::new(Method::Delete, "/_search/point_in_time")
                .body(json!({"pit_id": [pit.as_str()]}))
        } else {
            Request::new(Method::Delete, "/_pit").body(json!({"id": pit.as_str()}))
        })
    }

    /// Starts a scroll after `cursor`: `POST /{index}/_search?scroll=..`, sorted on
    /// `[timestamp, tiebreaker]` (not `_doc`) so that every hit carries a cursor and an
    /// expired scroll can be resumed exactly. Scrolls refuse `search_after`, so the
    /// cursor becomes a filter: timestamp after the cursor's, or equal with a greater
    /// tiebreaker. Needs `tiebreaker_field`.
    pub fn scroll_start(&self, cursor: Option<&Cursor>, keep_alive: Duration) -> Result<Request> {
        self.refuse_shard_doc_outside_pit("a scroll")?;
        let cursor = cursor.map(|c| self.check_cursor(c)).transpose()?;
        let cursor = cursor.as_ref();
        let mut body = self.common_body(self.query(cursor.map(Hint::StrictlyAfter))?);
        // Scrolls refuse `track_total_hits: false`.
        if self.config.track_total_hits {
            body.insert("track_total_hits".into(), true.into());
        }
        Ok(self
            .sliced(
                Request::new(Method::Post, format!("/{}/_search", self.index_path))
                    .param("scroll", time_value("keep_alive", keep_alive)?)
                    .param("allow_partial_search_results", "false"),
            )
            .body(Value::Object(body)))
    }

    /// The next page of a scroll: `POST /_search/scroll {"scroll", "scroll_id"}`.
    pub fn scroll_next(&self, scroll: &ScrollId, keep_alive: Duration) -> Result<Request> {
        Ok(Request::new(Method::Post, "/_search/scroll").body(json!({
            "scroll": time_value("keep_alive", keep_alive)?,
            "scroll_id": scroll.as_str(),
        })))
    }

    /// Frees scrolls: `DELETE /_search/scroll {"scroll_id": [..]}`.
    pub fn clear_scroll(&self, scrolls: &[ScrollId]) -> Request {
        let ids: Vec<&str> = scrolls.iter().map(ScrollId::as_str).collect();
        Request::new(Method::Delete, "/_search/scroll").body(json!({ "scroll_id": ids }))
    }

    /// Counts what is left to read, for progress and ETA: `POST /{index}/_count` with
    /// the same query and window, from the cursor's timestamp (inclusive, so documents
    /// sharing the cursor's timestamp are counted again: an upper estimate).
    pub fn count(&self, cursor: Option<&Cursor>) -> Result<Request> {
        let cursor = cursor.map(|c| self.check_cursor(c)).transpose()?;
        let query = self.query(cursor.as_ref().map(Hint::AtOrAfter))?;
        Ok(
            Request::new(Method::Post, format!("/{}/_count", self.index_path))
                .body(json!({ "query": query })),
        )
    }

    /// The cursor to resume from in a **new** point in time. A `_shard_doc` value
    /// means nothing outside the point in time that produced it, so the tiebreaker is
    /// replaced by `-1`: every document sharing the cursor's timestamp is read again
    /// (duplicates, never a gap). A field tiebreaker's cursor is returned unchanged.
    pub fn cursor_for_new_pit(&self, cursor: &Cursor) -> Cursor {
        match (&self.tiebreaker, cursor.sort.first()) {
            (Tiebreaker::ShardDoc, Some(ts)) => {
                Cursor::new(vec![ts.clone(), BEFORE_EVERY_SHARD_DOC.into()])
            }
            _ => cursor.clone(),
        }
    }

    /// The `sort` of every search: `[timestamp, tiebreaker]`.
    pub fn sort(&self) -> Value {
        let kind = self.config.timestamp_type;
        let mut ts = Map::new();
        ts.insert("order".into(), "asc".into());
        kind.sort_options(&mut ts);
        if self.config.missing_timestamp == MissingTimestamp::First {
            ts.insert("missing".into(), "_first".into());
        }
        let tiebreaker = match &self.tiebreaker {
            Tiebreaker::Field(field) => json!({ field.as_str(): {"order": "asc"} }),
            Tiebreaker::ShardDoc => json!({"_shard_doc": "asc"}),
        };
        json!([{ self.config.timestamp_field.as_str(): ts }, tiebreaker])
    }

    /// The timestamp's sort clause alone (ascending, in the units of the sort values).
    pub(crate) fn timestamp_sort(&self) -> Value {
        let mut ts = Map::new();
        ts.insert("order".into(), "asc".into());
        self.config.timestamp_type.sort_options(&mut ts);
        json!({ self.config.timestamp_field.as_str(): ts })
    }

    fn common_body(&self, query: Value) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("size".into(), self.config.batch_size.into());
        body.insert("query".into(), query);
        body.insert("sort".into(), self.sort());
        body.insert("seq_no_primary_term".into(), true.into());
        if let Some(source) = &self.config.source {
            body.insert("_source".into(), source.clone());
        }
        if let Some(slice) = self.config.slice {
            body.insert("slice".into(), json!({"id": slice.id, "max": slice.max}));
        }
        body
    }

    fn require_pit(&self) -> Result<()> {
        if self.flavor.supports_pit() {
            Ok(())
        } else {
            Err(QueryError::invalid_config(
                "point_in_time",
                format!(
                    "{} has no point in time (Elasticsearch >= 7.10, OpenSearch >= 2.4); read \
                     with search_after without one (needs tiebreaker_field) or with a scroll",
                    self.flavor
                ),
            ))
        }
    }

    fn refuse_shard_doc_outside_pit(&self, what: &str) -> Result<()> {
        if self.tiebreaker == Tiebreaker::ShardDoc {
            return Err(QueryError::invalid_config(
                "tiebreaker_field",
                format!(
                    "is required for {what}: the `_shard_doc` tiebreaker exists only inside a \
                     point in time, and sorting on `_id` is disabled by default; name a unique \
                     keyword field present in every document"
                ),
            ));
        }
        Ok(())
    }

    /// The cursor's two sort values, checked against this query. A third value after
    /// a field tiebreaker is the implicit `_shard_doc` Elasticsearch appends inside a
    /// point in time (see [`Cursor::from_hit`]); cursors stored before it was left out
    /// carry it, and it is dropped here so they resume like any other.
    pub(crate) fn check_cursor(&self, cursor: &Cursor) -> Result<Cursor> {
        let bad = |reason: String| QueryError::InvalidCursor {
            cursor: Value::Array(cursor.sort.clone()).to_string(),
            reason,
        };
        let values = match (&self.tiebreaker, cursor.sort.as_slice()) {
            (Tiebreaker::Field(_), [ts, tiebreaker, implicit_shard_doc])
                if implicit_shard_doc.as_i64().is_some_and(|v| v >= 0) =>
            {
                vec![ts.clone(), tiebreaker.clone()]
            }
            (Tiebreaker::Field(field), [_, _, other]) => {
                return Err(bad(format!(
                    "its third sort value {other} is not the implicit `_shard_doc` of an \
                     Elasticsearch point in time; this query sorts on two ([{}, {field}])",
                    self.config.timestamp_field
                )));
            }
            (_, values) => values.to_vec(),
        };
        let [ts, tiebreaker] = values.as_slice() else {
            return Err(bad(format!(
                "it has {} sort values, this query sorts on two ([{}, {}])",
                cursor.sort.len(),
                self.config.timestamp_field,
                self.tiebreaker_name()
            )));
        };
        if ts.as_i64().is_none() {
            return Err(bad(format!(
                "the timestamp value {ts} is not an integer (epoch millis or nanos)"
            )));
        }
        match (&self.tiebreaker, tiebreaker) {
            (Tiebreaker::ShardDoc, v) if v.as_i64().is_none() => {
                Err(bad(format!("the `_shard_doc` value {v} is not an integer")))
            }
            (Tiebreaker::Field(field), Value::Null | Value::Array(_) | Value::Object(_)) => {
                Err(bad(format!(
                    "the `{field}` value {tiebreaker} is not a string or number: is \
                     tiebreaker_field present and single-valued in every document?"
                )))
            }
            _ => Ok(Cursor::new(values.clone())),
        }
    }

    fn tiebreaker_name(&self) -> &str {
        match &self.tiebreaker {
            Tiebreaker::Field(field) => field,
            Tiebreaker::ShardDoc => "_shard_doc",
        }
    }

    /// The user's query, the time window, the missing-timestamp policy and the cursor.
    pub(crate) fn query(&self, hint: Option<Hint<'_>>) -> Result<Value> {
        let ts_field = self.config.timestamp_field.as_str();
        let exists = json!({"exists": {"field": ts_field}});
        let mut filter = Vec::new();
        let mut bounds = Vec::with_capacity(2);
        if self.from.is_some() || self.until.is_some() {
            bounds.push(self.range(self.from.clone(), self.until.clone()));
        }
        if self.floor.is_some() || self.ceiling.is_some() {
            bounds.push(self.range(self.floor.clone(), self.ceiling.clone()));
        }
        let window = match bounds.len() {
            0 => None,
            1 => bounds.pop(),
            _ => Some(json!({"bool": {"filter": bounds}})),
        };
        match self.config.missing_timestamp {
            MissingTimestamp::Skip => {
                filter.push(exists.clone());
                filter.extend(window);
            }
            MissingTimestamp::First => {
                if let Some(window) = window {
                    filter.push(json!({"bool": {
                        "should": [window, {"bool": {"must_not": [exists.clone()]}}],
                        "minimum_should_match": 1,
                    }}));
                }
            }
        }
        match hint {
            Some(Hint::AtOrAfter(cursor)) => {
                // search_after decides where to resume; this lower bound only lets the
                // server skip whole shards and indices that end before the cursor.
                if let Some(at) = self.cursor_time(cursor) {
                    filter.push(self.range(Some(at), None));
                }
            }
            Some(Hint::StrictlyAfter(cursor)) => filter.push(self.after_filter(cursor)?),
            None => {}
        }
        let user = self
            .config
            .query
            .clone()
            .unwrap_or_else(|| json!({"match_all": {}}));
        let mut bool_query = Map::new();
        bool_query.insert("must".into(), json!([user]));
        if !filter.is_empty() {
            bool_query.insert("filter".into(), Value::Array(filter));
        }
        Ok(json!({ "bool": bool_query }))
    }

    /// `(ts > c) OR (ts == c AND tiebreaker > t)`, in the units of the sort values.
    pub(crate) fn after_filter(&self, cursor: &Cursor) -> Result<Value> {
        let ts_field = self.config.timestamp_field.as_str();
        let tiebreaker = self.tiebreaker_name();
        let (ts_value, tb_value) = match cursor.sort.as_slice() {
            [ts, tb] => (ts, tb),
            _ => return Err(self.cursor_error(cursor, "it does not have two sort values")),
        };
        let tb_after = json!({"range": {tiebreaker: {"gt": tb_value}}});
        if ts_value.as_i64() == Some(i64::MIN)
            && self.config.missing_timestamp == MissingTimestamp::First
        {
            // Still among the documents without a timestamp, which sort first.
            return Ok(json!({"bool": {
                "should": [
                    {"exists": {"field": ts_field}},
                    {"bool": {"must_not": [{"exists": {"field": ts_field}}], "filter": [tb_after]}},
                ],
                "minimum_should_match": 1,
            }}));
        }
        let at = self
            .config
            .timestamp_type
            .sort_value_to_time(ts_value)
            .ok_or_else(|| self.cursor_error(cursor, "its timestamp is not a valid instant"))?;
        let step = match self.config.timestamp_type {
            TimestampKind::DateNanos => TimeDelta::nanoseconds(1),
            TimestampKind::Date | TimestampKind::EpochMillis => TimeDelta::milliseconds(1),
        };
        let next = at
            .checked_add_signed(step)
            .ok_or_else(|| self.cursor_error(cursor, "its timestamp is at the end of time"))?;
        let kind = self.config.timestamp_type;
        Ok(json!({"bool": {
            "should": [
                self.range(Some(kind.bound(next)), None),
                {"bool": {"filter": [self.range(Some(kind.bound(at)), Some(kind.bound(next))), tb_after]}},
            ],
            "minimum_should_match": 1,
        }}))
    }

    fn cursor_error(&self, cursor: &Cursor, reason: &str) -> QueryError {
        QueryError::InvalidCursor {
            cursor: Value::Array(cursor.sort.clone()).to_string(),
            reason: reason.to_string(),
        }
    }

    /// The cursor's timestamp as a range bound; `None` for the missing-value sentinel.
    pub(crate) fn cursor_time(&self, cursor: &Cursor) -> Option<Value> {
        let kind = self.config.timestamp_type;
        let at = kind.sort_value_to_time(cursor.timestamp_value()?)?;
        Some(kind.bound(at))
    }

    /// `{"range": {ts: {"gte", "lt", "format"}}}`: only `gte`/`lt`, which never round
    /// partial dates up.
    pub(crate) fn range(&self, gte: Option<Value>, lt: Option<Value>) -> Value {
        let mut bounds = Map::new();
        if let Some(gte) = gte {
            bounds.insert("gte".into(), gte);
        }
        if let Some(lt) = lt {
            bounds.insert("lt".into(), lt);
        }
        if self.config.timestamp_type != TimestampKind::EpochMillis {
            bounds.insert("format".into(), RANGE_DATE_FORMAT.into());
        }
        json!({"range": { self.config.timestamp_field.as_str(): bounds }})
    }
}

/// How a cursor restricts a query.
#[derive(Clone, Copy)]
pub(crate) enum Hint<'a> {
    /// Timestamp at or after the cursor's (search_after does the exact cut).
    AtOrAfter(&'a Cursor),
    /// Exactly after the cursor (scrolls, which refuse search_after).
    StrictlyAfter(&'a Cursor),
}
