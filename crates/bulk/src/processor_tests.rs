//! The processor against an in-process scripted transport: batching, retries,
//! outcomes. Time is tokio's paused clock where it matters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};

use super::*;
use crate::transport::{TransportError, TransportResponse};

/// Answers each `_bulk` call from a script; records every body it received.
#[derive(Debug, Default)]
struct Scripted {
    /// Per call: item statuses by document id (missing: success), or a whole-request answer.
    script: Mutex<VecDeque<Answer>>,
    /// Per call: (op, id) of each action.
    bodies: Mutex<Vec<Vec<(String, String)>>>,
}

#[derive(Debug, Clone)]
enum Answer {
    Items(Vec<(&'static str, u16)>),
    /// Every item refused with this status.
    AllItems(u16),
    Status(u16),
    /// The connection was lost after sending: no answer, maybe applied.
    Drop,
    /// The connection could not be opened: nothing sent.
    Unsent,
    /// No answer, ever.
    Hang,
}

/// The (op, id) of each action of an NDJSON body.
fn actions(body: &[u8]) -> Vec<(String, String)> {
    let mut lines = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).unwrap());
    let mut out = Vec::new();
    while let Some(action) = lines.next() {
        let (op, meta) = action.as_object().unwrap().iter().next().unwrap();
        let id = meta["_id"].as_str().unwrap_or("").to_owned();
        if op != "delete" {
            lines.next().unwrap();
        }
        out.push((op.clone(), id));
    }
    out
}

#[async_trait]
impl Transport for Scripted {
    async fn bulk(&self, body: Bytes) -> Result<TransportResponse, TransportError> {
        let actions = actions(&body);
        self.bodies.lock().unwrap().push(actions.clone());
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Items(vec![]));
        if let Answer::Hang = answer {
            std::future::pending::<()>().await;
        }
        respond(&actions, answer)
    }
}

/// The server's answer to `actions` as `answer` says (`Hang`: never, answered by the caller).
fn respond(
    actions: &[(String, String)],
    answer: Answer,
) -> Result<TransportResponse, TransportError> {
    let mut all = None;
    let overrides = match answer {
        Answer::Status(s) => {
            return Ok(TransportResponse {
                status: s,
                body: Bytes::from_static(b"{}"),
            });
        }
        Answer::Drop => return Err(TransportError::maybe_applied("connection reset by peer")),
        Answer::Unsent => return Err(TransportError::not_sent("connection refused")),
        Answer::Hang => return Err(TransportError::not_sent("no answer")),
        Answer::AllItems(status) => {
            all = Some(status);
            vec![]
        }
        Answer::Items(o) => o,
    };
    let items: Vec<Value> = actions
        .iter()
        .map(|(op, id)| {
            let status = overrides
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, s)| *s)
                .or(all)
                .unwrap_or(if op == "index" || op == "create" {
                    201
                } else {
                    200
                });
            let mut r = json!({"_index": "t", "_id": id, "status": status});
            if status == 409 {
                r["error"] =
                    json!({"type": "version_conflict_engine_exception", "reason": "scripted"});
            } else if status >= 300 {
                r["error"] = json!({"type": format!("error_{status}"), "reason": "scripted"});
            } else {
                r["result"] = json!(if op == "index" || op == "create" {
                    "created"
                } else {
                    "updated"
                });
            }
            json!({ op.as_str(): r })
        })
        .collect();
    let body = json!({"took": 1, "errors": true, "items": items});
    Ok(TransportResponse {
        status: 200,
        body: Bytes::from(serde_json::to_vec(&body).unwrap()),
    })
}

impl Scripted {
    fn with(script: Vec<Answer>) -> Arc<Self> {
        Arc::new(Scripted {
            script: Mutex::new(script.into()),
            bodies: Mutex::default(),
        })
    }
    fn batch_ids(&self) -> Vec<Vec<String>> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.iter().map(|(_, id)| id.clone()).collect())
            .collect()
    }
    fn batch_ops(&self) -> Vec<Vec<String>> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.iter().map(|(op, _)| op.clone()).collect())
            .collect()
    }
}

