//! Against the real test cluster (`ES_URL`): faults lose nothing, mapping
//! errors are reported once each.
#![cfg(feature = "testkit")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulk::testkit::{FaultProxy, Faults};
use bulk::{Backoff, BulkProcessorBuilder, BulkRequest, FailedItem, HttpTransport};
use serde_json::json;

use common::{TestIndex, doc, es_url};

fn short_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        multiplier: 2.0,
        jitter: 0.5,
        max_retries: 100,
        max_elapsed: Duration::from_secs(600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn faults_lose_nothing() {
    let Some(url) = es_url() else { return };
    const DOCS: u64 = 100_000;
    let index = TestIndex::plain(&url, "faults").await;
    let faults = Faults::none()
        .item_429(0.10)
        .reject_request(0.05)
        .reset_connection(0.04);
    let proxy = FaultProxy::start(&url, faults, 0x5eed).await.unwrap();
    let failures = Arc::new(Mutex::new(Vec::<FailedItem>::new()));
    let sink = failures.clone();
    let processor = BulkProcessorBuilder::new(HttpTransport::new(&proxy.url()).unwrap())
        .workers(4)
        .bulk_actions(1000)
        .backoff(short_backoff())
        .on_failure(move |item| sink.lock().unwrap().push(item))
        .build()
        .unwrap();
    for i in 0..DOCS {
        processor.add(doc(&index.name, i)).await.unwrap();
    }
    processor.close().await.unwrap();

    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    let stats = processor.stats();
    assert_eq!(stats.succeeded, DOCS, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(stats.retried > 0, "{stats:?}");
    let injected = proxy.counts();
    eprintln!("faults_lose_nothing: {stats:?}\n  injected: {injected:?}");
    assert!(injected.rejected > 0, "no 503 injected: {injected:?}");
    assert!(injected.items_429 > 0, "no 429 injected: {injected:?}");
    assert!(
        injected.reset_before_forwarding > 0,
        "no reset before forwarding: {injected:?}"
    );
    assert!(
        injected.reset_after_forwarding > 0,
        "no reset after forwarding: {injected:?}"
    );
    // Every injected item 429 and every request-level fault made the processor resend.
    assert!(
        stats.retried >= injected.items_429,
        "{stats:?} {injected:?}"
    );
    assert_eq!(index.count().await, DOCS, "{stats:?} {injected:?}");
    index.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_errors_fail_once_each() {
    let Some(url) = es_url() else { return };
    const DOCS: u64 = 1000;
    let mapping = json!({"mappings": {"properties": {"n": {"type": "integer"}}}});
    let index = TestIndex::create(&url, "mapping", mapping).await;
    let bad = |i: u64| i % 37 == 5;
    let failures = Arc::new(Mutex::new(Vec::<FailedItem>::new()));
    let sink = failures.clone();
    let processor = BulkProcessorBuilder::new(HttpTransport::new(&url).unwrap())
        .workers(2)
        .bulk_actions(100)
        .backoff(short_backoff())
        .on_failure(move |item| sink.lock().unwrap().push(item))
        .build()
        .unwrap();
    for i in 0..DOCS {
        let request = if bad(i) {
            BulkRequest::index(&index.name)
                .id(i.to_string())
                .doc(&json!({"n": format!("not a number {i}")}))
        } else {
            doc(&index.name, i)
        };
        processor.add(request).await.unwrap();
    }
    processor.close().await.unwrap();

    let expected: Vec<String> = (0..DOCS)
        .filter(|i| bad(*i))
        .map(|i| i.to_string())
        .collect();
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    let mut seen = BTreeMap::<String, usize>::new();
    for f in failures.iter() {
        *seen
            .entry(f.request.doc_id().unwrap().to_owned())
            .or_default() += 1;
        assert_eq!(f.status(), Some(400), "{f:?}");
        // Elasticsearch >= 8.8 calls it document_parsing_exception.
        assert!(
            f.error.contains("mapper_parsing_exception")
                || f.error.contains("document_parsing_exception"),
            "{f:?}"
        );
        assert_eq!(f.attempts, 1, "a permanent failure is not retried: {f:?}");
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "reported more than once: {seen:?}"
    );
    let mut got: Vec<String> = seen.into_keys().collect();
    got.sort_by_key(|id| id.parse::<u64>().unwrap());
    assert_eq!(got, expected);
    let k = expected.len() as u64;
    let stats = processor.stats();
    assert_eq!(stats.failed, k, "{stats:?}");
    assert_eq!(stats.succeeded, DOCS - k, "{stats:?}");
    assert_eq!(stats.retried, 0, "{stats:?}");
    assert_eq!(index.count().await, DOCS - k);
    index.delete().await;
}
