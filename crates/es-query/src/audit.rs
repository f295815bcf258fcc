//! The requests of an audit, which compares what an index holds with what a
//! reader delivered: documents per time bucket (one aggregation), and the ids
//! of the documents in a time range (a scroll without `_source`), both for the
//! configured query, in `[from, until)`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::{QueryError, Result};
use crate::request::{Method, Request};
use crate::response::{check_shards, error_from_document, parse_json};
use crate::spec::{QuerySpec, TimestampKind};

/// The aggregation's name in requests and answers.
const PER_BUCKET: &str = "per_bucket";

impl QuerySpec {
    /// This query, restricted to timestamps in `[from, until)`.
    fn between(&self, from: Option<DateTime<Utc>>, until: DateTime<Utc>) -> QuerySpec {
        let kind = self.config.timestamp_type;
        let mut spec = self.with_ceiling(until);
        spec.floor = from.map(|at| kind.bound(at));
        spec
    }

    /// Documents per time bucket in `[from, until)`: `POST /{index}/_search` with
    /// `size: 0` and a histogram of the timestamp in buckets of `bucket` (whole
    /// milliseconds), aligned on the epoch (UTC), empty buckets left out. Read the
    /// answer with [`parse_bucket_counts`].
    pub fn count_per_bucket(
        &self,
        from: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
        bucket: Duration,
    ) -> Result<Request> {
        let millis = bucket_millis(bucket)?;
        let field = self.config.timestamp_field.as_str();
        let histogram = match self.config.timestamp_type {
            TimestampKind::EpochMillis => json!({"histogram": {
                "field": field, "interval": millis, "min_doc_count": 1,
            }}),
            TimestampKind::Date | TimestampKind::DateNanos => json!({"date_histogram": {
                "field": field, "fixed_interval": format!("{millis}ms"), "min_doc_count": 1,
            }}),
        };
        let query = self.between(from, until).query(None)?;
        Ok(
            Request::new(Method::Post, format!("/{}/_search", self.index_path))
                .param("allow_partial_search_results", "false")
                .body(json!({
                    "size": 0,
                    "track_total_hits": false,
                    "query": query,
                    "aggs": { PER_BUCKET: histogram },
                })),
        )
    }

    /// Starts a scroll over the documents in `[from, until)`, `size` per page,
    /// without `_source` (each hit: index, id and its timestamp as the only sort
    /// value, read with [`QuerySpec::hit_timestamp`]). Continue with
    /// [`QuerySpec::scroll_next`], free with [`QuerySpec::clear_scroll`].
    pub fn ids_between(
        &self,
        from: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
        size: usize,
        keep_alive: Duration,
    ) -> Result<Request> {
        self.scroll_between(
            from,
            until,
            keep_alive,
            json!({"size": size, "_source": false}),
        )
    }

    /// A scroll over `[from, until)` sorted by the timestamp, with `body` (size,
    /// `_source`...) besides the query and sort.
    fn scroll_between(
        &self,
        from: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
        keep_alive: Duration,
        mut body: Value,
    ) -> Result<Request> {
        body["query"] = self.between(from, until).query(None)?;
        body["sort"] = json!([self.timestamp_sort()]);
        Ok(
            Request::new(Method::Post, format!("/{}/_search", self.index_path))
                .param(
                    "scroll",
                    crate::request::time_value("keep_alive", keep_alive)?,
                )
                .param("allow_partial_search_results", "false")
                .body(body),
        )
    }
}

impl QuerySpec {
    /// Starts a scroll over the documents in `[from, until)` with their `_source`
    /// (as configured), `_seq_no` and timestamp (the only sort value), a page of
    /// `batch_size`: re-reading a time range behind the cursor. Ignores `slice`
    /// (use a spec built without one).
    pub fn documents_between(
        &self,
        from: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
        keep_alive: Duration,
    ) -> Result<Request> {
        let mut body = json!({"size": self.config.batch_size, "seq_no_primary_term": true});
        if let Some(source) = &self.config.source {
            body["_source"] = source.clone();
        }
        self.scroll_between(from, until, keep_alive, body)
    }
}

fn bucket_millis(bucket: Duration) -> Result<u64> {
    let millis = u64::try_from(bucket.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 || u128::from(millis) * 1_000_000 != bucket.as_nanos() {
        return Err(QueryError::invalid_config(
            "bucket",
            format!("{bucket:?} is not a whole, positive number of milliseconds"),
        ));
    }
    Ok(millis)
}

/// Reads the answer to [`QuerySpec::count_per_bucket`]: `(bucket start in epoch
/// milliseconds, documents)`, ascending, empty buckets left out.
pub fn parse_bucket_counts(status: u16, body: &[u8]) -> Result<Vec<(i64, u64)>> {
    const WHAT: &str = "documents per time bucket";
    let doc = parse_json(WHAT, body)?;
    if !(200..300).contains(&status) || doc.get("error").is_some() {
        return Err(error_from_document(status, &doc, body));
    }
    check_shards(&doc)?;
    let buckets = doc
        .pointer(&format!("/aggregations/{PER_BUCKET}/buckets"))
        .and_then(Value::as_array)
        .ok_or_else(|| QueryError::malformed(WHAT, "no histogram buckets", body))?;
    let mut counts = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let key = bucket.get("key").and_then(bucket_start).ok_or_else(|| {
            QueryError::malformed(
                WHAT,
                "a bucket whose `key` is not a time in whole epoch milliseconds",
                body,
            )
        })?;
        let count = bucket
            .get("doc_count")
            .and_then(Value::as_u64)
            .ok_or_else(|| QueryError::malformed(WHAT, "a bucket without doc_count", body))?;
        if count > 0 {
            counts.push((key, count));
        }
    }
    counts.sort_unstable();
    Ok(counts)
}