fn doc(id: usize) -> BulkRequest {
    BulkRequest::index("t")
        .id(id.to_string())
        .doc(&json!({"n": id}))
}

fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        jitter: 0.0,
        ..Backoff::default()
    }
}

/// A processor over `t` with the fast backoff, collecting its failures.
fn collecting(t: &Arc<Scripted>) -> (BulkProcessor, Arc<Mutex<Vec<FailedItem>>>) {
    let (failed, on_failure) = failures();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .backoff(fast_backoff())
        .on_failure(on_failure)
        .build()
        .unwrap();
    (p, failed)
}

fn failures() -> (
    Arc<Mutex<Vec<FailedItem>>>,
    impl Fn(FailedItem) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |f| sink.lock().unwrap().push(f))
}

#[tokio::test]
async fn cuts_batches_by_count_and_flush() {
    let t = Scripted::with(vec![]);
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .bulk_actions(3)
        .build()
        .unwrap();
    for i in 0..7 {
        p.add(doc(i)).await.unwrap();
    }
    p.flush().await.unwrap();
    assert_eq!(
        t.batch_ids(),
        [vec!["0", "1", "2"], vec!["3", "4", "5"], vec!["6"]]
    );
    let s = p.stats();
    assert_eq!(
        (
            s.succeeded,
            s.indexed,
            s.failed,
            s.bulk_calls,
            s.batches_flushed
        ),
        (7, 7, 0, 3, 1)
    );
    assert_eq!(s.buffered_bytes, 0);
    p.close().await.unwrap();
}

#[tokio::test]
async fn cuts_batches_before_they_exceed_bulk_size() {
    let t = Scripted::with(vec![]);
    let mut one = doc(0);
    let size = one.encode().unwrap();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .bulk_size(size * 2 + size / 2)
        .build()
        .unwrap();
    for i in 0..5 {
        p.add(doc(i)).await.unwrap();
    }
    p.close().await.unwrap();
    let batches = t.batch_ids();
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(
        p.stats().bytes_sent as usize,
        size * 5,
        "bytes counts the exact NDJSON sent"
    );
}

