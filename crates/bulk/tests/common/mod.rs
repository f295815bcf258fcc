//! Helpers for the tests: those that need a real cluster (`ES_URL`), and the
//! backoff of those against the local test servers.
#![allow(dead_code, clippy::print_stdout)]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The cluster's URL, or `None` (with one line saying so) when `ES_URL` is not
/// set. Panics when `XTASK_REQUIRE_SERVICES=1` and it is not set.
pub fn es_url() -> Option<String> {
    match std::env::var("ES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_owned()),
        _ if std::env::var("XTASK_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!(
                "ES_URL is not set, and XTASK_REQUIRE_SERVICES=1 requires the bulk integration tests to run"
            )
        }
        _ => {
            println!("ES_URL not set: bulk integration tests not run");
            None
        }
    }
}

/// A uniquely named index on the test cluster; call [`TestIndex::delete`] at the end.
pub struct TestIndex {
    pub name: String,
    url: String,
    client: reqwest::Client,
}

impl TestIndex {
    /// Creates `bulk-test-<purpose>-<unique>` with `body` (settings/mappings), failing
    /// loudly when the cluster cannot be reached.
    pub async fn create(url: &str, purpose: &str, body: Value) -> TestIndex {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "bulk-test-{purpose}-{}-{nanos:x}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let index = TestIndex {
            name,
            url: url.to_owned(),
            client,
        };
        let resp = index
            .client
            .put(format!("{url}/{}", index.name))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("ES_URL={url} is set but the cluster cannot be reached: {e}")
            });
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "creating index {}: HTTP {status}: {text}",
            index.name
        );
        index
    }

    /// An index with default settings.
    pub async fn plain(url: &str, purpose: &str) -> TestIndex {
        Self::create(url, purpose, json!({})).await
    }

    /// `GET /<index>/_count`.
    /// The number of documents, after an explicit `_refresh` (a real server shows
    /// new documents only after one).
    pub async fn count(&self) -> u64 {
        let refreshed = self
            .client
            .post(format!("{}/{}/_refresh", self.url, self.name))
            .send()
            .await
            .unwrap();
        assert!(
            refreshed.status().is_success(),
            "_refresh of {}: HTTP {}",
            self.name,
            refreshed.status()
        );
        let resp = self
            .client
            .get(format!("{}/{}/_count", self.url, self.name))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(
            status.is_success(),
            "_count of {}: HTTP {status}: {body}",
            self.name
        );
        body["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("_count answered {body}"))
    }

    /// Deletes the index.
    pub async fn delete(self) {
        let resp = self
            .client
            .delete(format!("{}/{}", self.url, self.name))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "deleting {}: HTTP {}",
            self.name,
            resp.status()
        );
    }
}

/// A small document with an id.
pub fn doc(index: &str, i: u64) -> bulk::BulkRequest {
    bulk::BulkRequest::index(index)
        .id(i.to_string())
        .doc(&json!({"n": i, "tag": "bulk-test"}))
}

/// Failures a processor's `on_failure` collected.
pub type Failures = std::sync::Arc<std::sync::Mutex<Vec<bulk::FailedItem>>>;

/// A processor on `url`: batches of `actions`, retries as `backoff`, every
/// failure collected.
pub fn collecting_processor(
    url: &str,
    actions: usize,
    backoff: bulk::Backoff,
) -> (bulk::BulkProcessor, Failures) {
    let failures = Failures::default();
    let sink = failures.clone();
    let p = bulk::BulkProcessorBuilder::new(bulk::HttpTransport::new(url).unwrap())
        .bulk_actions(actions)
        .backoff(backoff)
        .on_failure(move |f| sink.lock().unwrap().push(f))
        .build()
        .unwrap();
    (p, failures)
}

/// The failures collected so far, taken.
pub fn taken(failures: &Failures) -> Vec<bulk::FailedItem> {
    std::mem::take(&mut *failures.lock().unwrap())
}

/// A backoff for retries against the local test servers: 1 ms, growing to
/// 20 ms, up to 1000 retries.
pub fn quick_backoff() -> bulk::Backoff {
    bulk::Backoff {
        initial: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
        max_retries: 1000,
        max_elapsed: Duration::from_secs(600),
        ..bulk::Backoff::default()
    }
}
