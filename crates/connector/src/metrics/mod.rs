//! Run metrics: a registry of atomics updated by the run loop through a cheap
//! [`Metrics`] handle, rendered in the Prometheus text format (version 0.0.4);
//! `server.rs` serves them at `GET /metrics`.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `es_connector_documents_total` | counter | documents delivered and committed |
//! | `es_connector_bytes_total` | counter | `_source` bytes of those documents |
//! | `es_connector_batches_total` | counter | non-empty batches delivered and committed |
//! | `es_connector_errors_total` | counter | errors met and retried (search, output, state) |
//! | `es_connector_state_saves_total` | counter | successful state saves (persistent state only) |
//! | `es_connector_state_save_seconds` | histogram | latency of those saves |
//! | `es_connector_late_documents_total` | counter | of those, documents `late_window` found behind the cursor |
//! | `es_connector_lag_seconds` | gauge | now − timestamp of the last document delivered at the cursor (late ones excluded) |

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::message::timestamp_millis;

mod server;

pub use server::{MetricsServer, serve};

/// Upper bounds (seconds) of the `es_connector_state_save_seconds` buckets.
pub const SAVE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// No document delivered yet.
const NO_TIMESTAMP: i64 = i64::MIN;

#[derive(Debug)]
struct Registry {
    documents: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    late: AtomicU64,
    errors: AtomicU64,
    saves: AtomicU64,
    save_nanos: AtomicU64,
    save_buckets: [AtomicU64; SAVE_BUCKETS.len()],
    /// Milliseconds since the epoch of the last delivered document's timestamp.
    last_timestamp_ms: AtomicI64,
}

/// A handle on one metrics registry; clones share it. Updating is a few relaxed
/// atomic additions.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Metrics {
            inner: Arc::new(Registry {
                documents: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                batches: AtomicU64::new(0),
                late: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                saves: AtomicU64::new(0),
                save_nanos: AtomicU64::new(0),
                save_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                last_timestamp_ms: AtomicI64::new(NO_TIMESTAMP),
            }),
        }
    }

    /// A batch of `documents` documents (`bytes` of `_source`) was delivered and committed.
    pub fn record_batch(&self, documents: u64, bytes: u64) {
        let r = &self.inner;
        r.documents.fetch_add(documents, Ordering::Relaxed);
        r.bytes.fetch_add(bytes, Ordering::Relaxed);
        r.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Of the documents recorded by [`Metrics::record_batch`], `documents` were
    /// late (found behind the cursor by `late_window`).
    pub fn record_late(&self, documents: u64) {
        self.inner.late.fetch_add(documents, Ordering::Relaxed);
    }

    /// Late documents delivered so far.
    pub fn late_documents(&self) -> u64 {
        self.inner.late.load(Ordering::Relaxed)
    }

    /// An error was met (and retried).
    pub fn record_error(&self) {
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A state save succeeded after `took`.
    pub fn record_state_save(&self, took: Duration) {
        let r = &self.inner;
        r.saves.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        r.save_nanos.fetch_add(nanos, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = SAVE_BUCKETS.iter().position(|le| secs <= *le) {
            r.save_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last delivered document's timestamp, in milliseconds since the epoch.
    pub fn set_last_timestamp_millis(&self, millis: i64) {
        self.inner
            .last_timestamp_ms
            .store(millis.max(NO_TIMESTAMP + 1), Ordering::Relaxed);
    }

    /// The last delivered document's timestamp as text (the `es_timestamp` header:
    /// RFC 3339, or epoch milliseconds/microseconds/nanoseconds); ignored when
    /// unreadable.
    pub fn observe_timestamp(&self, text: &str) {
        if let Some(millis) = timestamp_millis(text) {
            self.set_last_timestamp_millis(millis);
        }
    }

    /// Documents delivered so far.
    pub fn documents(&self) -> u64 {
        self.inner.documents.load(Ordering::Relaxed)
    }

    /// Bytes delivered so far.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// Batches delivered so far.
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }

    /// Errors met so far.
    pub fn errors(&self) -> u64 {
        self.inner.errors.load(Ordering::Relaxed)
    }

    /// State saves so far.
    pub fn state_saves(&self) -> u64 {
        self.inner.saves.load(Ordering::Relaxed)
    }

    /// Now minus the last delivered document's timestamp (`None` before the first).
    pub fn lag(&self) -> Option<f64> {
        let ts = self.inner.last_timestamp_ms.load(Ordering::Relaxed);
        if ts == NO_TIMESTAMP {
            return None;
        }
        let now = chrono::Utc::now().timestamp_millis();
        Some(now.saturating_sub(ts) as f64 / 1000.0)
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let r = &self.inner;
        let mut out = String::with_capacity(2048);
        let counters = [
            (
                "es_connector_documents_total",
                "Documents delivered and committed.",
                &r.documents,
            ),
            (
                "es_connector_bytes_total",
                "Bytes of _source delivered and committed.",
                &r.bytes,
            ),
            (
                "es_connector_batches_total",
                "Non-empty batches delivered and committed.",
                &r.batches,
            ),
            (
                "es_connector_late_documents_total",
                "Of those, documents late_window found behind the cursor.",
                &r.late,
            ),
            (
                "es_connector_errors_total",
                "Errors met and retried (search, output, state save).",
                &r.errors,
            ),
            (
                "es_connector_state_saves_total",
                "Successful state saves.",
                &r.saves,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let name = "es_connector_state_save_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency of state saves.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (le, bucket) in SAVE_BUCKETS.iter().zip(&r.save_buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = r.saves.load(Ordering::Relaxed);
        let sum = r.save_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        let name = "es_connector_lag_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Now minus the timestamp of the last delivered document (NaN before the first).\n# TYPE {name} gauge"
        );
        match self.lag() {
            Some(lag) => {
                let _ = writeln!(out, "{name} {lag}");
            }
            None => {
                let _ = writeln!(out, "{name} NaN");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_documents_are_counted_apart() {
        let m = Metrics::new();
        m.record_batch(10, 100);
        m.record_batch(3, 30);
        m.record_late(3);
        let text = m.render();
        assert!(text.contains("es_connector_documents_total 13"), "{text}");
        assert!(
            text.contains("es_connector_late_documents_total 3"),
            "{text}"
        );
        assert_eq!(m.late_documents(), 3);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        m.record_state_save(Duration::from_micros(300));
        m.record_state_save(Duration::from_millis(30));
        let text = m.render();
        assert!(
            text.contains("es_connector_state_save_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("es_connector_state_save_seconds_bucket{le=\"0.05\"} 2"),
            "{text}"
        );
        assert!(text.contains("es_connector_state_save_seconds_count 2"));
        assert!(text.contains("es_connector_lag_seconds NaN"));
    }
}
