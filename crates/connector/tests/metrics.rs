//! The metrics registry and its `/metrics` endpoint, in-process; and the run loop
//! updating them against the test server (`ES_URL`).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{TestIndex, docs, es_url, file_state, plugin_config};
use connector::{ElasticsearchSource, Metrics, MetricsServer, RunObserver, RunOptions};
use serde_json::json;

/// The value of the sample line `name` (exact name, labels included).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(server: &MetricsServer) -> (String, String) {
    let r = reqwest::get(format!("http://{}/metrics", server.local_addr()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, r.text().await.unwrap())
}

#[tokio::test]
async fn the_endpoint_serves_every_metric_in_prometheus_text_format() {
    let metrics = Metrics::new();
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    assert_ne!(server.local_addr().port(), 0);

    let (content_type, before) = scrape(&server).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_eq!(sample(&before, "es_connector_documents_total"), Some(0.0));
    assert!(before.contains("es_connector_lag_seconds NaN"), "{before}");

    metrics.record_batch(1000, 250_000);
    metrics.record_batch(500, 125_000);
    metrics.record_error();
    metrics.record_state_save(Duration::from_millis(2));
    metrics.record_state_save(Duration::from_millis(40));
    metrics.observe_timestamp(&(chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339());

    let (_, text) = scrape(&server).await;
    for (name, kind) in [
        ("es_connector_documents_total", "counter"),
        ("es_connector_bytes_total", "counter"),
        ("es_connector_batches_total", "counter"),
        ("es_connector_errors_total", "counter"),
        ("es_connector_state_saves_total", "counter"),
        ("es_connector_state_save_seconds", "histogram"),
        ("es_connector_lag_seconds", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}: {text}"
        );
        assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
    }
    assert_eq!(sample(&text, "es_connector_documents_total"), Some(1500.0));
    assert_eq!(sample(&text, "es_connector_bytes_total"), Some(375_000.0));
    assert_eq!(sample(&text, "es_connector_batches_total"), Some(2.0));
    assert_eq!(sample(&text, "es_connector_errors_total"), Some(1.0));
    assert_eq!(sample(&text, "es_connector_state_saves_total"), Some(2.0));
    assert_eq!(
        sample(&text, "es_connector_state_save_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "es_connector_state_save_seconds_bucket{le=\"0.0025\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "es_connector_state_save_seconds_bucket{le=\"+Inf\"}"),
        Some(2.0)
    );
    let sum = sample(&text, "es_connector_state_save_seconds_sum").unwrap();
    assert!((sum - 0.042).abs() < 1e-9, "{sum}");
    let lag = sample(&text, "es_connector_lag_seconds").unwrap();
    assert!((59.0..120.0).contains(&lag), "lag {lag}");

    let other = reqwest::get(format!("http://{}/", server.local_addr()))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    server.shutdown();
}

#[derive(Debug, Default)]
struct Counting {
    documents: AtomicU64,
    batches: AtomicU64,
    finished: AtomicU64,
}

impl RunObserver for Counting {
    fn batch_committed(&self, documents: u64, _bytes: u64) {
        self.documents.fetch_add(documents, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    fn finished(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn the_run_loop_updates_the_metrics_and_the_observer() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::standard(&url, "metrics").await;
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    index
        .load(&docs(300, 0, |i| {
            json!((base + chrono::Duration::seconds(i as i64)).to_rfc3339())
        }))
        .await;
    // A field tiebreaker: every server line has one (not every line has `_shard_doc`).
    let extra = format!(
        "batch_size = 100\ntiebreaker_field = \"id\"\n{}",
        file_state(dir.path(), "metrics")
    );
    let mut source = ElasticsearchSource::new(1, plugin_config(&url, &index.name, &extra));
    source.open().await.unwrap();
    assert_eq!(source.count_remaining().await.unwrap(), 300);

    let metrics = Metrics::new();
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    let observer = Arc::new(Counting::default());
    let mut out = connector::FileOutput::open(dir.path().join("out.jsonl")).unwrap();
    let summary = connector::run(
        &mut source,
        &mut out,
        RunOptions::default()
            .once(true)
            .with_metrics(metrics.clone())
            .with_observer(observer.clone()),
    )
    .await
    .unwrap();
    source.close().await.unwrap();
    assert_eq!(summary.documents, 300);

    let (_, text) = scrape(&server).await;
    assert_eq!(sample(&text, "es_connector_documents_total"), Some(300.0));
    assert_eq!(sample(&text, "es_connector_batches_total"), Some(3.0));
    assert_eq!(sample(&text, "es_connector_errors_total"), Some(0.0));
    assert!(
        sample(&text, "es_connector_bytes_total").unwrap() > 300.0 * 30.0,
        "{text}"
    );
    assert_eq!(sample(&text, "es_connector_state_saves_total"), Some(3.0));
    assert_eq!(
        sample(&text, "es_connector_state_save_seconds_count"),
        Some(3.0)
    );
    // The last document is 1 h − 299 s old.
    let lag = sample(&text, "es_connector_lag_seconds").unwrap();
    assert!((3300.0..3400.0).contains(&lag), "lag {lag}: {text}");

    assert_eq!(observer.documents.load(Ordering::Relaxed), 300);
    assert_eq!(observer.batches.load(Ordering::Relaxed), 3);
    assert_eq!(observer.finished.load(Ordering::Relaxed), 1);
}

/// An output that is unavailable for its first `fail_asks` questions about what it
/// holds and its first `fail_sends` sends, then writes to a file.
#[derive(Debug)]
struct Flaky {
    inner: connector::FileOutput,
    fail_asks: u32,
    fail_sends: u32,
}

fn unavailable() -> connector::OutputError {
    connector::OutputError::Unavailable {
        output: "flaky".into(),
        reason: "not now".into(),
    }
}

#[async_trait::async_trait]
impl connector::Output for Flaky {
    async fn send(&mut self, batch: &[connector::Message]) -> Result<(), connector::OutputError> {
        if self.fail_sends > 0 {
            self.fail_sends -= 1;
            return Err(unavailable());
        }
        self.inner.send(batch).await
    }

    async fn recently_delivered(
        &mut self,
        window: usize,
    ) -> Result<std::collections::HashSet<connector::MessageId>, connector::OutputError> {
        if self.fail_asks > 0 {
            self.fail_asks -= 1;
            return Err(unavailable());
        }
        self.inner.recently_delivered(window).await
    }
}

/// Every retried failure is counted once, wherever the run loop retries it: in
/// the summary, in `es_connector_errors_total` and in the state's `error_count`.
#[tokio::test]
async fn every_retried_output_failure_is_counted_once_everywhere() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::standard(&url, "metrics-errors").await;
    index
        .load(&docs(50, 0, |i| json!(format!("2024-05-01T10:00:{i:02}Z"))))
        .await;
    let extra = format!(
        "batch_size = 20\ntiebreaker_field = \"id\"\n{}",
        file_state(dir.path(), "errors")
    );
    let mut source = ElasticsearchSource::new(1, plugin_config(&url, &index.name, &extra));
    source.open().await.unwrap();
    let metrics = Metrics::new();
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    let mut out = Flaky {
        inner: connector::FileOutput::open(dir.path().join("out.jsonl")).unwrap(),
        fail_asks: 2,
        fail_sends: 3,
    };
    let summary = connector::run(
        &mut source,
        &mut out,
        RunOptions::default()
            .once(true)
            .with_backoff(Duration::from_millis(1), Duration::from_millis(4))
            .with_metrics(metrics.clone()),
    )
    .await
    .unwrap();
    let state = source.get_state().await.unwrap();
    source.close().await.unwrap();
    assert_eq!(summary.documents, 50);
    assert_eq!(summary.errors, 5, "{summary:?}");
    let (_, text) = scrape(&server).await;
    assert_eq!(
        sample(&text, "es_connector_errors_total"),
        Some(5.0),
        "two failed questions and three failed sends: {text}"
    );
    assert_eq!(state.data.error_count, 5, "{:?}", state.data);
}
