//! Requests whose answer was lost after they were sent (issue 11, item 6): each
//! operation is resent only when resending cannot apply it twice, a `create`
//! that meets its own earlier write is not a conflict, and nothing that was
//! never sent is held back.
#![cfg(feature = "testkit")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bulk::testkit::{Fault, FaultProxy, Faults, NullBulkServer};
use bulk::{
    Backoff, BulkProcessor, BulkProcessorBuilder, BulkRequest, Decision, FailureKind, HttpTransport,
};
use serde_json::json;
use tokio::sync::watch;

use common::{Failures, TestIndex, collecting_processor, es_url, taken};

fn short_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        multiplier: 2.0,
        jitter: 0.5,
        max_retries: 1000,
        max_elapsed: Duration::from_secs(600),
    }
}

/// One worker, batches of `actions`, failures collected.
fn processor(url: &str, actions: usize) -> (BulkProcessor, Failures) {
    collecting_processor(url, actions, short_backoff())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_not_reported_as_a_conflict() {
    let Some(url) = es_url() else { return };
    const DOCS: u64 = 100;
    let index = TestIndex::plain(&url, "lost-create").await;
    let proxy = FaultProxy::start(&url, Faults::none(), 1).await.unwrap();
    // The cluster creates the documents, the answer never arrives.
    proxy.script([Fault::ResetAfterForwarding]);
    let (p, failures) = processor(&proxy.url(), DOCS as usize);
    for i in 0..DOCS {
        let create = BulkRequest::create(&index.name)
            .id(i.to_string())
            .doc(&json!({"n": i}));
        p.add(create).await.unwrap();
    }
    p.close().await.unwrap();
    let failures = taken(&failures);
    assert!(
        failures.is_empty(),
        "{} creates reported as failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    let stats = p.stats();
    assert_eq!((stats.succeeded, stats.failed), (DOCS, 0), "{stats:?}");
    assert_eq!(stats.already_applied, DOCS, "{stats:?}");
    assert_eq!(proxy.counts().reset_after_forwarding, 1);
    assert_eq!(index.count().await, DOCS);
    index.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_without_id_whose_answer_was_lost_is_not_indexed_twice() {
    let Some(url) = es_url() else { return };
    const DOCS: u64 = 100;
    let index = TestIndex::plain(&url, "lost-auto-id").await;
    let proxy = FaultProxy::start(&url, Faults::none(), 2).await.unwrap();
    proxy.script([Fault::ResetAfterForwarding]);
    let (p, failures) = processor(&proxy.url(), DOCS as usize);
    for i in 0..DOCS {
        p.add(BulkRequest::index(&index.name).doc(&json!({"n": i})))
            .await
            .unwrap();
    }
    p.close().await.unwrap();
    assert_eq!(
        index.count().await,
        DOCS,
        "documents without an id were sent again after an answer was lost"
    );
    let failures = taken(&failures);
    assert_eq!(failures.len() as u64, DOCS, "each is reported once");
    for f in &failures {
        assert!(f.error.contains("outcome unknown"), "{f:?}");
        assert_eq!((f.status(), f.attempts), (None, 1), "{f:?}");
        assert_eq!(
            f.kind,
            FailureKind::OutcomeUnknown { status: None },
            "{f:?}"
        );
        assert!(f.request.maybe_applied() && !f.is_retryable(), "{f:?}");
    }
    assert_eq!(p.stats().outcome_unknown, DOCS);
    index.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_lost_answer_only_what_is_safe_to_resend_is_resent() {
    let null = NullBulkServer::start().await.unwrap();
    let proxy = FaultProxy::start(&null.url(), Faults::none(), 3)
        .await
        .unwrap();
    proxy.script([Fault::ResetAfterForwarding]);
    let (p, failures) = processor(&proxy.url(), 50);
    for i in 0..10u64 {
        let id = format!("id-{i}");
        let doc = json!({"n": i});
        p.add(BulkRequest::index("mixed").doc(&doc)).await.unwrap();
        p.add(BulkRequest::create("mixed").doc(&doc)).await.unwrap();
        p.add(BulkRequest::index("mixed").id(&id).doc(&doc))
            .await
            .unwrap();
        p.add(BulkRequest::update("mixed").id(&id).doc(&doc))
            .await
            .unwrap();
        p.add(BulkRequest::delete("mixed").id(&id)).await.unwrap();
    }
    p.close().await.unwrap();
    // 50 applied by the attempt whose answer was lost, then only the 30 with an id again.
    assert_eq!(null.docs_received(), 80, "{:?}", p.stats());
    let failures = taken(&failures);
    assert_eq!(failures.len(), 20, "{failures:?}");
    assert!(
        failures.iter().all(|f| f.request.doc_id().is_none()
            && f.kind == FailureKind::OutcomeUnknown { status: None }),
        "{failures:?}"
    );
    let stats = p.stats();
    assert_eq!((stats.succeeded, stats.failed), (30, 20), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_were_never_sent_are_sent_again_whatever_they_are() {
    // A port nothing listens on yet: the connection is refused, nothing was sent.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (refused_tx, mut refused) = watch::channel(0u32);
    let failures = Failures::default();
    let sink = failures.clone();
    let p = BulkProcessorBuilder::new(HttpTransport::new(&format!("http://{addr}")).unwrap())
        .bulk_actions(20)
        .backoff(short_backoff())
        .on_failure(move |f| sink.lock().unwrap().push(f))
        .after(move |_, _, decision| {
            if matches!(decision, Decision::RetryAll(_)) {
                refused_tx.send_modify(|n| *n += 1);
            }
        })
        .build()
        .unwrap();
    for i in 0..10u64 {
        p.add(BulkRequest::index("unsent").doc(&json!({"n": i})))
            .await
            .unwrap();
        p.add(BulkRequest::create("unsent").doc(&json!({"n": i})))
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), refused.wait_for(|n| *n >= 1))
        .await
        .expect("the first attempt was not refused")
        .unwrap();
    let null = NullBulkServer::start_on(addr).await.unwrap();
    p.close().await.unwrap();
    assert!(taken(&failures).is_empty());
    assert_eq!(null.docs_received(), 20);
    assert_eq!(p.stats().succeeded, 20);
}
