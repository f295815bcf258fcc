//! The elasticsearch output against the test server: idempotent by `_id`.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use connector::output::{ElasticsearchOutput, ElasticsearchOutputOptions};
use connector::{Message, Output};
use serde_json::json;
use serde_json::value::RawValue;
use state_core::conformance::service_endpoint;

fn msg(i: u32) -> Message {
    let payload = RawValue::from_string(format!("{{\"n\":{i},\"msg\":\"doc {i}\"}}")).unwrap();
    Message::new(
        "source-index",
        &format!("doc-{i}"),
        Some(i64::from(i)),
        None,
        payload,
    )
}

/// A target index of the test's own on the server of `ES_URL`.
struct Target {
    url: String,
    index: String,
}

impl Target {
    /// A fresh index name tagged `tag`; `None` without `ES_URL` (the test then
    /// does nothing, as `service_endpoint` reports).
    fn new(tag: &str) -> Option<Target> {
        let url = service_endpoint("ES_URL")?;
        let index = format!(
            "out-{tag}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros()
        );
        Some(Target { url, index })
    }

    /// An output into the index with `workers` workers.
    fn output(&self, workers: usize) -> ElasticsearchOutput {
        ElasticsearchOutput::new(&self.url, &self.index, workers).unwrap()
    }

    /// The `_source` of document `id` (`/` in the id URL-encoded).
    async fn source_of(&self, id: &str) -> serde_json::Value {
        let id = id.replace('/', "%2F");
        let doc: serde_json::Value = reqwest::get(format!("{}/{}/_doc/{id}", self.url, self.index))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        doc["_source"].clone()
    }

