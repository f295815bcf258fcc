//! `late_window`: documents that become searchable behind the cursor (a late
//! refresh beyond `settle`, a shipper delivering old events, a new index with
//! older data) are found and delivered once.
//!
//! The source remembers which documents it delivered in the last `late_window`
//! behind its cursor, in time buckets (a 64-bit key of each document's index and
//! id). Once caught up, it asks the server how many documents each bucket of
//! the window holds (one histogram): only the buckets holding more than were
//! delivered are read again, and only their documents not delivered yet are
//! handed out. Delivered documents are recorded when their batch is committed,
//! in the same state save as the cursor, so a restart (or SIGKILL) delivers
//! none of them again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::dedup::{decode_fingerprints, encode_fingerprints};

/// Where the window lives in the state document.
pub const LATE_FIELD: &str = "late_window";
/// `data.late_documents_delivered`: documents the late window delivered in total.
pub const LATE_COUNT_FIELD: &str = "late_documents_delivered";
/// Buckets per window (the bucket width is the window over this, at least 1 s).
pub const BUCKETS_PER_WINDOW: i64 = 100;
/// Most documents remembered across the window. A bucket that would pass it is
/// marked unverifiable and not examined (warned about).
pub const MAX_REMEMBERED: usize = 2_000_000;

/// What one look behind the cursor reads and counts (epoch milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) count_from: i64,
    pub(crate) from: i64,
    pub(crate) until: i64,
    pub(crate) count_until: i64,
}

/// The documents delivered in the window behind the cursor, by time bucket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LateWindow {
    window_ms: i64,
    bucket_ms: i64,
    buckets: BTreeMap<i64, HashSet<u64>>,
    remembered: usize,
    /// Buckets where a document could not be remembered (the cap).
    overflowed: BTreeSet<i64>,
    /// Documents handed out in late batches not committed yet: a slice whose
    /// cursor is behind them must not read them again meanwhile. In memory only:
    /// after a restart they are found again, as they were never committed.
    in_flight: HashSet<u64>,
}

impl LateWindow {
    pub(crate) fn new(window: Duration) -> Self {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let bucket_ms = (window_ms / BUCKETS_PER_WINDOW).max(1000) / 1000 * 1000;
        LateWindow {
            window_ms,
            bucket_ms,
            buckets: BTreeMap::new(),
            remembered: 0,
            overflowed: BTreeSet::new(),
            in_flight: HashSet::new(),
        }
    }