#[tokio::test(start_paused = true)]
async fn flush_interval_starts_at_the_first_request() {
    let t = Scripted::with(vec![]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .flush_interval(Duration::from_secs(5))
        .after(move |_, reqs, _| {
            let _ = tx.send((Instant::now(), reqs.len()));
        })
        .build()
        .unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    let added = Instant::now();
    p.add(doc(1)).await.unwrap();
    p.add(doc(2)).await.unwrap();
    let (sent_at, n) = rx.recv().await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        sent_at - added,
        Duration::from_secs(5),
        "the timer starts at the first request, not at build"
    );
    assert_eq!(p.stats().batches_flushed, 1);
    p.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retries_only_retryable_items_and_reports_the_rest_once() {
    let t = Scripted::with(vec![
        Answer::Items(vec![("1", 429), ("2", 400), ("3", 503)]),
        Answer::Items(vec![("3", 507)]),
        Answer::Items(vec![]),
    ]);
    let (p, failed) = collecting(&t);
    for i in 0..5 {
        p.add(doc(i)).await.unwrap();
    }
    p.flush().await.unwrap();
    assert_eq!(
        t.batch_ids(),
        [vec!["0", "1", "2", "3", "4"], vec!["1", "3"], vec!["3"]]
    );
    let failed = failed.lock().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].request.doc_id(), Some("2"));
    assert_eq!(failed[0].status(), Some(400));
    assert_eq!(failed[0].kind, FailureKind::Item { status: 400 });
    assert!(failed[0].error.contains("error_400"), "{}", failed[0].error);
    let s = p.stats();
    assert_eq!(
        (s.succeeded, s.failed, s.retried, s.bulk_calls),
        (4, 1, 3, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn whole_request_failures_retry_then_give_up_naming_the_cause() {
    let t = Scripted::with(vec![
        Answer::Drop,
        Answer::Status(503),
        Answer::Status(429),
        Answer::Status(502),
    ]);
    let (failed, on_failure) = failures();
    let backoff = Backoff {
        max_retries: 3,
        ..fast_backoff()
    };
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .backoff(backoff)
        .on_failure(on_failure)
        .build()
        .unwrap();
    p.add(doc(1)).await.unwrap();
    p.add(doc(2)).await.unwrap();
    let started = Instant::now();
    p.flush().await.unwrap();
    // 10 ms, 20 ms, 40 ms between the four attempts (jitter 0), on the paused clock.
    assert_eq!(started.elapsed(), Duration::from_millis(70));
    let failed = failed.lock().unwrap();
    assert_eq!(failed.len(), 2, "each request is reported once");
    assert!(
        failed
            .iter()
            .all(|f| f.error.contains("gave up after 4 attempts") && f.error.contains("HTTP 502"))
    );
    assert!(
        failed
            .iter()
            .all(|f| f.kind == FailureKind::GaveUp && f.is_retryable() && f.status().is_none()),
        "{failed:?}"
    );
    assert!(
        failed.iter().all(|f| f.request.maybe_applied()),
        "a lost answer and 502 may have been applied"
    );
    assert_eq!(t.batch_ids().len(), 4);
}

#[tokio::test]
async fn permanent_whole_request_failure_is_not_retried() {
    let t = Scripted::with(vec![Answer::Status(400)]);
    let (failed, on_failure) = failures();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .on_failure(on_failure)
        .build()
        .unwrap();
    p.add(doc(1)).await.unwrap();
    p.close().await.unwrap();
    assert_eq!(t.batch_ids().len(), 1);
    assert_eq!(failed.lock().unwrap().len(), 1);
    assert_eq!(p.stats().retried, 0);
}

#[tokio::test]
async fn whole_request_refusals_fail_once_with_their_status() {
    for (status, maybe_applied) in [
        (400, false),
        (401, false),
        (403, false),
        (413, false),
        (500, true),
    ] {
        let t = Scripted::with(vec![Answer::Status(status)]);
        let (failed, on_failure) = failures();
        let p = BulkProcessorBuilder::with_transport(t.clone())
            .on_failure(on_failure)
            .build()
            .unwrap();
        p.add(doc(1)).await.unwrap();
        p.add(doc(2)).await.unwrap();
        p.close().await.unwrap();
        let failed = failed.lock().unwrap();
        assert_eq!(failed.len(), 2, "{status}");
        for f in failed.iter() {
            assert_eq!(
                (f.kind, f.status(), f.attempts),
                (
                    FailureKind::Request {
                        status: Some(status)
                    },
                    Some(status),
                    1
                ),
                "{f:?}"
            );
            assert!(!f.is_retryable());
            assert!(f.error.starts_with(&format!("HTTP {status}")), "{f:?}");
            assert_eq!(f.request.maybe_applied(), maybe_applied, "{status}");
        }
        assert_eq!(t.batch_ids().len(), 1, "{status} is not retried");
    }
}

/// One request of each kind: (request, what resending it after a lost answer does).
fn one_of_each() -> Vec<BulkRequest> {
    let d = json!({"n": 1});
    vec![
        BulkRequest::index("t").id("a").doc(&d),
        BulkRequest::index("t").doc(&d),
        BulkRequest::create("t").doc(&d),
        BulkRequest::create("t").id("c").doc(&d),
        BulkRequest::update("t").id("u").doc(&d),
        BulkRequest::update("t")
            .id("s")
            .script(&json!({"source": "ctx._source.n++"})),
        BulkRequest::delete("t").id("d"),
        BulkRequest::index("t")
            .id("q")
            .if_seq_no(3)
            .if_primary_term(1)
            .doc(&d),
    ]
}

#[tokio::test(start_paused = true)]
async fn after_a_lost_answer_each_operation_is_resent_or_reported_by_its_kind() {
    // The lost attempt created "c" and wrote "q": their resends conflict.
    let t = Scripted::with(vec![
        Answer::Drop,
        Answer::Items(vec![("c", 409), ("q", 409)]),
    ]);
    let (p, failed) = collecting(&t);
    for r in one_of_each() {
        p.add(r).await.unwrap();
    }
    p.close().await.unwrap();
    assert_eq!(
        t.batch_ops()[1],
        ["index", "create", "update", "delete", "index"],
        "only what cannot be applied twice is sent again"
    );
    assert_eq!(t.batch_ids()[1], ["a", "c", "u", "d", "q"]);
    let failed = failed.lock().unwrap();
    let reported: Vec<(String, FailureKind, Option<u16>, bool)> = failed
        .iter()
        .map(|f| {
            let what = format!(
                "{} {}",
                f.request.op().as_str(),
                f.request.doc_id().unwrap_or("-")
            );
            (what, f.kind, f.status(), f.request.maybe_applied())
        })
        .collect();
    let unknown = |status| FailureKind::OutcomeUnknown { status };
    assert_eq!(
        reported,
        [
            ("index -".to_owned(), unknown(None), None, true),
            ("create -".to_owned(), unknown(None), None, true),
            ("update s".to_owned(), unknown(None), None, true),
            ("index q".to_owned(), unknown(Some(409)), Some(409), true),
        ]
    );
    assert!(
        failed[0].error.contains("outcome unknown")
            && failed[0].error.contains("connection reset by peer")
    );
    assert!(
        failed[2].error.contains("scripted update"),
        "{}",
        failed[2].error
    );
    let s = p.stats();
    assert_eq!(
        (s.succeeded, s.already_applied, s.failed, s.outcome_unknown),
        (4, 1, 4, 4),
        "{s:?}"
    );
    assert_eq!(
        (s.indexed, s.created, s.updated, s.deleted),
        (1, 1, 1, 1),
        "{s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn what_was_never_sent_is_sent_again_whatever_it_is() {
    let t = Scripted::with(vec![Answer::Unsent, Answer::Status(503)]);
    let (p, failed) = collecting(&t);
    for r in one_of_each() {
        p.add(r).await.unwrap();
    }
    p.close().await.unwrap();
    assert!(failed.lock().unwrap().is_empty());
    let ops = t.batch_ops();
    assert_eq!(ops.len(), 3);
    assert!(ops.iter().all(|b| b.len() == 8), "{ops:?}");
    let s = p.stats();
    assert_eq!(
        (s.succeeded, s.already_applied, s.failed),
        (8, 0, 0),
        "{s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_conflict_without_a_lost_answer_is_a_conflict() {
    let t = Scripted::with(vec![Answer::Items(vec![("c", 409)])]);
    let (failed, on_failure) = failures();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .on_failure(on_failure)
        .build()
        .unwrap();
    p.add(BulkRequest::create("t").id("c").doc(&json!({"n": 1})))
        .await
        .unwrap();
    p.close().await.unwrap();
    let failed = failed.lock().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].kind, failed[0].status()),
        (FailureKind::Item { status: 409 }, Some(409))
    );
    assert!(!failed[0].request.maybe_applied());
}

#[tokio::test(start_paused = true)]
async fn requests_handed_back_from_flight_may_have_been_applied() {
    let t = Scripted::with(vec![Answer::Hang]);
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .bulk_actions(2)
        .build()
        .unwrap();
    for i in 0..3 {
        p.add(doc(i)).await.unwrap();
    }
    let report = p.close_with_deadline(Duration::from_secs(1)).await;
    let mut back: Vec<(String, bool)> = report
        .unsent
        .iter()
        .map(|r| (r.doc_id().unwrap().to_owned(), r.maybe_applied()))
        .collect();
    back.sort();
    assert_eq!(
        back,
        [
            ("0".to_owned(), true),
            ("1".to_owned(), true),
            ("2".to_owned(), false)
        ]
    );
}

#[tokio::test]
async fn panicking_callbacks_lose_nothing() {
    let t = Scripted::with(vec![Answer::Items(vec![("1", 400)])]);
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .before(|_, _| panic!("before"))
        .after(|_, _, _| panic!("after"))
        .on_failure(|_| panic!("failure"))
        .build()
        .unwrap();
    for i in 0..3 {
        p.add(doc(i)).await.unwrap();
    }
    p.close().await.unwrap();
    let s = p.stats();
    assert_eq!((s.succeeded, s.failed), (2, 1));
}

#[tokio::test]
async fn add_after_close_hands_the_request_back() {
    let t = Scripted::with(vec![]);
    let p = BulkProcessorBuilder::with_transport(t).build().unwrap();
    p.add(doc(1)).await.unwrap();
    p.close().await.unwrap();
    match p.add(doc(2)).await {
        Err(BulkError::Closed(r)) => assert_eq!(r.doc_id(), Some("2")),
        other => panic!("{other:?}"),
    }
    p.flush().await.unwrap();
    p.close().await.unwrap();
    assert_eq!(p.stats().succeeded, 1);
}

#[tokio::test]
async fn invalid_settings_and_requests_are_named() {
    let t = Scripted::with(vec![]);
    let e = BulkProcessorBuilder::with_transport(t.clone())
        .workers(0)
        .build()
        .err()
        .map(|e| e.to_string());
    assert!(e.unwrap_or_default().contains("workers"));
    let p = BulkProcessorBuilder::with_transport(t)
        .max_buffered_bytes(1 << 20)
        .bulk_size(1 << 20)
        .build()
        .unwrap();
    match p.add(BulkRequest::delete("t")).await {
        Err(e @ BulkError::InvalidRequest { .. }) => {
            assert!(e.to_string().contains("needs an id"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let huge = BulkRequest::index("t").id("big").doc(&"x".repeat(2 << 20));
    assert!(matches!(p.add(huge).await, Err(BulkError::TooLarge { .. })));
    p.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_item_502_is_retried_like_a_whole_request_502() {
    // 502 and 504 are transient for a whole request; an item refused with them
    // (or with any other whole-request transient status) is sent again too.
    let t = Scripted::with(vec![
        Answer::Items(vec![("1", 502), ("2", 504), ("3", 503)]),
        Answer::Items(vec![]),
    ]);
    let (p, failed) = collecting(&t);
    for i in 0..4 {
        p.add(doc(i)).await.unwrap();
    }
    p.close().await.unwrap();
    assert!(
        failed.lock().unwrap().is_empty(),
        "{:?}",
        failed.lock().unwrap()
    );
    assert_eq!(
        t.batch_ids(),
        [vec!["0", "1", "2", "3"], vec!["1", "2", "3"]]
    );
    let s = p.stats();
    assert_eq!(
        (s.succeeded, s.indexed, s.failed, s.retried),
        (4, 4, 0, 3),
        "{s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_requests_bytes_go_back_exactly_once_whatever_its_outcome() {
    // 1 succeeds, 2 is refused, 3 is retried until the backoff gives up, "-"
    // (no id) is lost in an ambiguous attempt, "x" is retried once then succeeds.
    let t = Scripted::with(vec![
        Answer::Items(vec![("2", 400), ("3", 503), ("x", 429)]),
        Answer::Drop,
        Answer::Items(vec![("3", 503)]),
        Answer::Items(vec![("3", 503)]),
    ]);
    let (failed, on_failure) = failures();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .backoff(Backoff {
            max_retries: 3,
            ..fast_backoff()
        })
        .on_failure(on_failure)
        .build()
        .unwrap();
    for i in 1..=3 {
        p.add(doc(i)).await.unwrap();
    }
    p.add(BulkRequest::index("t").id("x").doc(&json!({"n": 0})))
        .await
        .unwrap();
    p.flush().await.unwrap();
    assert_eq!(p.stats().buffered_bytes, 0);
    assert_eq!(
        p.shared.memory.available_permits(),
        p.shared.max_buffered,
        "released exactly once: no more, no less"
    );
    let kinds: Vec<_> = failed.lock().unwrap().iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [FailureKind::Item { status: 400 }, FailureKind::GaveUp]
    );
    // Handed back at a deadline: the bytes of what was in flight come back too.
    let hang = Scripted::with(vec![Answer::Hang]);
    let p = BulkProcessorBuilder::with_transport(hang)
        .bulk_actions(2)
        .build()
        .unwrap();
    for i in 0..3 {
        p.add(doc(i)).await.unwrap();
    }
    let report = p.close_with_deadline(Duration::from_secs(1)).await;
    assert_eq!(report.unsent.len(), 3);
    let in_flight: usize = report
        .unsent
        .iter()
        .filter(|r| r.maybe_applied())
        .map(BulkRequest::encoded_len)
        .sum();
    assert!(in_flight > 0);
    assert_eq!(
        p.shared.max_buffered - p.shared.memory.available_permits(),
        report
            .unsent
            .iter()
            .map(BulkRequest::encoded_len)
            .sum::<usize>()
            - in_flight,
        "the in-flight batch gave its bytes back once; the buffered request was never taken by a worker"
    );
}

#[tokio::test(start_paused = true)]
async fn the_callers_tag_comes_back_with_failures_and_callbacks() {
    let t = Scripted::with(vec![Answer::Items(vec![("1", 400)])]);
    let (failed, on_failure) = failures();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .on_failure(on_failure)
        .after(move |_, requests, _| {
            sink.lock()
                .unwrap()
                .extend(requests.iter().map(BulkRequest::caller_tag));
        })
        .build()
        .unwrap();
    p.add(doc(0).tag(10)).await.unwrap();
    p.add(doc(1).tag(11)).await.unwrap();
    p.add(doc(2)).await.unwrap();
    p.close().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(10), Some(11), None]);
    let failed = failed.lock().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].caller_tag(), Some(11));
    assert_eq!(failed[0].request.caller_tag(), Some(11));
    let (mut tagged, mut plain) = (doc(1).tag(11), doc(1));
    assert_eq!(
        tagged.encode().unwrap(),
        plain.encode().unwrap(),
        "the tag is not sent"
    );
}

/// Holds every `_bulk` call until the test answers it, so the calls in flight
/// can be counted exactly; once `auto` is set, answers at once with success.
#[derive(Debug)]
struct Held {
    calls: Mutex<Vec<tokio::sync::oneshot::Sender<Answer>>>,
    /// Calls waiting for an answer.
    pending: tokio::sync::watch::Sender<usize>,
    auto: AtomicBool,
    /// Ids answered with success, every time.
    succeeded: Mutex<Vec<String>>,
}

#[async_trait]
impl Transport for Held {
    async fn bulk(&self, body: Bytes) -> Result<TransportResponse, TransportError> {
        let actions = actions(&body);
        let answer = if self.auto.load(Relaxed) {
            Answer::Items(vec![])
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.calls.lock().unwrap().push(tx);
            self.pending.send_modify(|n| *n += 1);
            rx.await.unwrap_or(Answer::Hang)
        };
        if matches!(&answer, Answer::Items(o) if o.is_empty()) {
            let ids = actions.iter().map(|(_, id)| id.clone());
            self.succeeded.lock().unwrap().extend(ids);
        }
        respond(&actions, answer)
    }
}

impl Held {
    fn new() -> Arc<Self> {
        Arc::new(Held {
            calls: Mutex::default(),
            pending: tokio::sync::watch::Sender::new(0),
            auto: AtomicBool::new(false),
            succeeded: Mutex::default(),
        })
    }

    fn pending(&self) -> usize {
        *self.pending.borrow()
    }

    /// Returns once `until(calls waiting)` holds (checked at every change).
    /// On the paused clock, time moves only when every task waits: a
    /// processor stuck short of the condition fails after a virtual hour
    /// instead of hanging the test.
    async fn wait(&self, mut until: impl FnMut(usize) -> bool) {
        let mut rx = self.pending.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(3600), rx.wait_for(|n| until(*n)));
        waited
            .await
            .unwrap_or_else(|_| panic!("stuck with {} calls in flight", self.pending()))
            .unwrap();
    }

    /// Answers every waiting call, the i-th with `answer(i)`.
    fn answer_all(&self, answer: impl Fn(usize) -> Answer) {
        let calls = std::mem::take(&mut *self.calls.lock().unwrap());
        self.pending.send_replace(0);
        for (i, call) in calls.into_iter().enumerate() {
            let _ = call.send(answer(i));
        }
    }
}

/// Adaptive concurrency, call by call: eight calls in flight all pushed back
/// (four answered 429 as a whole, four with their item refused 429) lower the
/// limit once, to four; four more pushed back, to two; then each round of clean
/// answers raises it by one, back to eight. The calls in flight follow the
/// limit exactly, and every document is indexed, none failed.
#[tokio::test(start_paused = true)]
async fn adaptive_concurrency_drops_on_429_and_rises_again_losing_nothing() {
    const DOCS: usize = 300;
    let t = Held::new();
    let (failed, on_failure) = failures();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .bulk_actions(1)
        .backoff(fast_backoff())
        .adaptive(AdaptiveConcurrency::between(1, 8))
        .on_failure(on_failure)
        .build()
        .unwrap();
    // Far more batches than calls in flight: the limit is always what binds.
    for i in 0..DOCS {
        p.add(doc(i)).await.unwrap();
    }
    let in_flight = |p: &BulkProcessor| {
        let s = p.stats();
        (s.concurrency_limit, s.in_flight)
    };

    t.wait(|n| n >= 8).await;
    assert_eq!(t.pending(), 8);
    assert_eq!(in_flight(&p), (8, 8));
    t.answer_all(|i| {
        if i < 4 {
            Answer::Status(429)
        } else {
            Answer::AllItems(429)
        }
    });

    // Eight pushbacks to calls sent together: one decrease. The eight go back
    // after their backoff, and only four are let in.
    t.wait(|n| n >= 4).await;
    assert_eq!(t.pending(), 4, "calls in flight at limit 4");
    assert_eq!(in_flight(&p), (4, 4));
    let s = p.stats();
    assert_eq!(
        (
            s.concurrency_decreases,
            s.calls_rejected_429,
            s.items_rejected_429
        ),
        (1, 4, 4),
        "{s:?}"
    );
    t.answer_all(|_| Answer::AllItems(429));

    t.wait(|n| n >= 2).await;
    assert_eq!(t.pending(), 2, "calls in flight at limit 2");
    assert_eq!(in_flight(&p), (2, 2));
    assert_eq!(p.stats().concurrency_decreases, 2);

    // Clean rounds: each waits until the calls in flight reach the limit.
    let mut rounds = Vec::new();
    loop {
        t.wait(|n| n as u64 >= p.stats().concurrency_limit).await;
        let (limit, now) = in_flight(&p);
        assert_eq!((t.pending() as u64, now), (limit, limit));
        rounds.push(limit);
        if limit == 8 {
            break;
        }
        t.answer_all(|_| Answer::Items(vec![]));
    }
    assert_eq!(rounds, [2, 3, 4, 5, 6, 7, 8]);

    t.auto.store(true, Relaxed);
    t.answer_all(|_| Answer::Items(vec![]));
    p.close().await.unwrap();
    assert!(failed.lock().unwrap().is_empty(), "{:?}", failed.lock());
    let s = p.stats();
    assert_eq!((s.succeeded, s.failed), (DOCS as u64, 0), "{s:?}");
    assert_eq!(
        (s.concurrency_limit, s.in_flight, s.concurrency_increases),
        (8, 0, 6),
        "{s:?}"
    );
    let mut ids: Vec<usize> = t
        .succeeded
        .lock()
        .unwrap()
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..DOCS).collect::<Vec<_>>(), "each indexed once");
}