    /// The number of documents, after an explicit `_refresh`.
    async fn count(&self) -> u64 {
        let (url, index) = (&self.url, &self.index);
        let refreshed = reqwest::Client::new()
            .post(format!("{url}/{index}/_refresh"))
            .send()
            .await
            .unwrap();
        assert!(
            refreshed.status().is_success(),
            "_refresh {index}: {refreshed:?}"
        );
        let v: serde_json::Value = reqwest::get(format!("{url}/{index}/_count"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("no count in {v}"))
    }

    /// Closes `out`, then deletes the index.
    async fn finish(self, mut out: ElasticsearchOutput) {
        out.close().await.unwrap();
        let _ = reqwest::Client::new()
            .delete(format!("{}/{}", self.url, self.index))
            .send()
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_output_is_idempotent_by_id() {
    let Some(target) = Target::new("plain") else {
        return;
    };
    let mut out = target.output(1);
    let batch: Vec<Message> = (0..50).map(msg).collect();
    out.send(&batch).await.unwrap();
    assert_eq!(target.count().await, 50);
    // The same batch again (a replay after a crash) adds nothing.
    out.send(&batch[10..30]).await.unwrap();
    assert_eq!(target.count().await, 50);
    // `{source index}/{source _id}`.
    assert_eq!(
        target.source_of("source-index/doc-7").await,
        serde_json::json!({"n": 7, "msg": "doc 7"})
    );
    target.finish(out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_output_reports_refused_documents() {
    let Some(target) = Target::new("bad") else {
        return;
    };
    let mapping = serde_json::json!({"mappings": {"properties": {"n": {"type": "integer"}}}});
    reqwest::Client::new()
        .put(format!("{}/{}", target.url, target.index))
        .json(&mapping)
        .send()
        .await
        .unwrap();
    let mut out = target.output(1);
    let bad = Message::new(
        "s",
        "bad",
        Some(1),
        None,
        RawValue::from_string(r#"{"n":"not a number"}"#.into()).unwrap(),
    );
    let err = out
        .send(&[msg(1), bad])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("1 of 2") && err.contains("bad"), "{err}");
    target.finish(out).await;
}

/// A document larger than the bulk processor's memory bound can never be sent:
/// it is a refusal of that document (for the dead letter), and the rest of the
/// batch is indexed. Before, the add error made the whole send "unavailable",
/// which the run loop and the sink retry for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_larger_than_the_memory_bound_is_refused_alone() {
    let Some(target) = Target::new("huge") else {
        return;
    };
    let options = ElasticsearchOutputOptions {
        // The smallest bound the processor takes: one full `_bulk` body.
        max_buffered_bytes: Some(bulk::DEFAULT_BULK_SIZE),
        ..ElasticsearchOutputOptions::default()
    };
    let endpoint = connector::config::Endpoint::from_url(target.url.parse().unwrap());
    let mut out = ElasticsearchOutput::with_options(&endpoint, &target.index, options).unwrap();
    let huge = Message::new(
        "s",
        "huge",
        Some(1),
        None,
        RawValue::from_string(format!(
            r#"{{"text":"{}"}}"#,
            "x".repeat(bulk::DEFAULT_BULK_SIZE)
        ))
        .unwrap(),
    );
    let refused = out
        .send_reporting(&[msg(1), huge, msg(2)])
        .await
        .unwrap_or_else(|e| panic!("the send failed as a whole: {e}"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].0, 1,
        "the huge document, by position: {refused:?}"
    );
    assert!(refused[0].1.contains("max_buffered_bytes"), "{refused:?}");
    assert_eq!(target.count().await, 2, "the others are indexed");
    target.finish(out).await;
}

fn versioned(index: &str, id: &str, seq_no: i64, n: u32) -> Message {
    let payload = RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap();
    Message::new(index, id, Some(seq_no), None, payload)
}

/// Read through an index pattern, `logs-a`'s and `logs-b`'s document `1` are two
/// documents: neither overwrites the other in the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_in_two_source_indices_is_two_documents() {
    let Some(target) = Target::new("two") else {
        return;
    };
    let mut out = target.output(1);
    let batch = [
        versioned("logs-a", "1", 0, 1),
        versioned("logs-b", "1", 0, 2),
    ];
    out.send(&batch).await.unwrap();
    // Sent again (a replay after a crash): still two.
    out.send(&batch).await.unwrap();
    assert_eq!(target.count().await, 2);
    for (id, source) in [("logs-a/1", json!({"n": 1})), ("logs-b/1", json!({"n": 2}))] {
        assert_eq!(target.source_of(id).await, source, "{id}");
    }
    target.finish(out).await;
}

/// Two versions of one document, the newer sent first (two partitions of a
/// topic, two workers): the older one does not replace it, and is not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_never_replaces_a_newer_one() {
    let Some(target) = Target::new("ver") else {
        return;
    };
    let mut out = target.output(2);
    out.send(&[versioned("logs", "7", 12, 2)]).await.unwrap();
    out.send(&[versioned("logs", "7", 4, 1)]).await.unwrap();
    assert_eq!(target.source_of("logs/7").await, json!({"n": 2}));
    // The same version again is accepted (idempotent), a newer one wins.
    out.send(&[versioned("logs", "7", 12, 2)]).await.unwrap();
    out.send(&[versioned("logs", "7", 13, 3)]).await.unwrap();
    assert_eq!(target.source_of("logs/7").await, json!({"n": 3}));
    assert_eq!(target.count().await, 1);
    target.finish(out).await;
}

/// A bulk request refused as a whole for a reason asking again cannot fix stops
/// the output with an error naming the status and what to do (issue 11, item 7);
/// it used to be reported as "unavailable", so the run loop resent the batch forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_output_stops_on_a_whole_request_refusal() {
    use bulk::testkit::{FaultProxy, Faults, NullBulkServer};
    let null = NullBulkServer::start().await.unwrap();
    for (status, advice) in [
        (401, "credentials"),
        (403, "privilege"),
        (413, "http.max_content_length"),
        (500, "log"),
    ] {
        let faults = Faults::none().reject_request(1.0).reject_status(status);
        let proxy = FaultProxy::start(&null.url(), faults, 1).await.unwrap();
        let mut out = ElasticsearchOutput::new(&proxy.url(), "refused", 1).unwrap();
        let batch: Vec<Message> = (0..5).map(msg).collect();
        let err = out.send(&batch).await.expect_err("a refused request");
        assert!(!err.is_retryable(), "HTTP {status} is not retried: {err}");
        let text = err.to_string();
        assert!(text.contains(&format!("HTTP {status}")), "{text}");
        assert!(text.contains(advice), "{text}");
        // The sink's path: an error, not five documents for the dead letter.
        match out.send_reporting(&batch).await {
            Err(e) => assert!(!e.is_retryable(), "{e}"),
            Ok(refused) => panic!("HTTP {status} dead-letters documents: {refused:?}"),
        }
        out.close().await.unwrap();
        assert_eq!(proxy.counts().bulk_requests, 2, "HTTP {status} was retried");
    }
    assert_eq!(null.docs_received(), 0);
}

/// Two messages of one batch for the same target document (a document read
/// twice), the second refused: the refusal names the second by position. The
/// output used to find a failure's message by document id, which named the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_its_own_message_when_two_share_a_document_id() {
    let Some(target) = Target::new("same-id") else {
        return;
    };
    let mut out = target.output(1);
    let unmappable = RawValue::from_string(r#"{"n":{"not":"a number"}}"#.to_owned()).unwrap();
    let batch = [
        versioned("logs", "1", 1, 1),
        Message::new("logs", "1", Some(2), None, unmappable),
        versioned("logs", "2", 1, 2),
    ];
    let refused = out
        .send_reporting(&batch)
        .await
        .unwrap_or_else(|e| panic!("the send failed as a whole: {e}"));
    assert_eq!(
        refused.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1],
        "{refused:?}"
    );
    assert!(refused[0].1.starts_with("HTTP 400"), "{refused:?}");
    assert_eq!(target.count().await, 2);
    target.finish(out).await;
}

