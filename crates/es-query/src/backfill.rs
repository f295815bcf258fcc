//! The requests of a backfill: reading a point-in-time snapshot in index order
//! (`_shard_doc`), which servers serve far more cheaply than pages sorted on the
//! timestamp, and then handing over to the incremental `(timestamp, tiebreaker)`
//! cursor at the snapshot's upper bound.
//!
//! # The hand-over
//!
//! 1. [`QuerySpec::last_in_pit`] finds the snapshot's last document in cursor order:
//!    its sort values are the *upper bound* `U`.
//! 2. [`QuerySpec::backfill_page`] reads, in index order, the snapshot's documents up
//!    to the bound: with a `tiebreaker_field`, every document whose
//!    `(timestamp, tiebreaker)` is at or before `U`; with `_shard_doc` (whose values
//!    mean nothing in another point in time), every document strictly before `U`'s
//!    timestamp.
//! 3. The incremental read starts at [`QuerySpec::handover_cursor`]: `U` itself, or,
//!    with `_shard_doc`, before every document of `U`'s timestamp.
//!
//! So a document of the snapshot is read by exactly one of the two, and one written
//! after the snapshot was taken is read by the incremental read when it sorts after
//! the hand-over, as it would be after any pass; one that sorts before it is late,
//! as behind any cursor (`late_window` finds those).

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::cursor::Cursor;
use crate::error::{QueryError, Result};
use crate::request::{Method, Request, time_value};
use crate::response::{Hit, PitId};
use crate::spec::{QuerySpec, Tiebreaker};

/// `_shard_doc` values are never negative: `-1` sorts before every document of a
/// timestamp (see [`QuerySpec::cursor_for_new_pit`]).
const BEFORE_EVERY_SHARD_DOC: i64 = -1;

impl QuerySpec {
    /// The last document in cursor order inside a point in time (the sort reversed,
    /// one hit, no `_source`): its sort values, read with [`Cursor::from_hit`], are the
    /// backfill's upper bound. Not sliced: the bound is the whole snapshot's.
    pub fn last_in_pit(&self, pit: &PitId, keep_alive: Duration) -> Result<Request> {
        let mut body = Map::new();
        body.insert("size".into(), 1.into());
        body.insert("query".into(), self.query(None)?);
        body.insert("sort".into(), self.reversed_sort());
        body.insert("_source".into(), false.into());
        body.insert("track_total_hits".into(), false.into());
        if let Some(slice) = self.config.slice {
            body.insert("slice".into(), self.pit_slice(slice.id, slice.max));
        }
        self.in_pit(&mut body, pit, keep_alive)?;
        Ok(Request::new(Method::Post, "/_search")
            .param("allow_partial_search_results", "false")
            .body(Value::Object(body)))
    }

