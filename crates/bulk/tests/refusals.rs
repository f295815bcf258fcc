//! Whole-request refusals (issue 11, item 7): the failure names the status and
//! the server's error, and a refusal that asking again cannot fix is not retried.
#![cfg(feature = "testkit")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bulk::testkit::{FaultProxy, Faults, NullBulkServer};
use bulk::{Backoff, BulkRequest, FailureKind};
use serde_json::json;

use common::{collecting_processor, taken};

fn short_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retries: 3,
        max_elapsed: Duration::from_secs(600),
        ..Backoff::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_refusals_carry_their_status_and_are_not_retried() {
    let null = NullBulkServer::start().await.unwrap();
    for (status, error_type) in [
        (400, "fault_proxy_exception"),
        (401, "security_exception"),
        (403, "security_exception"),
        (404, "fault_proxy_exception"),
        (413, ""),
        (500, "illegal_state_exception"),
    ] {
        let faults = Faults::none().reject_request(1.0).reject_status(status);
        let proxy = FaultProxy::start(&null.url(), faults, 1).await.unwrap();
        let (p, failures) =
            collecting_processor(&proxy.url(), bulk::DEFAULT_BULK_ACTIONS, short_backoff());
        for i in 0..3 {
            let r = BulkRequest::index("refused")
                .id(i.to_string())
                .doc(&json!({"n": i}));
            p.add(r).await.unwrap();
        }
        p.close().await.unwrap();
        let failures = taken(&failures);
        assert_eq!(failures.len(), 3, "{status}: {failures:?}");
        for f in &failures {
            assert_eq!(f.status(), Some(status), "{f:?}");
            assert_eq!(
                f.kind,
                FailureKind::Request {
                    status: Some(status)
                },
                "{f:?}"
            );
            assert_eq!(f.attempts, 1, "HTTP {status} is not retried: {f:?}");
            assert!(f.error.contains(&format!("HTTP {status}")), "{f:?}");
            assert!(f.error.contains(error_type), "{f:?}");
        }
        assert_eq!(proxy.counts().bulk_requests, 1, "{status}");
    }
    assert_eq!(null.docs_received(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_refusals_are_retried_until_they_pass() {
    let null = NullBulkServer::start().await.unwrap();
    for status in [429, 502, 503, 504] {
        let proxy = FaultProxy::start(&null.url(), Faults::none(), 1)
            .await
            .unwrap();
        proxy.script([
            bulk::testkit::Fault::Refuse(status),
            bulk::testkit::Fault::Refuse(status),
        ]);
        let (p, failures) =
            collecting_processor(&proxy.url(), bulk::DEFAULT_BULK_ACTIONS, short_backoff());
        p.add(
            BulkRequest::index("transient")
                .id("1")
                .doc(&json!({"n": 1})),
        )
        .await
        .unwrap();
        p.close().await.unwrap();
        assert!(failures.lock().unwrap().is_empty(), "{status}");
        assert_eq!(proxy.counts().bulk_requests, 3, "{status}");
        assert_eq!(p.stats().succeeded, 1, "{status}");
    }
}