/// Without `adaptive`, the limit is `workers` and 429s are counted, not acted on.
#[tokio::test(start_paused = true)]
async fn fixed_workers_count_429s_and_keep_their_concurrency() {
    let t = Held::new();
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .bulk_actions(1)
        .workers(4)
        .backoff(fast_backoff())
        .build()
        .unwrap();
    for i in 0..40 {
        p.add(doc(i)).await.unwrap();
    }
    t.wait(|n| n >= 4).await;
    t.answer_all(|_| Answer::AllItems(429));
    t.wait(|n| n >= 4).await;
    assert_eq!(t.pending(), 4);
    let s = p.stats();
    assert_eq!(
        (
            s.concurrency_limit,
            s.in_flight,
            s.items_rejected_429,
            s.concurrency_decreases
        ),
        (4, 4, 4, 0),
        "{s:?}"
    );
    t.auto.store(true, Relaxed);
    t.answer_all(|_| Answer::Items(vec![]));
    p.close().await.unwrap();
    assert_eq!(p.stats().succeeded, 40);
}

#[tokio::test]
async fn adaptive_settings_are_checked_and_name_their_key() {
    let t = Scripted::with(vec![]);
    let key = |config| match BulkProcessorBuilder::with_transport(t.clone())
        .adaptive(config)
        .build()
    {
        Err(BulkError::InvalidConfig { key, .. }) => key,
        other => panic!("{other:?}"),
    };
    assert_eq!(key(AdaptiveConcurrency::between(4, 2)), "adaptive.max");
    let p = BulkProcessorBuilder::with_transport(t.clone())
        .workers(2)
        .adaptive(AdaptiveConcurrency::between(1, 5))
        .build()
        .unwrap();
    let s = p.stats();
    assert_eq!(
        (s.concurrency_limit, s.workers.len()),
        (5, 5),
        "max workers"
    );
    p.close().await.unwrap();
}