    /// The next backfill page inside a point in time: index order (`_shard_doc`),
    /// after `after` (the sort values of the last hit read, from [`backfill_hits`]), documents up to the hand-over at `upper` only (see the
    /// module docs). Each hit's sort values are `[_shard_doc, timestamp]`;
    /// [`backfill_hits`] turns them into `[timestamp]`.
    pub fn backfill_page(
        &self,
        upper: &Cursor,
        after: Option<&Value>,
        pit: &PitId,
        keep_alive: Duration,
    ) -> Result<Request> {
        if !self.flavor.supports_shard_doc() {
            return Err(QueryError::invalid_config(
                "backfill",
                format!(
                    "reads in index order with the `_shard_doc` sort, which {} lacks \
                     (Elasticsearch >= 7.12, OpenSearch >= 3.3); turn backfill off",
                    self.flavor
                ),
            ));
        }
        let upper = self.check_cursor(upper)?;
        let mut query = self.query(None)?;
        let bound = self.backfill_bound(&upper)?;
        if let Some(filters) = query["bool"]["filter"].as_array_mut() {
            filters.push(bound);
        } else {
            query["bool"]["filter"] = json!([bound]);
        }
        let mut body = Map::new();
        body.insert("size".into(), self.config.batch_size.into());
        body.insert("query".into(), query);
        let mut ts = self.timestamp_sort();
        if self.config.missing_timestamp == crate::spec::MissingTimestamp::First
            && let Some(Value::Object(options)) = ts
                .as_object_mut()
                .and_then(|o| o.get_mut(self.config.timestamp_field.as_str()))
        {
            options.insert("missing".into(), "_first".into());
        }
        body.insert("sort".into(), json!([{"_shard_doc": "asc"}, ts]));
        body.insert("seq_no_primary_term".into(), true.into());
        body.insert("track_total_hits".into(), false.into());
        if let Some(source) = &self.config.source {
            body.insert("_source".into(), source.clone());
        }
        if let Some(after) = after {
            let valid = match after.as_array().map(Vec::as_slice) {
                Some([shard_doc, _ts]) => shard_doc.as_i64().is_some_and(|v| v >= 0),
                _ => false,
            };
            if !valid {
                return Err(QueryError::InvalidCursor {
                    cursor: after.to_string(),
                    reason: "a backfill position is the sort values [_shard_doc, timestamp] \
                             of a backfill page's last hit"
                        .into(),
                });
            }
            body.insert("search_after".into(), after.clone());
        }
        if let Some(slice) = self.config.slice {
            body.insert("slice".into(), self.pit_slice(slice.id, slice.max));
        }
        self.in_pit(&mut body, pit, keep_alive)?;
        Ok(self
            .sliced(
                Request::new(Method::Post, "/_search")
                    .param("allow_partial_search_results", "false"),
            )
            .body(Value::Object(body)))
    }

    /// Where the incremental read starts once a backfill up to `upper` is done:
    /// `upper` with a `tiebreaker_field`, before every document of its timestamp with
    /// `_shard_doc` (which the backfill left to it).
    pub fn handover_cursor(&self, upper: &Cursor) -> Cursor {
        match (&self.tiebreaker, upper.sort.first()) {
            (Tiebreaker::ShardDoc, Some(ts)) => {
                Cursor::new(vec![ts.clone(), BEFORE_EVERY_SHARD_DOC.into()])
            }
            _ => Cursor::new(upper.sort.iter().take(2).cloned().collect()),
        }
    }

    /// The documents a backfill reads, of those the query matches (module docs).
    fn backfill_bound(&self, upper: &Cursor) -> Result<Value> {
        match self.tiebreaker {
            // At or before `upper`: not after it (which keeps documents without a
            // timestamp, as the query does with `missing_timestamp = "first"`).
            Tiebreaker::Field(_) => Ok(json!({"bool": {"must_not": [self.after_filter(upper)?]}})),
            // Strictly before `upper`'s timestamp.
            Tiebreaker::ShardDoc => match self.cursor_time(upper) {
                Some(at) => Ok(json!({"bool": {"must_not": [self.range(Some(at), None)]}})),
                // `upper` is among the documents without a timestamp, which sort first:
                // nothing sorts before it.
                None => Ok(json!({"bool": {"must_not": [{"match_all": {}}]}})),
            },
        }
    }

    /// The cursor sort, every clause reversed (a missing timestamp, first in cursor
    /// order, is last here: the default).
    fn reversed_sort(&self) -> Value {
        let mut ts = self.timestamp_sort();
        if let Some(Value::Object(options)) = ts
            .as_object_mut()
            .and_then(|o| o.get_mut(self.config.timestamp_field.as_str()))
        {
            options.insert("order".into(), "desc".into());
        }
        let tiebreaker = match &self.tiebreaker {
            Tiebreaker::Field(field) => json!({ field.as_str(): {"order": "desc"} }),
            Tiebreaker::ShardDoc => json!({"_shard_doc": "desc"}),
        };
        json!([ts, tiebreaker])
    }

    /// A slice of a point in time, cut on the timestamp's doc values (see
    /// [`QuerySpec::search_after_page`]): a document stays in its slice in another
    /// point in time, so a slice can start over in a new one.
    pub(crate) fn pit_slice(&self, id: u32, max: u32) -> Value {
        json!({"id": id, "max": max, "field": self.config.timestamp_field.as_str()})
    }

