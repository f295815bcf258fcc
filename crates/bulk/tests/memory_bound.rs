//! The stalled-cluster memory bound. Alone in its test binary, so that the
//! process's memory is this test's.
#![cfg(feature = "testkit")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bulk::testkit::{FaultProxy, Faults, NullBulkServer};
use bulk::{BulkError, BulkProcessorBuilder, BulkRequest, HttpTransport};
use serde_json::json;
use tokio::sync::watch;

const LIMIT: usize = 8 << 20;
const SLACK: u64 = 32 << 20;
const TRIES: u64 = 1_000_000;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// About 4 KiB, all of the same size, distinct for every `i` (no shared
/// buffers that would hide memory).
fn request(i: u64) -> BulkRequest {
    let pad: String = std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), 4000).collect();
    let id = format!("{i:08}");
    BulkRequest::index("stalled")
        .id(id.clone())
        .doc(&json!({"n": id, "pad": pad}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_cluster_keeps_memory_bounded() {
    let null = NullBulkServer::start().await.unwrap();
    let proxy = FaultProxy::start(&null.url(), Faults::none(), 4)
        .await
        .unwrap();
    proxy.set_stalled(true);
    let p = std::sync::Arc::new(
        BulkProcessorBuilder::new(HttpTransport::new(&proxy.url()).unwrap())
            .workers(2)
            .bulk_actions(1000)
            .max_buffered_bytes(LIMIT)
            .build()
            .unwrap(),
    );
    // Warm up allocator and runtime before the baseline.
    drop((0..100).map(request).collect::<Vec<_>>());
    let before = rss_bytes();

    // Nothing is ever released while stalled: the first request's size is what it holds.
    p.add(request(0)).await.unwrap();
    let size = p.stats().buffered_bytes;
    assert!(size > 4000 && size < 4200, "{size}");

    let (added_tx, mut added) = watch::channel(1u64);
    let producer = {
        let p = p.clone();
        tokio::spawn(async move {
            for i in 1..TRIES {
                if let Err(e) = p.add(request(i)).await {
                    return (i, e);
                }
                added_tx.send_replace(i + 1);
            }
            panic!("all {TRIES} documents were taken by a stalled cluster");
        })
    };
    // The producer blocks exactly when the next request no longer fits.
    let full = tokio::time::timeout(
        Duration::from_secs(120),
        added.wait_for(|n| (n + 1) * size > LIMIT as u64),
    )
    .await
    .expect("the producer never filled the memory bound");
    let added_count = *full.unwrap();
    let stats = p.stats();
    // At least what was added; a blocked add may already hold part of its share.
    assert!(stats.buffered_bytes >= added_count * size, "{stats:?}");
    assert!(stats.buffered_bytes <= LIMIT as u64, "{stats:?}");
    let waited = tokio::time::timeout(Duration::from_millis(300), added.changed()).await;
    assert!(
        waited.is_err(),
        "add did not block at the memory bound: {} added",
        *added.borrow()
    );
    assert!(!producer.is_finished());
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < LIMIT as u64 + SLACK,
        "RSS grew by {} MiB with a {} MiB bound ({added_count} requests held)",
        grown >> 20,
        LIMIT >> 20
    );

    let report = p.close_with_deadline(Duration::from_millis(300)).await;
    let (next, error) = tokio::time::timeout(Duration::from_secs(10), producer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next, added_count,
        "the blocked add is the one after the last added"
    );
    match error {
        BulkError::Closed(request) => {
            assert_eq!(request.doc_id(), Some(format!("{next:08}").as_str()))
        }
        other => panic!("the blocked add ended with {other:?}"),
    }
    assert_eq!(
        report.unsent.len() as u64,
        added_count,
        "unsent + handed back == tried"
    );
    assert_eq!(p.stats().succeeded, 0);
    assert_eq!(null.docs_received(), 0);
}