/// A bucket's `key`: whole epoch milliseconds (written as a float by some
/// servers, `1714557600000.0`) of a time a `DateTime` holds.
fn bucket_start(key: &Value) -> Option<i64> {
    let ms = match key.as_i64() {
        Some(ms) => ms,
        // Saturating: a key beyond i64 is refused by the range check below.
        None => key
            .as_f64()
            .filter(|f| f.fract() == 0.0)
            .map(|f| f as i64)?,
    };
    DateTime::from_timestamp_millis(ms).map(|_| ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Flavor, QueryConfig};

    fn spec(kind: TimestampKind) -> QuerySpec {
        QueryConfig::new("logs-*")
            .with_timestamp_type(kind)
            .with_tiebreaker_field("event_id")
            .build(Flavor::Elasticsearch {
                major: 8,
                minor: 11,
            })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_timezone(&Utc)
    }

    #[test]
    fn counts_per_bucket_in_a_half_open_window() {
        let request = spec(TimestampKind::Date)
            .count_per_bucket(
                Some(at("2024-05-01T10:00:00Z")),
                at("2024-05-01T11:00:00Z"),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let body = request.body.unwrap_or_default();
        assert_eq!(
            body["aggs"][PER_BUCKET]["date_histogram"]["fixed_interval"],
            "60000ms"
        );
        let filters = body["query"]["bool"]["filter"].to_string();
        assert!(
            filters.contains(r#""gte":"2024-05-01T10:00:00.000Z""#)
                && filters.contains(r#""lt":"2024-05-01T11:00:00.000Z""#),
            "{filters}"
        );
        let millis = spec(TimestampKind::EpochMillis)
            .count_per_bucket(None, at("2024-05-01T11:00:00Z"), Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{e}"));
        let body = millis.body.unwrap_or_default();
        assert_eq!(body["aggs"][PER_BUCKET]["histogram"]["interval"], 1000);
        let bad = spec(TimestampKind::Date).count_per_bucket(
            None,
            at("2024-05-01T11:00:00Z"),
            Duration::from_micros(1500),
        );
        assert!(
            matches!(bad, Err(QueryError::InvalidConfig { ref key, .. }) if key == "bucket"),
            "{bad:?}"
        );
    }

    #[test]
    fn bucket_counts_are_read_and_failures_refused() {
        let answer = br#"{"_shards":{"total":1,"successful":1,"failed":0},
            "aggregations":{"per_bucket":{"buckets":[
              {"key_as_string":"x","key":1714557660000,"doc_count":3},
              {"key":1714557600000,"doc_count":5},
              {"key":1714557720000,"doc_count":0}]}}}"#;
        assert_eq!(
            parse_bucket_counts(200, answer).unwrap_or_else(|e| panic!("{e}")),
            vec![(1_714_557_600_000, 5), (1_714_557_660_000, 3)]
        );
        let numeric =
            br#"{"aggregations":{"per_bucket":{"buckets":[{"key":1000.0,"doc_count":2}]}}}"#;
        assert_eq!(
            parse_bucket_counts(200, numeric).unwrap_or_else(|e| panic!("{e}")),
            vec![(1000, 2)]
        );
        for (status, bad) in [
            (200, &br#"{"aggregations":{}}"#[..]),
            (
                200,
                br#"{"aggregations":{"per_bucket":{"buckets":[{"doc_count":1}]}}}"#,
            ),
            (
                400,
                br#"{"error":{"type":"too_many_buckets_exception","reason":"x"},"status":400}"#,
            ),
            (200, b"<html>"),
        ] {
            assert!(
                parse_bucket_counts(status, bad).is_err(),
                "{status} {bad:?}"
            );
        }
    }

    /// Found by the `search_control` fuzz target: a key far outside any time
    /// (`1e30`) was read as `i64::MAX`, and the look behind the cursor overflowed
    /// adding the bucket width to it.
    #[test]
    fn a_bucket_key_that_is_no_time_is_refused() {
        for key in ["1e30", "-1e30", "9223372036854775807", "1714557600000.5"] {
            let body = format!(
                r#"{{"aggregations":{{"per_bucket":{{"buckets":[{{"key":{key},"doc_count":1}}]}}}}}}"#
            );
            match parse_bucket_counts(200, body.as_bytes()) {
                Err(QueryError::Malformed { reason, .. }) => {
                    assert!(reason.contains("key"), "{key}: {reason}")
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
