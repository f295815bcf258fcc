//! The elasticsearch output against the test server: idempotent by `_id`.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use connector::{Message, Output, output::ElasticsearchOutput};
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

/// The number of documents in `index`, after an explicit `_refresh`.
async fn count(url: &str, index: &str) -> u64 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_output_is_idempotent_by_id() {
    let Some(url) = service_endpoint("ES_URL") else {
        return;
    };
    let index = format!(
        "out-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let mut out = ElasticsearchOutput::new(&url, &index, 1).unwrap();
    let batch: Vec<Message> = (0..50).map(msg).collect();
    out.send(&batch).await.unwrap();
    assert_eq!(count(&url, &index).await, 50);
    // The same batch again (a replay after a crash) adds nothing.
    out.send(&batch[10..30]).await.unwrap();
    assert_eq!(count(&url, &index).await, 50);
    let doc: serde_json::Value = reqwest::get(format!("{url}/{index}/_doc/doc-7"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["_source"], serde_json::json!({"n": 7, "msg": "doc 7"}));
    out.close().await.unwrap();
    let _ = reqwest::Client::new()
        .delete(format!("{url}/{index}"))
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_output_reports_refused_documents() {
    let Some(url) = service_endpoint("ES_URL") else {
        return;
    };
    let index = format!(
        "out-bad-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let client = reqwest::Client::new();
    let mapping = serde_json::json!({"mappings": {"properties": {"n": {"type": "integer"}}}});
    client
        .put(format!("{url}/{index}"))
        .json(&mapping)
        .send()
        .await
        .unwrap();
    let mut out = ElasticsearchOutput::new(&url, &index, 1).unwrap();
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
    out.close().await.unwrap();
    let _ = client.delete(format!("{url}/{index}")).send().await;
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
