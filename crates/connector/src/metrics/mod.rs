//! Run metrics: a [`prometheus_client`] registry updated by the run loop, the
//! sink and the state store through a cheap [`Metrics`] handle, rendered in the
//! OpenMetrics text format; `server.rs` serves them at `GET /metrics`,
//! `store.rs` times the state store's loads and saves. Every metric, its type,
//! labels and meaning: `docs/metrics.md`.
//!
//! Every labelled series is created with the registry (at zero), so a scrape
//! lists every metric from the start and a rate over a label never starts from
//! a missing series.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use state_core::StateError;

use crate::error::ConnectorError;
use crate::message::timestamp_millis;

mod server;
mod store;

pub use server::{MetricsServer, ServeLimits, serve, serve_with};
pub use store::{MeteredStore, MetricsSlot};

/// The content type of [`Metrics::render`]'s text (OpenMetrics 1.0.0, which
/// Prometheus asks for first and reads natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the state save and load latency buckets.
pub const SAVE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How often a run samples its state store's size (`get_state_stats`).
pub const STORE_SAMPLE_INTERVAL: Duration = Duration::from_secs(30);

/// No document delivered yet.
const NO_TIMESTAMP: i64 = i64::MIN;

/// What a state store call came to: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOutcome {
    /// It succeeded (a load that found no state too: the connector starts fresh).
    Ok,
    /// A compare-and-set save lost to another writer.
    Conflict,
    /// The store could not be reached; retried.
    Unavailable,
    /// The stored document is unreadable (left untouched).
    Corrupt,
    /// Anything else: refused by the backend, a newer format, an invalid id.
    Error,
}

impl StoreOutcome {
    /// Every outcome, in label order.
    pub const ALL: [StoreOutcome; 5] = [
        StoreOutcome::Ok,
        StoreOutcome::Conflict,
        StoreOutcome::Unavailable,
        StoreOutcome::Corrupt,
        StoreOutcome::Error,
    ];

    /// The outcome of a store call that returned `result`.
    pub fn of<T>(result: &Result<T, StateError>) -> Self {
        match result {
            Ok(_) | Err(StateError::NotFound { .. }) => StoreOutcome::Ok,
            Err(StateError::Conflict { .. }) => StoreOutcome::Conflict,
            Err(StateError::Unavailable { .. }) => StoreOutcome::Unavailable,
            Err(StateError::Corrupt { .. }) => StoreOutcome::Corrupt,
            Err(_) => StoreOutcome::Error,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOutcome::Ok => "ok",
            StoreOutcome::Conflict => "conflict",
            StoreOutcome::Unavailable => "unavailable",
            StoreOutcome::Corrupt => "corrupt",
            StoreOutcome::Error => "error",
        }
    }
}