#[test]
fn a_worker_reuses_its_body_buffer_but_never_a_body_still_held() {
    let batch = |ids: std::ops::Range<usize>| {
        ids.map(|i| {
            let mut r = doc(i);
            r.encode().unwrap();
            r
        })
        .collect::<Vec<_>>()
    };
    let ndjson = |requests: &[BulkRequest]| {
        let mut out = BytesMut::new();
        write_bodies(requests, &mut out);
        out.freeze()
    };
    let (a, b) = (batch(0..10), batch(10..20));
    let mut buffer = BodyBuffer::new(1 << 20);
    // A transport that keeps a body: the next one is written elsewhere.
    let held = buffer.build(&a);
    let next = buffer.build(&b);
    assert_eq!(held, ndjson(&a));
    assert_eq!(next, ndjson(&b));
    assert_ne!(held.as_ptr(), next.as_ptr());
    // Once a body is dropped, the next one takes its memory.
    let at = next.as_ptr();
    drop((held, next));
    let again = buffer.build(&a);
    assert_eq!(again, ndjson(&a));
    assert_eq!(again.as_ptr(), at);
    // A body larger than `bulk_size` (one large request) is not kept.
    let mut small = BodyBuffer::new(16);
    let one = small.build(&a[..1]);
    assert_eq!(one, ndjson(&a[..1]));
    assert_eq!(small.buf.capacity(), 0);
}
