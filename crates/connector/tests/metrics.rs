//! The metrics registry and its `/metrics` endpoint, in-process (malformed and
//! slow requests included); and the run loop updating them against the test
//! server (`ES_URL`): documents, errors, state loads and saves by outcome, the
//! store's size.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{TestIndex, by_id, docs, es_url, file_state, open_source, plugin_config};
use connector::metrics::{ErrorKind, ServeLimits, StoreOutcome};
use connector::{ElasticsearchSource, Metrics, MetricsServer, RunObserver, RunOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds every await on the network: a test fails, never hangs.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A sample line's metric name, labels and value.
type Sample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// One sample line: its metric name, labels and value.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.trim().parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, labels_of(rest.strip_suffix('}')?)),
        None => (series, Vec::new()),
    };
    Some((name, labels, value))
}

/// `a="x",b="y"` as pairs (the values here hold no commas or quotes).
fn labels_of(text: &str) -> Vec<(&str, &str)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k, v.trim_matches('"')))
        })
        .collect()
}

/// The value of `name` (`name{label="value",..}` selects by those labels),
/// summed over the series with every other label: the total of a labelled
/// counter, or one series exactly.
fn sample(text: &str, name: &str) -> Option<f64> {
    let (wanted_name, wanted_labels) = match name.split_once('{') {
        Some((n, rest)) => (n, labels_of(rest.trim_end_matches('}'))),
        None => (name, Vec::new()),
    };
    let mut found = None;
    for (n, labels, value) in text.lines().filter_map(parse_sample) {
        if n == wanted_name && wanted_labels.iter().all(|l| labels.contains(l)) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// Asserts that the scrape `text` holds each `(name, value)` of `expected`, as
/// [`sample`] reads it.
fn assert_samples(text: &str, expected: &[(&str, f64)]) {
    for (name, value) in expected {
        assert_eq!(sample(text, name), Some(*value), "{name}: {text}");
    }
}

/// Scrapes `server`: the state load or save `outcome` (a series) counted once,
/// and `errors` state errors in all, none of them retried.
async fn assert_state_failure_counted(server: &MetricsServer, outcome: &str, errors: f64) {
    let (_, text) = scrape(server).await;
    let state_errors = "es_connector_errors_total{kind=\"state\",retryable=\"false\"}";
    assert_samples(&text, &[(outcome, 1.0), (state_errors, errors)]);
}

/// A metrics endpoint serving `metrics` on a free local port.
async fn serve(metrics: &Metrics) -> MetricsServer {
    MetricsServer::bind("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap()
}

/// A source (batches of `batch_size`, by `id`, state `state_id` in `dir`) on a
/// fresh index of `n` documents a second apart from 2024-05-01T10:00:00Z, opened.
async fn metered_source(
    url: &str,
    dir: &std::path::Path,
    state_id: &str,
    n: usize,
    batch_size: usize,
) -> (TestIndex, String, ElasticsearchSource) {
    let index = TestIndex::holding(url, &format!("metrics-{state_id}"), n, |i| {
        json!(format!("2024-05-01T10:00:{i:02}Z"))
    })
    .await;
    let extra = by_id(batch_size) + &file_state(dir, state_id);
    let source = ElasticsearchSource::new(1, plugin_config(url, &index.name, &extra));
    (index, extra, source)
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
    let server = serve(&metrics).await;
    assert_ne!(server.local_addr().port(), 0);

    let (content_type, before) = scrape(&server).await;
    // OpenMetrics text, which Prometheus asks for first (docs/metrics.md).
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(sample(&before, "es_connector_documents_total"), Some(0.0));
    assert!(before.contains("es_connector_lag_seconds NaN"), "{before}");

    metrics.record_batch(1000, 250_000);
    metrics.record_batch(500, 125_000);
    metrics.record_error(ErrorKind::Output, true);
    metrics.record_state_save(StoreOutcome::Ok, Duration::from_millis(2));
    metrics.record_state_save(StoreOutcome::Ok, Duration::from_millis(40));
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
        // OpenMetrics names a counter's family without its `_total` suffix.
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{name}: {text}"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{name}: {text}"
        );
    }
    assert_samples(
        &text,
        &[
            ("es_connector_documents_total", 1500.0),
            ("es_connector_bytes_total", 375_000.0),
            ("es_connector_batches_total", 2.0),
            ("es_connector_errors_total", 1.0),
            ("es_connector_state_saves_total", 2.0),
            ("es_connector_state_save_seconds_count", 2.0),
            ("es_connector_state_save_seconds_bucket{le=\"0.0025\"}", 1.0),
            ("es_connector_state_save_seconds_bucket{le=\"+Inf\"}", 2.0),
        ],
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
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let index = TestIndex::holding(&url, "metrics", 300, |i| {
        json!((base + chrono::Duration::seconds(i as i64)).to_rfc3339())
    })
    .await;
    // A field tiebreaker: every server line has one (not every line has `_shard_doc`).
    let extra = by_id(100) + &file_state(dir.path(), "metrics");
    let mut source = open_source(1, &url, &index.name, &extra).await;
    assert_eq!(source.count_remaining().await.unwrap(), 300);

    let metrics = Metrics::new();
    let server = serve(&metrics).await;
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
    assert_eq!(summary.documents, 300);

    let (_, text) = scrape(&server).await;
    assert_samples(
        &text,
        &[
            ("es_connector_documents_total", 300.0),
            ("es_connector_batches_total", 3.0),
            ("es_connector_errors_total", 0.0),
            ("es_connector_state_saves_total", 3.0),
            ("es_connector_state_save_seconds_count", 3.0),
        ],
    );
    assert!(
        sample(&text, "es_connector_bytes_total").unwrap() > 300.0 * 30.0,
        "{text}"
    );
    // The last document is 1 h − 299 s old.
    let lag = sample(&text, "es_connector_lag_seconds").unwrap();
    assert!((3300.0..3400.0).contains(&lag), "lag {lag}: {text}");
    // The last, empty, poll was read ahead while the last batch was written, so
    // the last commit saved what it changed: close has nothing left to save.
    source.close().await.unwrap();
    let (_, text) = scrape(&server).await;
    assert_eq!(sample(&text, "es_connector_state_saves_total"), Some(3.0));

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
    let (_index, _, mut source) = metered_source(&url, dir.path(), "errors", 50, 20).await;
    source.open().await.unwrap();
    let metrics = Metrics::new();
    let server = serve(&metrics).await;
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

/// Sends `request` on a new connection and returns what the server answers
/// until it closes the connection or `PROMPTLY` passes (a write the server cut
/// short by closing is not an error: its answer is read all the same).
async fn exchange(server: &MetricsServer, request: &[u8]) -> String {
    let mut client = tokio::time::timeout(PROMPTLY, TcpStream::connect(server.local_addr()))
        .await
        .expect("connect timed out")
        .unwrap();
    let _ = tokio::time::timeout(PROMPTLY, client.write_all(request))
        .await
        .expect("write timed out");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PROMPTLY, client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                // One answer is enough for the requests that keep the connection.
                if answer.windows(4).any(|w| w == b"\r\n\r\n")
                    && !request.starts_with(b"GET /metrics")
                {
                    break;
                }
            }
            Err(_) => panic!(
                "no answer within {PROMPTLY:?} to {:?}; got {:?}",
                String::from_utf8_lossy(&request[..request.len().min(60)]),
                String::from_utf8_lossy(&answer)
            ),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// Garbage, a wrong method, a huge header, a wrong path and clients that send
/// half a request and wait: each is answered (or cut off) by the HTTP server's
/// rules, and a proper scrape still gets the metrics at once.
#[tokio::test]
async fn the_endpoint_answers_properly_despite_malformed_and_slow_requests() {
    let metrics = Metrics::new();
    metrics.record_batch(7, 700);
    let server = serve(&metrics).await;
    // Slow clients: half a request head each, held open for the whole test.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(client);
    }

    let garbage = exchange(&server, b"\x00\x01\x02 not http at all\r\n\r\n").await;
    assert!(
        status_line(&garbage).starts_with("HTTP/1.1 400"),
        "{garbage}"
    );

    let post = exchange(
        &server,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(status_line(&post).starts_with("HTTP/1.1 405"), "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );

    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let huge = exchange(&server, &huge).await;
    assert!(status_line(&huge).starts_with("HTTP/1.1 431"), "{huge}");

    let wrong_path = exchange(&server, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        status_line(&wrong_path).starts_with("HTTP/1.1 404"),
        "{wrong_path}"
    );

    let head = exchange(&server, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(status_line(&head).starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.contains("es_connector_documents_total"),
        "a body for HEAD: {head}"
    );

    // A proper scrape, while the slow clients still hold their connections.
    let (content_type, text) = tokio::time::timeout(PROMPTLY, scrape(&server))
        .await
        .expect("the scrape was not answered promptly");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert_eq!(sample(&text, "es_connector_documents_total"), Some(7.0));
    assert!(text.ends_with("# EOF\n"), "{text}");
    // And on a raw connection too, keep-alive: two scrapes, one connection.
    let twice = exchange(
        &server,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(twice.matches("HTTP/1.1 200").count(), 2, "{twice}");
    assert_eq!(twice.matches("# EOF").count(), 2, "{twice}");
    drop(slow);
}

/// A client that never finishes its request head is cut off after the header
/// read timeout instead of holding a connection for ever.
#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_cut_off() {
    let server = MetricsServer::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        Metrics::new(),
        ServeLimits::default().header_read_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    // hyper answers 408 and closes, or just closes: either way within the bound.
    let mut answer = Vec::new();
    loop {
        match tokio::time::timeout(PROMPTLY, client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the half request was held beyond {PROMPTLY:?}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

/// A connection beyond `max_connections` is closed at once; those served go on.
#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let server = MetricsServer::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        Metrics::new(),
        ServeLimits::default().max_connections(2),
    )
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(server.local_addr()).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // Served: the answer's first bytes arrive, and the connection stays.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(PROMPTLY, c.read(&mut buf))
            .await
            .expect("not served")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(c);
    }
    let extra = exchange(&server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(extra.is_empty(), "a third connection was served: {extra}");
    drop(held);
}

/// The families a scrape lists (`# TYPE` lines), with their types.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// Every metric the endpoint serves is documented in docs/metrics.md (name
/// and type), and every metric documented there is served from the start.
#[tokio::test]
async fn every_served_metric_is_documented_and_every_documented_one_served() {
    let server = serve(&Metrics::new()).await;
    let (_, text) = scrape(&server).await;
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .unwrap();
    let served = families(&text);
    assert!(served.len() >= 15, "{text}");
    // prometheus-client ends each help text with a full stop of its own.
    for help in text.lines().filter(|l| l.starts_with("# HELP ")) {
        assert!(!help.ends_with(".."), "{help}");
    }
    for (family, kind) in &served {
        let exposed = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.clone()
        };
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{exposed}` |")))
            .unwrap_or_else(|| panic!("{exposed} is served but has no row in docs/metrics.md"));
        assert!(row.contains(&format!("| {kind} |")), "{exposed}: {row}");
    }
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `es_connector_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    for name in documented {
        let name = format!("es_connector_{name}");
        assert!(
            sample(&text, &name).is_some() || text.contains(&format!("{name}_count")),
            "{name} is documented but not served: {text}"
        );
    }
}

/// The metric names a PromQL expression uses: the identifiers that begin with
/// `es_connector_` (the dashboard queries nothing else).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("es_connector_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every `expr` of a Grafana dashboard, rows' panels included.
fn exprs(panels: &serde_json::Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(expr.to_owned());
            }
        }
        exprs(&panel["panels"], out);
    }
}

/// docs/grafana-dashboard.json parses, and every metric its queries name is
/// one the endpoint serves (a fresh registry lists every series).
#[tokio::test]
async fn the_dashboard_queries_only_metrics_the_endpoint_serves() {
    let server = serve(&Metrics::new()).await;
    let (_, text) = scrape(&server).await;
    let served: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(parse_sample)
        .map(|(name, _, _)| name)
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .expect("docs/grafana-dashboard.json is not JSON");
    assert!(dashboard["title"].is_string(), "no title");
    let mut all = Vec::new();
    exprs(&dashboard["panels"], &mut all);
    assert!(all.len() >= 10, "{all:?}");
    let mut queried = std::collections::BTreeSet::new();
    for expr in &all {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "a query naming no metric: {expr}");
        for name in names {
            assert!(
                served.contains(name.as_str()),
                "the dashboard queries {name} ({expr}), which the endpoint does not serve"
            );
            queried.insert(name);
        }
    }
    // It plots every family.
    for (family, kind) in families(&text) {
        let plotted = queried.iter().any(|q| q.starts_with(&family));
        assert!(plotted, "the dashboard plots no {family} ({kind})");
    }
}

/// A run opened with metrics counts its state loads and saves by outcome, its
/// empty polls, and samples the store's size; a corrupt state is counted as a
/// corrupt load and a state error; a save that loses to another writer as a
/// conflict.
#[tokio::test]
async fn state_loads_saves_store_size_and_failures_are_counted_by_outcome() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (index, extra, mut first) = metered_source(&url, dir.path(), "outcomes", 30, 10).await;
    let metrics = Metrics::new();
    let server = serve(&metrics).await;
    let mut options = RunOptions::default()
        .once(true)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(4))
        .with_metrics(metrics.clone());
    assert!(
        connector::open_with_retry(&mut first, &mut options)
            .await
            .unwrap()
    );
    let mut out = connector::FileOutput::open(dir.path().join("out.jsonl")).unwrap();
    let summary = connector::run(&mut first, &mut out, options.clone())
        .await
        .unwrap();
    assert_eq!((summary.documents, summary.batches), (30, 3));
    let (_, text) = scrape(&server).await;
    let bytes = std::fs::metadata(dir.path().join("outcomes.json"))
        .unwrap()
        .len();
    assert_samples(
        &text,
        &[
            ("es_connector_state_loads_total{outcome=\"ok\"}", 1.0),
            ("es_connector_state_load_seconds_count{outcome=\"ok\"}", 1.0),
            ("es_connector_state_saves_total{outcome=\"ok\"}", 3.0),
            ("es_connector_empty_polls_total", 1.0),
            ("es_connector_state_store_states", 1.0),
            ("es_connector_state_store_bytes", bytes as f64),
        ],
    );
    assert!(sample(&text, "es_connector_state_store_sampled_timestamp_seconds").unwrap() > 0.0);

    // A second instance on the same state: it loads the state, then the first
    // saves again, so the second's next save loses (a conflict stops the run).
    index
        .load(&docs(10, 30, |i| {
            json!(format!("2024-05-01T10:01:{i:02}Z"))
        }))
        .await;
    let mut second = ElasticsearchSource::new(1, plugin_config(&url, &index.name, &extra));
    assert!(
        connector::open_with_retry(&mut second, &mut options)
            .await
            .unwrap()
    );
    first.get_state_manager().unwrap().save().await.unwrap();
    let mut out2 = connector::FileOutput::open(dir.path().join("out2.jsonl")).unwrap();
    let lost = connector::run(&mut second, &mut out2, options.clone()).await;
    assert!(lost.is_err(), "{lost:?}");
    let conflict = "es_connector_state_saves_total{outcome=\"conflict\"}";
    assert_state_failure_counted(&server, conflict, 1.0).await;

    // A corrupt state: counted as such when loaded, and the open fails for good.
    std::fs::write(dir.path().join("outcomes.json"), b"{ not a state").unwrap();
    let mut third = ElasticsearchSource::new(1, plugin_config(&url, &index.name, &extra));
    let opened = connector::open_with_retry(&mut third, &mut options).await;
    assert!(opened.is_err(), "{opened:?}");
    let corrupt = "es_connector_state_loads_total{outcome=\"corrupt\"}";
    assert_state_failure_counted(&server, corrupt, 2.0).await;
}