impl EncodeLabelValue for StoreOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Where an error came from: the `kind` label of `es_connector_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Reading the source cluster: unreachable, refused, malformed answers.
    Search,
    /// The output (file, stdout, Elasticsearch, Iggy), the sink's indexing and
    /// dead-letter file.
    Output,
    /// The sink's Iggy input (polls, offsets).
    Input,
    /// The state store.
    State,
    /// The configuration.
    Config,
    /// Misuse of the source's API (not open, batches out of order).
    Other,
}

impl ErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Search,
        ErrorKind::Output,
        ErrorKind::Input,
        ErrorKind::State,
        ErrorKind::Config,
        ErrorKind::Other,
    ];

    /// The kind of `error`.
    pub fn of(error: &ConnectorError) -> Self {
        match error {
            ConnectorError::ConfigFile { .. }
            | ConnectorError::ConfigSyntax { .. }
            | ConnectorError::InvalidConfig { .. }
            | ConnectorError::State(StateError::InvalidConfig { .. }) => ErrorKind::Config,
            ConnectorError::State(_) => ErrorKind::State,
            ConnectorError::Unreachable { .. }
            | ConnectorError::TlsCertificate { .. }
            | ConnectorError::Search { .. } => ErrorKind::Search,
            ConnectorError::Output(_) => ErrorKind::Output,
            ConnectorError::Input { .. } => ErrorKind::Input,
            ConnectorError::NotOpen | ConnectorError::OutOfOrder { .. } => ErrorKind::Other,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Search => "search",
            ErrorKind::Output => "output",
            ErrorKind::Input => "input",
            ErrorKind::State => "state",
            ErrorKind::Config => "config",
            ErrorKind::Other => "other",
        }
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: StoreOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: ErrorKind,
    retryable: bool,
}

fn latency_histogram() -> Histogram {
    Histogram::new(SAVE_BUCKETS)
}

/// Now − the last delivered document's timestamp, computed at each scrape
/// (NaN before the first document).
#[derive(Debug, Clone)]
struct Lag {
    /// Milliseconds since the epoch of the last delivered document's timestamp.
    last_timestamp_ms: Arc<AtomicI64>,
}

impl Lag {
    fn seconds(&self) -> Option<f64> {
        let ts = self.last_timestamp_ms.load(Ordering::Relaxed);
        if ts == NO_TIMESTAMP {
            return None;
        }
        let now = chrono::Utc::now().timestamp_millis();
        Some(now.saturating_sub(ts) as f64 / 1000.0)
    }
}

impl EncodeMetric for Lag {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        encoder.encode_gauge(&self.seconds().unwrap_or(f64::NAN))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    documents: Counter,
    bytes: Counter,
    batches: Counter,
    empty_polls: Counter,
    late: Counter,
    dead_lettered: Counter,
    errors: Family<ErrorLabels, Counter>,
    saves: Family<OutcomeLabels, Counter>,
    save_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    loads: Family<OutcomeLabels, Counter>,
    load_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    store_bytes: Gauge,
    store_states: Gauge,
    store_sampled: Gauge<f64, AtomicU64>,
    lag: Lag,
}

/// A handle on one metrics registry; clones share it. Updating is a few
/// atomic additions (a labelled series adds a read lock).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry holding every metric, each series at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let documents = counter(
            &mut registry,
            "es_connector_documents",
            "Documents delivered and committed (run), or indexed (sink)",
        );
        let batches = counter(
            &mut registry,
            "es_connector_batches",
            "Non-empty batches delivered and committed (run), or indexed with their offset stored (sink)",
        );
        let empty_polls = counter(
            &mut registry,
            "es_connector_empty_polls",
            "Polls that found nothing new (caught up)",
        );
        let late = counter(
            &mut registry,
            "es_connector_late_documents",
            "Of the documents, those late_window found behind the cursor",
        );
        let dead_lettered = counter(
            &mut registry,
            "es_connector_dead_lettered_documents",
            "Documents the sink wrote to its dead-letter file (refused for good)",
        );
        let bytes = Counter::default();
        registry.register(
            "es_connector_bytes",
            "Bytes of _source delivered and committed (run), or of payloads indexed (sink)",
            bytes.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "es_connector_errors",
            "Errors met, by kind, and whether they are transient (retryable=true: retried until they pass) or not (the run retried them only where it says so, or stopped)",
            errors.clone(),
        );
        let saves = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "es_connector_state_saves",
            "State saves (compare-and-set writes to the state store), by outcome",
            saves.clone(),
        );
        let save_seconds =
            Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "es_connector_state_save_seconds",
            "Latency of state saves, by outcome",
            save_seconds.clone(),
        );
        let loads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "es_connector_state_loads",
            "State loads (reads from the state store), by outcome; a state not found is ok",
            loads.clone(),
        );
        let load_seconds =
            Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "es_connector_state_load_seconds",
            "Latency of state loads, by outcome",
            load_seconds.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register_with_unit(
            "es_connector_state_store",
            "Bytes of every state document in the state store, sampled",
            Unit::Bytes,
            store_bytes.clone(),
        );
        let store_states = Gauge::default();
        registry.register(
            "es_connector_state_store_states",
            "States kept in the state store, sampled",
            store_states.clone(),
        );
        let store_sampled = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "es_connector_state_store_sampled_timestamp_seconds",
            "When the state store's size was last sampled (seconds since the epoch; 0: never)",
            store_sampled.clone(),
        );
        let lag = Lag {
            last_timestamp_ms: Arc::new(AtomicI64::new(NO_TIMESTAMP)),
        };
        registry.register(
            "es_connector_lag_seconds",
            "Now minus the timestamp of the last delivered document (NaN before the first)",
            lag.clone(),
        );
        // Every series exists from the start.
        for outcome in StoreOutcome::ALL {
            let labels = OutcomeLabels { outcome };
            drop(saves.get_or_create(&labels));
            drop(save_seconds.get_or_create(&labels));
            drop(loads.get_or_create(&labels));
            drop(load_seconds.get_or_create(&labels));
        }
        for kind in ErrorKind::ALL {
            for retryable in [false, true] {
                drop(errors.get_or_create(&ErrorLabels { kind, retryable }));
            }
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                documents,
                bytes,
                batches,
                empty_polls,
                late,
                dead_lettered,
                errors,
                saves,
                save_seconds,
                loads,
                load_seconds,
                store_bytes,
                store_states,
                store_sampled,
                lag,
            }),
        }
    }

    /// A batch of `documents` documents (`bytes` of `_source`) was delivered and committed.
    pub fn record_batch(&self, documents: u64, bytes: u64) {
        let r = &self.inner;
        r.documents.inc_by(documents);
        r.bytes.inc_by(bytes);
        r.batches.inc();
    }

    /// A poll found nothing new.
    pub fn record_empty_poll(&self) {
        self.inner.empty_polls.inc();
    }

    /// Of the documents recorded by [`Metrics::record_batch`], `documents` were
    /// late (found behind the cursor by `late_window`).
    pub fn record_late(&self, documents: u64) {
        self.inner.late.inc_by(documents);
    }

    /// The sink wrote `documents` documents to its dead-letter file.
    pub fn record_dead_lettered(&self, documents: u64) {
        self.inner.dead_lettered.inc_by(documents);
    }

    /// An error of `kind` was met; `retryable`: it is transient.
    pub fn record_error(&self, kind: ErrorKind, retryable: bool) {
        self.inner
            .errors
            .get_or_create(&ErrorLabels { kind, retryable })
            .inc();
    }

    /// `error` was met.
    pub fn record_connector_error(&self, error: &ConnectorError) {
        self.record_error(ErrorKind::of(error), error.is_retryable());
    }

    /// A state save came to `outcome` after `took`.
    pub fn record_state_save(&self, outcome: StoreOutcome, took: Duration) {
        let labels = OutcomeLabels { outcome };
        self.inner.saves.get_or_create(&labels).inc();
        self.inner
            .save_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A state load came to `outcome` after `took`.
    pub fn record_state_load(&self, outcome: StoreOutcome, took: Duration) {
        let labels = OutcomeLabels { outcome };
        self.inner.loads.get_or_create(&labels).inc();
        self.inner
            .load_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The state store held `states` states of `bytes` bytes together, just now.
    pub fn set_store_size(&self, states: u64, bytes: u64) {
        let r = &self.inner;
        r.store_states
            .set(i64::try_from(states).unwrap_or(i64::MAX));
        r.store_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        r.store_sampled
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    /// The last delivered document's timestamp, in milliseconds since the epoch.
    pub fn set_last_timestamp_millis(&self, millis: i64) {
        self.inner
            .lag
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

    /// Late documents delivered so far.
    pub fn late_documents(&self) -> u64 {
        self.inner.late.get()
    }

    /// Documents delivered so far.
    pub fn documents(&self) -> u64 {
        self.inner.documents.get()
    }

    /// Bytes delivered so far.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.get()
    }

    /// Batches delivered so far.
    pub fn batches(&self) -> u64 {
        self.inner.batches.get()
    }

    /// Errors met so far, of every kind.
    pub fn errors(&self) -> u64 {
        let mut total = 0;
        for kind in ErrorKind::ALL {
            for retryable in [false, true] {
                total += self
                    .inner
                    .errors
                    .get_or_create(&ErrorLabels { kind, retryable })
                    .get();
            }
        }
        total
    }

    /// Successful state saves so far.
    pub fn state_saves(&self) -> u64 {
        self.inner
            .saves
            .get_or_create(&OutcomeLabels {
                outcome: StoreOutcome::Ok,
            })
            .get()
    }

    /// Now minus the last delivered document's timestamp (`None` before the first).
    pub fn lag(&self) -> Option<f64> {
        self.inner.lag.seconds()
    }

    /// The registry in the OpenMetrics text format ([`CONTENT_TYPE`]), `# EOF` last.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            // Only a failing writer fails, and a String does not.
            tracing::error!(error = %e, "cannot encode the metrics");
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
        assert!(text.contains("es_connector_documents_total 13\n"), "{text}");
        assert!(
            text.contains("es_connector_late_documents_total 3\n"),
            "{text}"
        );
        assert_eq!(m.late_documents(), 3);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        m.record_state_save(StoreOutcome::Ok, Duration::from_micros(300));
        m.record_state_save(StoreOutcome::Ok, Duration::from_millis(30));
        let text = m.render();
        assert!(
            text.contains(
                "es_connector_state_save_seconds_bucket{le=\"0.0005\",outcome=\"ok\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("es_connector_state_save_seconds_bucket{le=\"0.05\",outcome=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("es_connector_state_save_seconds_count{outcome=\"ok\"} 2\n"));
        assert!(text.contains("es_connector_lag_seconds NaN\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn errors_are_labelled_by_kind_and_retryability() {
        let m = Metrics::new();
        m.record_connector_error(&ConnectorError::State(StateError::unavailable(
            "file", "busy",
        )));
        m.record_connector_error(&ConnectorError::invalid("plugin_config.index", "empty"));
        let text = m.render();
        assert!(
            text.contains("es_connector_errors_total{kind=\"state\",retryable=\"true\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("es_connector_errors_total{kind=\"config\",retryable=\"false\"} 1\n"),
            "{text}"
        );
        assert_eq!(m.errors(), 2);
    }
}
