//! The test servers themselves, over real HTTP, with the processor as client.
//! Needs no cluster.
#![cfg(feature = "testkit")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use bulk::testkit::{FaultProxy, Faults, NullBulkServer};
use bulk::{Backoff, BulkProcessorBuilder, BulkRequest, FailedItem, HttpTransport};
use serde_json::{Value, json};

fn doc(i: u64) -> BulkRequest {
    BulkRequest::index("kit")
        .id(i.to_string())
        .doc(&json!({"n": i}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_server_answers_every_item() {
    let null = NullBulkServer::start().await.unwrap();
    let info: Value = reqwest::get(format!("{}/", null.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["version"]["distribution"], "opensearch", "{info}");
    let p = BulkProcessorBuilder::new(HttpTransport::new(&null.url()).unwrap())
        .workers(2)
        .bulk_actions(500)
        .build()
        .unwrap();
    for i in 0..10_000u64 {
        let id = i.to_string();
        let request = match i % 4 {
            0 => BulkRequest::index("kit").id(id).doc(&json!({"n": i})),
            1 => BulkRequest::create("kit").doc(&json!({"n": i})),
            2 => BulkRequest::update("kit").id(id).doc(&json!({"n": i})),
            _ => BulkRequest::delete("kit").id(id),
        };
        p.add(request).await.unwrap();
    }
    p.close().await.unwrap();
    let s = p.stats();
    assert_eq!((s.succeeded, s.failed, s.retried), (10_000, 0, 0), "{s:?}");
    assert_eq!(
        (s.indexed, s.created, s.updated, s.deleted),
        (2500, 2500, 2500, 2500),
        "{s:?}"
    );
    assert_eq!(null.docs_received(), 10_000);
    assert_eq!(null.requests_received(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_429_items_are_not_forwarded() {
    let null = NullBulkServer::start().await.unwrap();
    let proxy = FaultProxy::start(&null.url(), Faults::none().item_429(0.3), 5)
        .await
        .unwrap();
    let failures = Arc::new(Mutex::new(Vec::<FailedItem>::new()));
    let sink = failures.clone();
    let p = BulkProcessorBuilder::new(HttpTransport::new(&proxy.url()).unwrap())
        .bulk_actions(100)
        .backoff(Backoff::none())
        .on_failure(move |f| sink.lock().unwrap().push(f))
        .build()
        .unwrap();
    for i in 0..1000 {
        p.add(doc(i)).await.unwrap();
    }
    p.close().await.unwrap();
    let injected = proxy.counts();
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert!(
        injected.items_429 > 200 && injected.items_429 < 400,
        "{injected:?}"
    );
    assert_eq!(failures.len() as u64, injected.items_429);
    assert!(
        failures
            .iter()
            .all(|f| f.error.contains("es_rejected_execution_exception")),
        "{:?}",
        failures[0]
    );
    assert_eq!(
        null.docs_received(),
        1000 - injected.items_429,
        "rejected items must not reach the cluster"
    );
    assert_eq!(p.stats().succeeded, null.docs_received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_rejections_and_resets_are_survived() {
    let null = NullBulkServer::start().await.unwrap();
    let faults = Faults::none().reject_request(0.2).reset_connection(0.4);
    let proxy = FaultProxy::start(&null.url(), faults, 6).await.unwrap();
    let p = BulkProcessorBuilder::new(HttpTransport::new(&proxy.url()).unwrap())
        .workers(2)
        .bulk_actions(50)
        .backoff(common::quick_backoff())
        .build()
        .unwrap();
    for i in 0..2000 {
        p.add(doc(i)).await.unwrap();
    }
    p.close().await.unwrap();
    let (s, injected) = (p.stats(), proxy.counts());
    assert_eq!((s.succeeded, s.failed), (2000, 0), "{s:?}");
    assert!(
        injected.rejected > 0 && injected.reset_before_forwarding > 0,
        "{injected:?}"
    );
    assert!(injected.reset_after_forwarding > 0, "{injected:?}");
    // Batches whose answer was thrown away were applied, then sent again.
    assert!(
        null.docs_received() > 2000,
        "{} {injected:?}",
        null.docs_received()
    );
    assert_eq!(injected.bulk_requests, s.bulk_calls, "{s:?} {injected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_passes_other_requests_through() {
    let null = NullBulkServer::start().await.unwrap();
    let proxy = FaultProxy::start(&null.url(), Faults::none().reject_request(1.0), 7)
        .await
        .unwrap();
    let info: Value = reqwest::get(format!("{}/", proxy.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["name"], "null-bulk-server");
    let missing = reqwest::get(format!("{}/kit/_doc/1", proxy.url()))
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let c = proxy.counts();
    assert_eq!(
        (c.passed_through, c.bulk_requests, c.rejected),
        (2, 0, 0),
        "{c:?}"
    );
}
