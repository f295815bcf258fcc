//! Flush and close semantics, through the test servers of `bulk::testkit`.
//! The flush and retry tests use the real test cluster (`ES_URL`); the stalled
//! and closed ones need no cluster.
#![cfg(feature = "testkit")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bulk::testkit::{FaultProxy, Faults, NullBulkServer};
use bulk::{
    Backoff, BulkError, BulkProcessor, BulkProcessorBuilder, BulkRequest, Decision, HttpTransport,
};
use tokio::sync::watch;

use common::{TestIndex, doc, es_url};

/// Fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(60);

fn short_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        multiplier: 2.0,
        jitter: 0.5,
        max_retries: 1000,
        max_elapsed: Duration::from_secs(600),
    }
}

fn processor(url: &str, bulk_actions: usize) -> BulkProcessor {
    BulkProcessorBuilder::new(HttpTransport::new(url).unwrap())
        .workers(2)
        .bulk_actions(bulk_actions)
        .backoff(short_backoff())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_commits_everything_added_before_it() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::plain(&url, "flush").await;
    // Batches of 1000 are never full here: only flush sends.
    let p = processor(&url, 1000);
    for i in 0..500 {
        p.add(doc(&index.name, i)).await.unwrap();
    }
    p.flush().await.unwrap();
    assert_eq!(
        index.count().await,
        500,
        "everything added before flush is committed when it returns"
    );
    for i in 500..750 {
        p.add(doc(&index.name, i)).await.unwrap();
    }
    p.flush().await.unwrap();
    assert_eq!(index.count().await, 750);
    let stats = p.stats();
    assert_eq!(
        (stats.succeeded, stats.batches_flushed, stats.buffered_bytes),
        (750, 2, 0),
        "{stats:?}"
    );
    p.close().await.unwrap();
    index.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_with_nothing_buffered_returns_at_once() {
    let null = NullBulkServer::start().await.unwrap();
    let proxy = FaultProxy::start(&null.url(), Faults::none(), 1)
        .await
        .unwrap();
    // A stalled cluster: a flush that sent anything or waited for anything would hang.
    proxy.set_stalled(true);
    let p = processor(&proxy.url(), 1000);
    tokio::time::timeout(GUARD, p.flush())
        .await
        .expect("flush of nothing hung")
        .unwrap();
    tokio::time::timeout(GUARD, p.flush())
        .await
        .expect("second flush of nothing hung")
        .unwrap();
    assert_eq!(proxy.counts().bulk_requests, 0);
    assert_eq!(p.stats().bulk_calls, 0);
    tokio::time::timeout(GUARD, p.close())
        .await
        .expect("close of an idle processor hung")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_pending_retries() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::plain(&url, "close-retry").await;
    let proxy = Arc::new(
        FaultProxy::start(&url, Faults::none().reject_request(1.0), 2)
            .await
            .unwrap(),
    );
    // Counts the attempts refused as a whole.
    let (refusals_tx, refusals) = watch::channel(0u64);
    let p = BulkProcessorBuilder::new(HttpTransport::new(&proxy.url()).unwrap())
        .workers(2)
        .bulk_actions(100)
        .backoff(short_backoff())
        .after(move |_, _, decision| {
            if matches!(decision, Decision::RetryAll(_)) {
                refusals_tx.send_modify(|n| *n += 1);
            }
        })
        .build()
        .unwrap();
    for i in 0..300 {
        p.add(doc(&index.name, i)).await.unwrap();
    }
    // A batch was refused and the proxy still refuses: retries are pending.
    let mut seen = refusals.clone();
    let before_close = *tokio::time::timeout(GUARD, seen.wait_for(|n| *n >= 1))
        .await
        .expect("no batch was refused")
        .unwrap();
    let healer = {
        let (proxy, mut refusals) = (proxy.clone(), refusals.clone());
        tokio::spawn(async move {
            // Recover only after an attempt refused while close() runs.
            let _ = refusals.wait_for(|n| *n > before_close).await;
            proxy.set_faults(Faults::none());
        })
    };
    tokio::time::timeout(GUARD, p.close())
        .await
        .expect("close did not return after recovery")
        .unwrap();
    healer.await.unwrap();
    let stats = p.stats();
    assert_eq!((stats.succeeded, stats.failed), (300, 0), "{stats:?}");
    assert!(stats.retried >= 100, "{stats:?}");
    assert!(proxy.counts().rejected >= 2, "{:?}", proxy.counts());
    assert_eq!(
        index.count().await,
        300,
        "close returned before everything landed"
    );
    index.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_deadline_hands_back_everything_when_stalled() {
    let null = NullBulkServer::start().await.unwrap();
    let proxy = FaultProxy::start(&null.url(), Faults::none(), 3)
        .await
        .unwrap();
    let p = processor(&proxy.url(), 100);
    for i in 0..100 {
        p.add(doc("stalled", i)).await.unwrap();
    }
    p.flush().await.unwrap();
    proxy.set_stalled(true);
    // Two batches in flight (stalled), one queued or buffered, a partial one buffered.
    for i in 100..350 {
        p.add(doc("stalled", i)).await.unwrap();
    }
    let report = tokio::time::timeout(GUARD, p.close_with_deadline(Duration::from_millis(300)))
        .await
        .expect("close_with_deadline did not keep its deadline");
    let unsent: BTreeSet<u64> = report
        .unsent
        .iter()
        .map(|r| r.doc_id().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        report.unsent.len(),
        unsent.len(),
        "a request was handed back twice"
    );
    assert_eq!(unsent, (100..350).collect::<BTreeSet<u64>>());
    let stats = p.stats();
    assert_eq!(
        stats.succeeded + report.unsent.len() as u64,
        350,
        "{stats:?}"
    );
    assert_eq!((stats.succeeded, stats.failed), (100, 0), "{stats:?}");
    assert!(proxy.counts().stalled >= 1, "{:?}", proxy.counts());
    assert_eq!(null.docs_received(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_after_close_hands_the_request_back() {
    let null = NullBulkServer::start().await.unwrap();
    let p = processor(&null.url(), 1000);
    p.add(doc("closed", 1)).await.unwrap();
    p.close().await.unwrap();
    assert_eq!(null.docs_received(), 1, "close flushes");
    match p
        .add(
            BulkRequest::index("closed")
                .id("late")
                .doc(&serde_json::json!({"n": 2})),
        )
        .await
    {
        Err(BulkError::Closed(request)) => {
            assert_eq!(request.doc_id(), Some("late"));
            assert_eq!(request.index_name(), Some("closed"));
        }
        other => panic!("add after close: {other:?}"),
    }
    p.flush().await.unwrap();
    p.close().await.unwrap();
    assert_eq!(
        p.close_with_deadline(Duration::from_millis(10))
            .await
            .unsent
            .len(),
        0
    );
    assert_eq!(null.docs_received(), 1);
}
