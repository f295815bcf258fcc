//! Feature `prometheus`: a processor's stats in the caller's registry, against
//! the real test cluster (`ES_URL`).
#![cfg(feature = "prometheus")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use bulk::{BulkProcessorBuilder, HttpTransport};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use common::{TestIndex, doc, es_url};

/// The value of the sample line `line` (name and labels, exactly).
fn sample(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.trim().parse().ok())
}

fn render(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processors_stats_are_read_at_each_scrape_while_it_lives() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::plain(&url, "prometheus").await;
    let p = BulkProcessorBuilder::new(HttpTransport::new(&url).unwrap())
        .workers(2)
        .bulk_actions(25)
        .build()
        .unwrap();
    let mut registry = Registry::default();
    p.register_metrics(registry.sub_registry_with_prefix("orders"));

    let before = render(&registry);
    assert_eq!(
        sample(&before, "orders_bulk_calls_total"),
        Some(0.0),
        "{before}"
    );
    for (name, kind) in [
        ("orders_bulk_calls", "counter"),
        ("orders_bulk_batches_flushed", "counter"),
        ("orders_bulk_requests_succeeded", "counter"),
        ("orders_bulk_requests_already_applied", "counter"),
        ("orders_bulk_requests_failed", "counter"),
        ("orders_bulk_requests_outcome_unknown", "counter"),
        ("orders_bulk_requests_retried", "counter"),
        ("orders_bulk_sent_bytes", "counter"),
        ("orders_bulk_buffered_bytes", "gauge"),
        ("orders_bulk_queued_requests", "gauge"),
        ("orders_bulk_busy_workers", "gauge"),
        ("orders_bulk_rejected_429", "counter"),
        ("orders_bulk_concurrency_limit", "gauge"),
        ("orders_bulk_in_flight_calls", "gauge"),
        ("orders_bulk_concurrency_decreases", "counter"),
        ("orders_bulk_concurrency_increases", "counter"),
    ] {
        assert!(
            before.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}: {before}"
        );
    }

    for i in 0..100 {
        p.add(doc(&index.name, i)).await.unwrap();
    }
    p.flush().await.unwrap();
    let stats = p.stats();
    let text = render(&registry);
    assert_eq!(
        sample(&text, "orders_bulk_requests_succeeded_total{op=\"index\"}"),
        Some(100.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orders_bulk_calls_total"),
        Some(stats.bulk_calls as f64)
    );
    assert!(stats.bulk_calls >= 4, "{stats:?}");
    assert_eq!(
        sample(&text, "orders_bulk_sent_bytes_total"),
        Some(stats.bytes_sent as f64)
    );
    assert!(stats.bytes_sent > 0);
    assert_eq!(
        sample(&text, "orders_bulk_requests_failed_total"),
        Some(0.0)
    );
    assert_eq!(sample(&text, "orders_bulk_buffered_bytes"), Some(0.0));
    assert_eq!(sample(&text, "orders_bulk_concurrency_limit"), Some(2.0));
    assert_eq!(
        sample(&text, "orders_bulk_rejected_429_total{scope=\"call\"}"),
        Some(stats.calls_rejected_429 as f64)
    );
    assert_eq!(index.count().await, 100);

    // The registry does not keep the processor alive: once dropped, it is gone.
    p.close().await.unwrap();
    drop(p);
    let after = render(&registry);
    assert!(!after.contains("orders_bulk_calls"), "{after}");
    assert!(after.ends_with("# EOF\n"));
    index.delete().await;
}