    pub(crate) fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.unsigned_abs())
    }

    pub(crate) fn bucket(&self) -> Duration {
        Duration::from_millis(self.bucket_ms.unsigned_abs())
    }

    fn bucket_of(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.bucket_ms) * self.bucket_ms
    }

    /// Remembers that the document `key`, stamped `ts_ms`, was delivered.
    pub(crate) fn record(&mut self, ts_ms: i64, key: u64) {
        self.in_flight.remove(&key);
        let bucket = self.bucket_of(ts_ms);
        if self.remembered >= MAX_REMEMBERED {
            if self.overflowed.insert(bucket) {
                tracing::warn!(
                    bucket_start_ms = bucket,
                    limit = MAX_REMEMBERED,
                    "late_window: too many documents in the window to remember; late documents of this bucket are not looked for (shorten late_window)"
                );
            }
            return;
        }
        if self.buckets.entry(bucket).or_default().insert(key) {
            self.remembered += 1;
        }
    }

    /// Remembers that the document `key` is handed out in a late batch, until
    /// its commit [records](Self::record) it.
    pub(crate) fn hand_out(&mut self, key: u64) {
        self.in_flight.insert(key);
    }

    /// Whether `key`, stamped `ts_ms`, is known as delivered or handed out.
    pub(crate) fn contains(&self, ts_ms: i64, key: u64) -> bool {
        self.in_flight.contains(&key)
            || self
                .buckets
                .get(&self.bucket_of(ts_ms))
                .is_some_and(|b| b.contains(&key))
    }

    /// Forgets the buckets that ended before `horizon_ms` minus the window.
    pub(crate) fn prune(&mut self, horizon_ms: i64) {
        let keep_from = self.bucket_of(horizon_ms.saturating_sub(self.window_ms));
        let kept = self.buckets.split_off(&keep_from);
        let dropped = std::mem::replace(&mut self.buckets, kept);
        self.remembered -= dropped.values().map(HashSet::len).sum::<usize>();
        self.overflowed = self.overflowed.split_off(&keep_from);
    }

    /// The window `[from, until)` behind the slices' cursors, the nearest at
    /// `nearest_ms` and the furthest at `furthest_ms` (what is read again), and
    /// the whole buckets that cover it (what is counted). It starts `late_window`
    /// behind the nearest cursor, where remembering starts (see
    /// [`prune`](Self::prune)), and ends after the furthest cursor's own
    /// millisecond: a document stamped there but ordered before the cursor is
    /// read by nothing else; one ordered after it, found here, is left out of the
    /// next page for being [contained](Self::contains). Counts compare whole
    /// buckets, since what was delivered in one may lie outside the window.
    pub(crate) fn range(&self, nearest_ms: i64, furthest_ms: i64) -> Range {
        let from = nearest_ms.saturating_sub(self.window_ms);
        Range {
            count_from: self.bucket_of(from),
            from,
            until: furthest_ms.saturating_add(1),
            count_until: self.bucket_of(furthest_ms) + self.bucket_ms,
        }
    }

    /// The parts in `[from, until)` of the buckets whose `counts` (whole
    /// buckets, from the server) exceed what was delivered there: documents
    /// appeared since.
    pub(crate) fn changed(&self, counts: &[(i64, u64)], from: i64, until: i64) -> Vec<(i64, i64)> {
        counts
            .iter()
            .filter(|(start, count)| {
                let known = self.buckets.get(start).map_or(0, HashSet::len) as u64;
                *count > known && !self.overflowed.contains(start)
            })
            .map(|(start, _)| {
                // A bucket at the end of time ends there (the server said so).
                (
                    (*start).max(from),
                    start.saturating_add(self.bucket_ms).min(until),
                )
            })
            .filter(|(a, b)| a < b)
            .collect()
    }

    /// Documents remembered.
    pub(crate) fn remembered(&self) -> usize {
        self.remembered
    }

    /// The state's form: `{"window_ms", "bucket_ms", "buckets": {start: "fp64:..."},
    /// "overflowed": [start, ...]}`.
    pub(crate) fn to_value(&self) -> Value {
        let buckets: Map<String, Value> = self
            .buckets
            .iter()
            .map(|(start, keys)| {
                (
                    start.to_string(),
                    Value::String(encode_fingerprints(keys.iter().copied())),
                )
            })
            .collect();
        json!({
            "window_ms": self.window_ms,
            "bucket_ms": self.bucket_ms,
            "buckets": buckets,
            "overflowed": self.overflowed,
        })
    }

    /// Restores the stored window into `self` (a fresh window of the configured
    /// size). A window stored with another bucket width is dropped (`Ok(false)`):
    /// its buckets mean nothing at this width. `Err` says what is wrong.
    pub(crate) fn restore(&mut self, stored: &Value) -> Result<bool, String> {
        let bucket_ms = stored
            .get("bucket_ms")
            .and_then(Value::as_i64)
            .ok_or("no bucket_ms number")?;
        if bucket_ms != self.bucket_ms {
            return Ok(false);
        }
        let buckets = stored
            .get("buckets")
            .and_then(Value::as_object)
            .ok_or("no buckets object")?;
        for (start, keys) in buckets {
            let start: i64 = start
                .parse()
                .map_err(|_| format!("bucket `{start}` is not a number of milliseconds"))?;
            let keys = keys
                .as_str()
                .ok_or_else(|| format!("bucket {start} is not a string of fingerprints"))
                .and_then(|text| {
                    decode_fingerprints(text).map_err(|e| format!("bucket {start} {e}"))
                })?;
            self.remembered += keys.len();
            self.buckets.entry(start).or_default().extend(keys);
        }
        if let Some(overflowed) = stored.get("overflowed").and_then(Value::as_array) {
            self.overflowed
                .extend(overflowed.iter().filter_map(Value::as_i64));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `search_control` fuzz target (a histogram answer whose
    /// bucket key is `1e30`): a bucket starting at the end of time made
    /// `changed` overflow adding the bucket width.
    #[test]
    fn buckets_at_the_end_of_time_do_not_overflow() {
        let w = LateWindow::new(Duration::from_secs(600));
        assert_eq!(
            w.changed(&[(i64::MAX - 1, 1)], 0, i64::MAX),
            vec![(i64::MAX - 1, i64::MAX)]
        );
        assert_eq!(w.changed(&[(i64::MAX, 1)], 0, i64::MAX), vec![]);
    }

    #[test]
    fn buckets_are_a_hundredth_of_the_window_in_whole_seconds() {
        assert_eq!(LateWindow::new(Duration::from_secs(600)).bucket_ms, 6_000);
        assert_eq!(LateWindow::new(Duration::from_secs(30)).bucket_ms, 1_000);
        assert_eq!(
            LateWindow::new(Duration::from_secs(3_650)).bucket_ms,
            36_000
        );
    }

    #[test]
    fn only_buckets_holding_more_than_was_delivered_are_read_again() {
        let mut w = LateWindow::new(Duration::from_secs(100));
        for (ts, key) in [(0, 1), (500, 2), (1_200, 3), (5_000, 4)] {
            w.record(ts, key);
        }
        assert!(w.contains(500, 2) && !w.contains(1_500, 2));
        // Server: bucket 0 holds 2 (as delivered), 1000 holds 2 (one more), 7000 one.
        let changed = w.changed(&[(0, 2), (1_000, 2), (5_000, 1), (7_000, 1)], 0, 7_500);
        assert_eq!(changed, vec![(1_000, 2_000), (7_000, 7_500)]);
        // Counted over whole buckets, read only inside the window.
        let r = w.range(7_500, 7_500);
        assert_eq!((r.count_from, r.from), (-93_000, -92_500));
        assert_eq!((r.until, r.count_until), (7_501, 8_000));
        let r = LateWindow::new(Duration::from_secs(100)).range(150_300, 150_300);
        assert_eq!(
            (r.count_from, r.from, r.until, r.count_until),
            (50_000, 50_300, 150_301, 151_000)
        );
        let r = w.range(60_000, 75_500);
        assert_eq!(
            (r.count_from, r.from, r.until, r.count_until),
            (-40_000, -40_000, 75_501, 76_000),
            "from behind the nearest cursor to the furthest"
        );
        // Handed out in a late batch: contained until committed, then counted.
        w.hand_out(9);
        assert!(w.contains(70_000, 9) && w.remembered() == 4);
        w.record(7_200, 9);
        assert!(w.contains(7_200, 9) && w.remembered() == 5);
        w.in_flight.clear();
        assert!(
            !w.contains(70_000, 9),
            "in the bucket of its timestamp only"
        );
    }

    #[test]
    fn pruning_keeps_the_window_and_the_state_round_trips() {
        let mut w = LateWindow::new(Duration::from_secs(100));
        for ts in (0..300_000).step_by(1_000) {
            w.record(ts, ts.unsigned_abs());
        }
        assert_eq!(w.remembered(), 300);
        w.prune(300_000);
        assert_eq!(w.remembered(), 100, "the last 100 s");
        let mut again = LateWindow::new(Duration::from_secs(100));
        assert_eq!(again.restore(&w.to_value()), Ok(true));
        assert_eq!(again, w);
        let mut other = LateWindow::new(Duration::from_secs(1_000));
        assert_eq!(
            other.restore(&w.to_value()),
            Ok(false),
            "another bucket width"
        );
        assert!(
            again
                .restore(&json!({"bucket_ms": 1000, "buckets": {"x": "fp64:"}}))
                .is_err()
        );
    }

    /// The documented bound: bytes of state per million documents in the window.
    #[test]
    fn a_million_documents_in_the_window_take_under_eleven_megabytes_of_state() {
        let mut w = LateWindow::new(Duration::from_secs(600));
        for i in 0..1_000_000u64 {
            let ts = i64::try_from(i % 600_000).unwrap_or(0);
            w.record(ts, i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        let bytes = w.to_value().to_string().len();
        assert!(bytes < 11_000_000, "{bytes} bytes");
        assert!(bytes > 10_000_000, "{bytes} bytes: the keys are all there");
    }
}
