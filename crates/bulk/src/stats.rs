//! Counters of a running processor.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A snapshot of a processor's counters (all zero when stats are off).
///
/// Each name says what it counts: batches (`batches_flushed`), `_bulk` calls
/// (`bulk_calls`), requests (`indexed` ... `retried`) or bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkStats {
    /// Batches (not requests) cut by `flush()`/`close()` or by the flush
    /// interval, rather than by `bulk_actions` or `bulk_size`. (go-elasticsearch's
    /// `NumFlushed` counts items; this does not.) Formerly `flushed`.
    pub batches_flushed: u64,
    /// `_bulk` calls made: every attempt, retries included, whatever its
    /// answer. Formerly `committed`.
    pub bulk_calls: u64,
    /// Index requests that succeeded.
    pub indexed: u64,
    /// Create requests that succeeded.
    pub created: u64,
    /// Update requests that succeeded.
    pub updated: u64,
    /// Delete requests that succeeded.
    pub deleted: u64,
    /// Requests that succeeded, of any kind.
    pub succeeded: u64,
    /// Of `succeeded`: requests sent again after an attempt that may have been
    /// applied, whose resend met a version conflict that means the earlier
    /// attempt applied them (`create` with an id, external versions: see
    /// [`Resend::ConflictMeansApplied`](crate::Resend::ConflictMeansApplied)).
    pub already_applied: u64,
    /// Requests that failed for good (each reported once to the failure handler).
    pub failed: u64,
    /// Of `failed`: requests reported as [`FailureKind::OutcomeUnknown`](crate::FailureKind::OutcomeUnknown)
    /// (may have been applied; not sent again because that could apply them twice).
    pub outcome_unknown: u64,
    /// Requests sent again after a retryable failure (one per request per retry).
    pub retried: u64,
    /// NDJSON bytes sent, retries included. Formerly `bytes`.
    pub bytes_sent: u64,
    /// Bytes of requests added and not yet finished (buffered or in flight) right now.
    pub buffered_bytes: u64,
    /// `_bulk` calls answered `429` as a whole (the cluster refused the call).
    /// Counted whether or not adaptive concurrency is on.
    pub calls_rejected_429: u64,
    /// Items refused with `429` (`es_rejected_execution_exception`: a full
    /// write queue) in answers to `_bulk` calls, retries included. Counted
    /// whether or not adaptive concurrency is on.
    pub items_rejected_429: u64,
    /// `_bulk` calls that may be in flight at once right now: `workers`, or
    /// the adaptive limit
    /// ([`BulkProcessorBuilder::adaptive`](crate::BulkProcessorBuilder::adaptive)).
    pub concurrency_limit: u64,
    /// `_bulk` calls in flight right now (sent, not yet answered).
    pub in_flight: u64,
    /// Times the adaptive limit was lowered (the cluster pushed back with `429`).
    pub concurrency_decreases: u64,
    /// Times the adaptive limit was raised (a round of answers without `429`).
    pub concurrency_increases: u64,
    /// One entry per worker.
    pub workers: Vec<WorkerStats>,
}

impl BulkStats {
    /// Renamed [`BulkStats::batches_flushed`].
    #[deprecated(note = "renamed `batches_flushed`: it counts batches, not requests")]
    pub fn flushed(&self) -> u64 {
        self.batches_flushed
    }
    /// Renamed [`BulkStats::bulk_calls`].
    #[deprecated(note = "renamed `bulk_calls`: it counts `_bulk` calls, retries included")]
    pub fn committed(&self) -> u64 {
        self.bulk_calls
    }
    /// Renamed [`BulkStats::bytes_sent`].
    #[deprecated(note = "renamed `bytes_sent`")]
    pub fn bytes(&self) -> u64 {
        self.bytes_sent
    }
}

/// A worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Requests in the batch this worker is working on (0 when idle).
    pub queued: u64,
    /// How long its last `_bulk` call took.
    pub last_duration: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub batches_flushed: AtomicU64,
    pub bulk_calls: AtomicU64,
    pub indexed: AtomicU64,
    pub created: AtomicU64,
    pub updated: AtomicU64,
    pub deleted: AtomicU64,
    pub succeeded: AtomicU64,
    pub already_applied: AtomicU64,
    pub failed: AtomicU64,
    pub outcome_unknown: AtomicU64,
    pub retried: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub calls_rejected_429: AtomicU64,
    pub items_rejected_429: AtomicU64,
    pub concurrency_decreases: AtomicU64,
    pub concurrency_increases: AtomicU64,
}

#[derive(Debug, Default)]
pub(crate) struct WorkerCounters {
    pub queued: AtomicU64,
    pub last_duration_nanos: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self, workers: &[WorkerCounters], buffered_bytes: u64) -> BulkStats {
        BulkStats {
            batches_flushed: self.batches_flushed.load(Relaxed),
            bulk_calls: self.bulk_calls.load(Relaxed),
            indexed: self.indexed.load(Relaxed),
            created: self.created.load(Relaxed),
            updated: self.updated.load(Relaxed),
            deleted: self.deleted.load(Relaxed),
            succeeded: self.succeeded.load(Relaxed),
            already_applied: self.already_applied.load(Relaxed),
            failed: self.failed.load(Relaxed),
            outcome_unknown: self.outcome_unknown.load(Relaxed),
            retried: self.retried.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            buffered_bytes,
            calls_rejected_429: self.calls_rejected_429.load(Relaxed),
            items_rejected_429: self.items_rejected_429.load(Relaxed),
            // Read from the gate by the caller.
            concurrency_limit: 0,
            in_flight: 0,
            concurrency_decreases: self.concurrency_decreases.load(Relaxed),
            concurrency_increases: self.concurrency_increases.load(Relaxed),
            workers: workers
                .iter()
                .map(|w| WorkerStats {
                    queued: w.queued.load(Relaxed),
                    last_duration: Duration::from_nanos(w.last_duration_nanos.load(Relaxed)),
                })
                .collect(),
        }
    }
}
