//! Bounds on what the source holds, against the test server (`ES_URL`).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use connector::ConnectorError;
use serde_json::json;

/// A page larger than `max_response_bytes` is refused naming the key, before it
/// is held; within the limit the same page is read.
#[tokio::test]
async fn an_answer_over_max_response_bytes_is_refused_naming_the_key() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::standard(&url, "limits").await;
    let filler = "x".repeat(1000);
    let docs: Vec<_> = (0..200)
        .map(|i| json!({"id": format!("d{i:06}"), "@timestamp": "2024-01-15T10:30:00Z", "n": i, "filler": filler}))
        .collect();
    index.load(&docs).await;

    // 100 documents of about 1 kB: over 100 kB per page.
    let small = by_id(100) + "max_response_bytes = 20000\n";
    let mut source = open_source(1, &url, &index.name, &small).await;
    let err = source
        .poll_batch()
        .await
        .expect_err("a page over the limit");
    assert!(
        matches!(&err, ConnectorError::InvalidConfig { key, .. } if key == "plugin_config.max_response_bytes"),
        "{err}"
    );
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("batch_size"), "{err}");

    let roomy = by_id(100) + "max_response_bytes = 1000000\n";
    let mut source = open_source(1, &url, &index.name, &roomy).await;
    assert_eq!(source.poll_batch().await.unwrap().len(), 100);
}
