//! Adaptive concurrency over real HTTP: a fault proxy refusing calls with 429
//! (`es_rejected_execution_exception`) in front of the null server. Needs no
//! cluster.
#![cfg(feature = "testkit")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex, OnceLock, Weak};

use bulk::testkit::{Fault, FaultProxy, Faults, NullBulkServer};
use bulk::{
    AdaptiveConcurrency, BulkProcessor, BulkProcessorBuilder, BulkRequest, FailedItem,
    HttpTransport,
};
use serde_json::json;

/// The first twelve calls are refused with 429: the limit falls from its
/// maximum at once, and climbs back to it on the clean answers that follow;
/// every document reaches the server exactly once (refused calls are not
/// forwarded), none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushback_over_http_lowers_the_limit_and_it_recovers_losing_nothing() {
    const DOCS: u64 = 2000;
    const REFUSED: u64 = 12;
    let null = NullBulkServer::start().await.unwrap();
    let proxy = FaultProxy::start(&null.url(), Faults::none(), 7)
        .await
        .unwrap();
    proxy.script([Fault::Refuse(429); REFUSED as usize]);

    // The limit each call starts under, read from the processor's own stats.
    let this: Arc<OnceLock<Weak<BulkProcessor>>> = Arc::default();
    let limits = Arc::new(Mutex::new(Vec::new()));
    let (this_in_callback, seen) = (this.clone(), limits.clone());
    let failures = Arc::new(Mutex::new(Vec::<FailedItem>::new()));
    let sink = failures.clone();
    let p = Arc::new(
        BulkProcessorBuilder::new(HttpTransport::new(&proxy.url()).unwrap())
            .bulk_actions(20)
            .backoff(common::quick_backoff())
            .adaptive(AdaptiveConcurrency::between(1, 4))
            .before(move |_, _| {
                if let Some(p) = this_in_callback.get().and_then(Weak::upgrade) {
                    seen.lock().unwrap().push(p.stats().concurrency_limit);
                }
            })
            .on_failure(move |f| sink.lock().unwrap().push(f))
            .build()
            .unwrap(),
    );
    this.set(Arc::downgrade(&p)).unwrap();
    for i in 0..DOCS {
        let doc = BulkRequest::index("kit")
            .id(i.to_string())
            .doc(&json!({"n": i}));
        p.add(doc).await.unwrap();
    }
    p.close().await.unwrap();

    assert!(failures.lock().unwrap().is_empty(), "{:?}", failures.lock());
    let s = p.stats();
    assert_eq!((s.succeeded, s.failed), (DOCS, 0), "{s:?}");
    assert_eq!(null.docs_received(), DOCS, "each document forwarded once");
    assert_eq!(s.calls_rejected_429, REFUSED, "{s:?}");
    assert_eq!(proxy.counts().rejected, REFUSED);
    assert!(s.concurrency_decreases >= 1, "{s:?}");
    assert!(s.concurrency_increases >= 1, "{s:?}");
    assert_eq!((s.concurrency_limit, s.in_flight), (4, 0), "back at max");
    let limits = limits.lock().unwrap().clone();
    assert_eq!(limits.first(), Some(&4), "starts at max: {limits:?}");
    assert!(
        limits.iter().any(|&l| l < 4),
        "calls started under a lowered limit: {limits:?}"
    );
    assert_eq!(limits.last(), Some(&4), "{limits:?}");
}

/// Feature `prometheus`: the limit, the calls in flight, the changes and the
/// 429s by scope, as the stats say.
#[cfg(feature = "prometheus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_stats_are_metrics() {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    let null = NullBulkServer::start().await.unwrap();
    let proxy = FaultProxy::start(&null.url(), Faults::none(), 7)
        .await
        .unwrap();
    proxy.script([Fault::Refuse(429), Fault::Refuse(429)]);
    let p = BulkProcessorBuilder::new(HttpTransport::new(&proxy.url()).unwrap())
        .bulk_actions(10)
        .backoff(common::quick_backoff())
        .adaptive(AdaptiveConcurrency::between(1, 3))
        .build()
        .unwrap();
    let mut registry = Registry::default();
    p.register_metrics(&mut registry);
    for i in 0..300u64 {
        let doc = BulkRequest::index("kit")
            .id(i.to_string())
            .doc(&json!({"n": i}));
        p.add(doc).await.unwrap();
    }
    p.close().await.unwrap();
    let s = p.stats();
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let sample = |line: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.trim().parse().ok())
    };
    assert_eq!(sample("bulk_rejected_429_total{scope=\"call\"}"), Some(2.0));
    assert_eq!(sample("bulk_rejected_429_total{scope=\"item\"}"), Some(0.0));
    assert_eq!(sample("bulk_concurrency_limit"), Some(3.0), "{text}");
    assert_eq!(sample("bulk_in_flight_calls"), Some(0.0));
    assert_eq!(
        sample("bulk_concurrency_decreases_total"),
        Some(s.concurrency_decreases as f64)
    );
    assert!(s.concurrency_decreases >= 1, "{s:?}");
    assert_eq!(
        sample("bulk_concurrency_increases_total"),
        Some(s.concurrency_increases as f64)
    );
    assert_eq!(s.succeeded, 300);
}
