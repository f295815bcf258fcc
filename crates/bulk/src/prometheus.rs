//! Feature `prometheus`: a processor's [`BulkStats`] as metrics in a
//! [`prometheus_client`] registry the caller owns, read at each scrape.
//!
//! Named in `prometheus_client`'s conventions: a counter is registered without
//! its `_total` suffix (the encoder adds it), a unit is a registered unit (the
//! encoder appends `_bytes`), and a prefix comes from the registry
//! ([`Registry::sub_registry_with_prefix`]), not from this crate:
//!
//! | metric (as exposed) | type | labels | meaning |
//! |---|---|---|---|
//! | `bulk_calls_total` | counter | | `_bulk` calls made, retries included |
//! | `bulk_batches_flushed_total` | counter | | batches cut by `flush`/`close` or the flush interval |
//! | `bulk_requests_succeeded_total` | counter | `op` = index, create, update, delete | requests that succeeded |
//! | `bulk_requests_already_applied_total` | counter | | of those, resends whose conflict proved the first attempt applied |
//! | `bulk_requests_failed_total` | counter | | requests that failed for good (each reported once) |
//! | `bulk_requests_outcome_unknown_total` | counter | | of those, requests that may have been applied |
//! | `bulk_requests_retried_total` | counter | | requests sent again after a retryable failure |
//! | `bulk_sent_bytes_total` | counter | | NDJSON bytes sent, retries included |
//! | `bulk_buffered_bytes` | gauge | | bytes added and not finished (buffered or in flight) |
//! | `bulk_queued_requests` | gauge | | requests in the batches the workers are working on |
//! | `bulk_busy_workers` | gauge | | workers working on a batch |
//! | `bulk_rejected_429_total` | counter | `scope` = call, item | `_bulk` calls answered 429 as a whole; items refused 429 |
//! | `bulk_concurrency_limit` | gauge | | `_bulk` calls that may be in flight at once (`workers`, or the adaptive limit) |
//! | `bulk_in_flight_calls` | gauge | | `_bulk` calls in flight |
//! | `bulk_concurrency_decreases_total` | counter | | times the adaptive limit was lowered on 429 pushback |
//! | `bulk_concurrency_increases_total` | counter | | times the adaptive limit was raised after a round without 429 |
//!
//! The counters count only while statistics are on (the default;
//! [`BulkProcessorBuilder::stats`](crate::BulkProcessorBuilder::stats)).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::processor::StatsHandle;
use crate::{BulkProcessor, BulkStats};

impl BulkProcessor {
    /// Registers this processor's statistics in `registry`, read at each
    /// scrape for as long as the processor lives (the registry does not keep
    /// it alive; once it is dropped, its metrics are no longer exposed). For
    /// several processors in one registry, give each its own prefix:
    /// `processor.register_metrics(registry.sub_registry_with_prefix("orders"))`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(StatsCollector {
            stats: self.stats_handle(),
        }));
    }
}

struct StatsCollector {
    stats: StatsHandle,
}

impl std::fmt::Debug for StatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsCollector").finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(s) = self.stats.stats() else {
            return Ok(());
        };
        let BulkStats {
            batches_flushed,
            bulk_calls,
            indexed,
            created,
            updated,
            deleted,
            already_applied,
            failed,
            outcome_unknown,
            retried,
            bytes_sent,
            buffered_bytes,
            calls_rejected_429,
            items_rejected_429,
            concurrency_limit,
            in_flight,
            concurrency_decreases,
            concurrency_increases,
            ref workers,
            ..
        } = s;
        let e = &mut encoder;
        counter(
            e,
            "bulk_calls",
            "_bulk calls made, retries included",
            None,
            bulk_calls,
        )?;
        counter(
            e,
            "bulk_batches_flushed",
            "Batches cut by flush, close or the flush interval",
            None,
            batches_flushed,
        )?;
        let mut succeeded = e.encode_descriptor(
            "bulk_requests_succeeded",
            "Requests that succeeded, by operation",
            None,
            MetricType::Counter,
        )?;
        for (op, value) in [
            ("index", indexed),
            ("create", created),
            ("update", updated),
            ("delete", deleted),
        ] {
            let labels = [("op", op)];
            ConstCounter::new(value).encode(succeeded.encode_family(&labels)?)?;
        }
        counter(
            e,
            "bulk_requests_already_applied",
            "Of the requests that succeeded, resends whose conflict proved the first attempt applied",
            None,
            already_applied,
        )?;
        counter(
            e,
            "bulk_requests_failed",
            "Requests that failed for good (each reported once to the failure handler)",
            None,
            failed,
        )?;
        counter(
            e,
            "bulk_requests_outcome_unknown",
            "Of the requests that failed, those that may have been applied",
            None,
            outcome_unknown,
        )?;
        counter(
            e,
            "bulk_requests_retried",
            "Requests sent again after a retryable failure",
            None,
            retried,
        )?;
        counter(
            e,
            "bulk_sent",
            "NDJSON bytes sent, retries included",
            Some(&Unit::Bytes),
            bytes_sent,
        )?;
        gauge(
            e,
            "bulk_buffered",
            "Bytes of requests added and not yet finished (buffered or in flight)",
            Some(&Unit::Bytes),
            buffered_bytes,
        )?;
        gauge(
            e,
            "bulk_queued_requests",
            "Requests in the batches the workers are working on",
            None,
            workers.iter().map(|w| w.queued).sum(),
        )?;
        gauge(
            e,
            "bulk_busy_workers",
            "Workers working on a batch",
            None,
            workers.iter().filter(|w| w.queued > 0).count() as u64,
        )?;
        let mut rejected = e.encode_descriptor(
            "bulk_rejected_429",
            "_bulk calls answered 429 as a whole (scope call), items refused 429 (scope item)",
            None,
            MetricType::Counter,
        )?;
        for (scope, value) in [("call", calls_rejected_429), ("item", items_rejected_429)] {
            let labels = [("scope", scope)];
            ConstCounter::new(value).encode(rejected.encode_family(&labels)?)?;
        }
        gauge(
            e,
            "bulk_concurrency_limit",
            "_bulk calls that may be in flight at once: workers, or the adaptive limit",
            None,
            concurrency_limit,
        )?;
        gauge(
            e,
            "bulk_in_flight_calls",
            "_bulk calls in flight (sent, not yet answered)",
            None,
            in_flight,
        )?;
        counter(
            e,
            "bulk_concurrency_decreases",
            "Times the adaptive limit was lowered because the cluster answered 429",
            None,
            concurrency_decreases,
        )?;
        counter(
            e,
            "bulk_concurrency_increases",
            "Times the adaptive limit was raised after a round of answers without 429",
            None,
            concurrency_increases,
        )
    }
}