    pub(crate) fn in_pit(
        &self,
        body: &mut Map<String, Value>,
        pit: &PitId,
        keep_alive: Duration,
    ) -> Result<()> {
        body.insert(
            "pit".into(),
            json!({"id": pit.as_str(), "keep_alive": time_value("keep_alive", keep_alive)?}),
        );
        Ok(())
    }
}

/// A backfill page's hits with their sort values made `[timestamp]` (what
/// [`Hit::timestamp`] reads), and the sort values `[_shard_doc, timestamp]` of the
/// last one: where the next page starts (`None` for an empty page).
pub fn backfill_hits(mut hits: Vec<Hit>) -> Result<(Vec<Hit>, Option<Value>)> {
    let mut position = None;
    for hit in &mut hits {
        let (Some(shard_doc), Some(ts)) = (hit.sort.first(), hit.sort.get(1)) else {
            return Err(QueryError::InvalidCursor {
                cursor: Value::Array(hit.sort.clone()).to_string(),
                reason: format!(
                    "a backfill hit (document `{}` of `{}`) must carry the sort values \
                     [_shard_doc, timestamp]",
                    hit.id, hit.index
                ),
            });
        };
        position = Some(json!([shard_doc, ts]));
        hit.sort = vec![ts.clone()];
    }
    Ok((hits, position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flavor::Flavor;
    use crate::spec::{MissingTimestamp, QueryConfig};

    fn spec(tiebreaker: Option<&str>, flavor: Flavor) -> QuerySpec {
        let mut config = QueryConfig::new("logs").with_batch_size(500);
        if let Some(field) = tiebreaker {
            config = config.with_tiebreaker_field(field);
        }
        config.build(flavor).unwrap()
    }

    fn es9() -> Flavor {
        Flavor::Elasticsearch { major: 9, minor: 5 }
    }

    fn filters(body: &Value) -> &Vec<Value> {
        body["query"]["bool"]["filter"].as_array().unwrap()
    }

    #[test]
    fn a_backfill_page_reads_index_order_up_to_the_bound_with_a_field_tiebreaker() {
        let s = spec(Some("id"), es9());
        let upper = Cursor::new(vec![1_000_i64.into(), "k".into()]);
        let pit = PitId::new("p1");
        let request = s
            .backfill_page(
                &upper,
                Some(&json!([42, 900])),
                &pit,
                Duration::from_secs(60),
            )
            .unwrap();
        let body = request.body.clone().unwrap();
        assert_eq!(request.path, "/_search");
        assert_eq!(body["sort"][0], json!({"_shard_doc": "asc"}));
        assert_eq!(body["sort"][1]["@timestamp"]["order"], "asc");
        assert_eq!(body["search_after"], json!([42, 900]));
        let refused = s.backfill_page(&upper, Some(&json!(42)), &pit, Duration::from_secs(60));
        assert!(matches!(refused, Err(QueryError::InvalidCursor { .. })));
        assert_eq!(body["pit"], json!({"id": "p1", "keep_alive": "1m"}));
        assert_eq!(body["size"], 500);
        let bound = filters(&body).last().unwrap();
        // Not after (1000, "k"): the same filter a scroll resumes with, negated.
        let after = s.after_filter(&upper).unwrap();
        assert_eq!(bound, &json!({"bool": {"must_not": [after]}}));
    }

    #[test]
    fn with_shard_doc_the_backfill_stops_before_the_bounds_timestamp_and_the_cursor_rereads_it() {
        let s = spec(None, es9());
        let upper = Cursor::new(vec![1_000_i64.into(), 77_i64.into()]);
        let body = s
            .backfill_page(&upper, None, &PitId::new("p"), Duration::from_secs(30))
            .unwrap()
            .body
            .unwrap();
        let bound = filters(&body).last().unwrap();
        let range = &bound["bool"]["must_not"][0]["range"]["@timestamp"];
        assert_eq!(range["gte"], "1970-01-01T00:00:01.000Z");
        assert!(body.get("search_after").is_none());
        assert_eq!(
            s.handover_cursor(&upper),
            Cursor::new(vec![1_000_i64.into(), (-1_i64).into()])
        );
        let field = spec(Some("id"), es9());
        let upper = Cursor::new(vec![1_000_i64.into(), "k".into(), 5_i64.into()]);
        assert_eq!(
            field.handover_cursor(&upper),
            Cursor::new(vec![1_000_i64.into(), "k".into()])
        );
    }

    #[test]
    fn the_upper_bound_is_the_last_document_in_cursor_order() {
        let s = spec(Some("id"), es9());
        let body = s
            .last_in_pit(&PitId::new("p"), Duration::from_secs(60))
            .unwrap()
            .body
            .unwrap();
        assert_eq!(body["size"], 1);
        assert_eq!(body["sort"][0]["@timestamp"]["order"], "desc");
        assert!(body["sort"][0]["@timestamp"].get("missing").is_none());
        assert_eq!(body["sort"][1], json!({"id": {"order": "desc"}}));
        let shard_doc = spec(None, es9())
            .last_in_pit(&PitId::new("p"), Duration::from_secs(60))
            .unwrap()
            .body
            .unwrap();
        assert_eq!(shard_doc["sort"][1], json!({"_shard_doc": "desc"}));
    }

    #[test]
    fn missing_timestamps_first_are_read_by_the_backfill_and_sort_first_in_it() {
        let s = QueryConfig::new("logs")
            .with_tiebreaker_field("id")
            .with_missing_timestamp(MissingTimestamp::First)
            .build(es9())
            .unwrap();
        let upper = Cursor::new(vec![i64::MIN.into(), "k".into()]);
        let body = s
            .backfill_page(&upper, None, &PitId::new("p"), Duration::from_secs(60))
            .unwrap()
            .body
            .unwrap();
        assert_eq!(body["sort"][1]["@timestamp"]["missing"], "_first");
        // Still among the documents without a timestamp: not after the bound.
        let bound = filters(&body).last().unwrap();
        assert_eq!(
            bound,
            &json!({"bool": {"must_not": [s.after_filter(&upper).unwrap()]}})
        );
    }

    #[test]
    fn servers_without_shard_doc_refuse_a_backfill_naming_the_key() {
        let old = Flavor::OpenSearch { major: 3, minor: 2 };
        let s = spec(Some("id"), old);
        let upper = Cursor::new(vec![1_000_i64.into(), "k".into()]);
        let err = s
            .backfill_page(&upper, None, &PitId::new("p"), Duration::from_secs(60))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("backfill") && text.contains("OpenSearch >= 3.3"),
            "{text}"
        );
        let new = spec(Some("id"), Flavor::OpenSearch { major: 3, minor: 3 });
        assert!(
            new.backfill_page(&upper, None, &PitId::new("p"), Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn backfill_hits_keep_the_timestamp_and_return_the_last_position() {
        let hit = |id: &str, shard_doc: i64, ts: i64| Hit {
            index: "logs".into(),
            id: id.into(),
            seq_no: Some(1),
            primary_term: Some(1),
            source: None,
            sort: vec![shard_doc.into(), ts.into(), 9_i64.into()],
        };
        let (hits, position) = backfill_hits(vec![hit("a", 3, 10), hit("b", 8, 5)]).unwrap();
        assert_eq!(position, Some(json!([8, 5])));
        assert_eq!(hits[0].sort, vec![json!(10)]);
        assert_eq!(hits[1].sort, vec![json!(5)]);
        assert_eq!(backfill_hits(Vec::new()).unwrap().1, None);
        let mut bad = hit("c", 1, 1);
        bad.sort.truncate(1);
        let err = backfill_hits(vec![bad]).unwrap_err().to_string();
        assert!(err.contains("document `c`"), "{err}");
    }
}