/// `adaptive_concurrency`: a cluster answering 429 lowers the concurrent bulk
/// calls of the output, and every document still arrives once; without it the
/// limit stays at `workers`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_concurrency_lowers_the_calls_in_flight_on_429() {
    use bulk::testkit::{FaultProxy, Faults, NullBulkServer};
    let null = NullBulkServer::start().await.unwrap();
    let documents = 300;
    for adaptive in [false, true] {
        let faults = Faults::none().reject_request(0.3).reject_status(429);
        let proxy = FaultProxy::start(&null.url(), faults, 7).await.unwrap();
        let endpoint = connector::config::Endpoint::from_url(proxy.url().parse().unwrap());
        let options = ElasticsearchOutputOptions {
            workers: 4,
            bulk_actions: 10,
            adaptive,
            backoff: bulk::Backoff {
                initial: std::time::Duration::from_millis(1),
                max_delay: std::time::Duration::from_millis(20),
                max_retries: 50,
                ..bulk::Backoff::default()
            },
            ..ElasticsearchOutputOptions::default()
        };
        let mut out = ElasticsearchOutput::with_options(&endpoint, "adaptive", options).unwrap();
        let before = null.docs_received();
        let batch: Vec<Message> = (0..documents).map(msg).collect();
        out.send(&batch).await.unwrap();
        let stats = out.stats();
        out.close().await.unwrap();
        assert_eq!(
            null.docs_received() - before,
            u64::from(documents),
            "adaptive {adaptive}: every document arrives once"
        );
        assert!(stats.calls_rejected_429 > 0, "{stats:?}");
        if adaptive {
            assert!(stats.concurrency_decreases > 0, "{stats:?}");
        } else {
            assert_eq!(
                (stats.concurrency_decreases, stats.concurrency_limit),
                (0, 4),
                "{stats:?}"
            );
        }
    }
}
