//! Retry timing on a paused clock, through a scripted in-process transport:
//! no network, no sleeping.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bulk::{
    Backoff, BulkProcessorBuilder, BulkRequest, FailedItem, JitterRng, Transport, TransportError,
    TransportResponse,
};
use bytes::Bytes;
use tokio::time::Instant;

/// Answers `503` to the first `failures` calls, then success for every item.
#[derive(Debug, Clone)]
struct Scripted(Arc<Script>);

#[derive(Debug)]
struct Script {
    failures: AtomicU32,
    calls: Mutex<Vec<Instant>>,
}

impl std::ops::Deref for Scripted {
    type Target = Script;
    fn deref(&self) -> &Script {
        &self.0
    }
}

impl Scripted {
    fn new(failures: u32) -> Self {
        Scripted(Arc::new(Script {
            failures: AtomicU32::new(failures),
            calls: Mutex::new(Vec::new()),
        }))
    }

    /// Time between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        self.calls
            .lock()
            .unwrap()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect()
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn bulk(&self, body: Bytes) -> Result<TransportResponse, TransportError> {
        self.calls.lock().unwrap().push(Instant::now());
        if self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Ok(TransportResponse {
                status: 503,
                body: Bytes::from_static(b"{\"error\":\"busy\"}"),
            });
        }
        // Index requests only: two lines each.
        let items = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            / 2;
        let item = r#"{"index":{"status":201,"result":"created"}}"#;
        let answer = format!(
            r#"{{"errors":false,"items":[{}]}}"#,
            vec![item; items].join(",")
        );
        Ok(TransportResponse {
            status: 200,
            body: Bytes::from(answer),
        })
    }
}

fn docs(n: u64) -> impl Iterator<Item = BulkRequest> {
    (0..n).map(|i| {
        BulkRequest::index("timing")
            .id(i.to_string())
            .doc(&serde_json::json!({"n": i}))
    })
}

fn backoff(jitter: f64, max_retries: u32) -> Backoff {
    Backoff {
        initial: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        multiplier: 2.0,
        jitter,
        max_retries,
        max_elapsed: Duration::from_secs(3600),
    }
}

#[tokio::test(start_paused = true)]
async fn retries_wait_exactly_the_backoff_delays() {
    let transport = Scripted::new(5);
    let p = BulkProcessorBuilder::new(transport.clone())
        .bulk_actions(10)
        .backoff(backoff(0.0, 10))
        .build()
        .unwrap();
    for r in docs(10) {
        p.add(r).await.unwrap();
    }
    p.flush().await.unwrap();
    let ms: Vec<u128> = transport.gaps().iter().map(Duration::as_millis).collect();
    assert_eq!(
        ms,
        [100, 200, 400, 800, 1000],
        "doubling from 100 ms, capped at 1 s"
    );
    let stats = p.stats();
    assert_eq!(
        (
            stats.bulk_calls,
            stats.retried,
            stats.succeeded,
            stats.failed
        ),
        (6, 50, 10, 0),
        "{stats:?}"
    );
    p.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_follow_the_seeded_generator() {
    const SEED: u64 = 0xfeed;
    let transport = Scripted::new(6);
    let policy = backoff(0.5, 10);
    let p = BulkProcessorBuilder::new(transport.clone())
        .bulk_actions(3)
        .backoff(policy.clone())
        .jitter_seed(SEED)
        .build()
        .unwrap();
    for r in docs(3) {
        p.add(r).await.unwrap();
    }
    p.flush().await.unwrap();
    // The only worker (number 0) draws from JitterRng::seeded(SEED).
    let mut rng = JitterRng::seeded(SEED);
    let mut elapsed = Duration::ZERO;
    let want: Vec<Duration> = (1..=6)
        .map(|retry| {
            let d = policy.next_delay(retry, elapsed, rng.unit()).unwrap();
            elapsed += d;
            d
        })
        .collect();
    let got = transport.gaps();
    assert_eq!(got.len(), want.len());
    for (retry, (g, w)) in got.iter().zip(&want).enumerate() {
        // The timer wheel has millisecond ticks: a sleep ends on the next tick.
        assert!(
            *g >= *w && *g - *w < Duration::from_millis(1),
            "retry {}: waited {g:?}, backoff says {w:?}",
            retry + 1
        );
    }
    assert!(
        want.windows(2)
            .any(|w| w[0].as_micros() * 2 != w[1].as_micros()),
        "jitter had no effect: {want:?}"
    );
    p.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn giving_up_reports_every_item_once() {
    let transport = Scripted::new(u32::MAX);
    let failures = Arc::new(Mutex::new(Vec::<FailedItem>::new()));
    let sink = failures.clone();
    let p = BulkProcessorBuilder::new(transport.clone())
        .bulk_actions(5)
        .backoff(backoff(0.0, 3))
        .on_failure(move |f| sink.lock().unwrap().push(f))
        .build()
        .unwrap();
    for r in docs(5) {
        p.add(r).await.unwrap();
    }
    p.flush().await.unwrap();
    let ms: Vec<u128> = transport.gaps().iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [100, 200, 400], "three retries, then no more calls");
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    let mut ids: Vec<&str> = failures
        .iter()
        .map(|f| f.request.doc_id().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["0", "1", "2", "3", "4"],
        "each item reported exactly once"
    );
    for f in failures.iter() {
        assert!(f.error.contains("gave up"), "{f:?}");
        assert_eq!(f.attempts, 4, "{f:?}");
    }
    let stats = p.stats();
    assert_eq!(
        (
            stats.failed,
            stats.succeeded,
            stats.retried,
            stats.buffered_bytes
        ),
        (5, 0, 15, 0),
        "{stats:?}"
    );
    p.close().await.unwrap();
}
