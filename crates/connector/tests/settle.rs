//! The settle bound against the test server (`ES_URL`): a pass reads only
//! documents with a timestamp before its start minus `settle`, so a document that
//! becomes searchable late (refresh) is not passed by the cursor while it is
//! younger than `settle`. Time is not waited for: a run with a smaller `settle`
//! stands for the same source later.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use connector::ElasticsearchSource;
use serde_json::json;

async fn source(url: &str, index: &TestIndex, state: &str, settle: &str) -> ElasticsearchSource {
    opened_source(url, &index.name, &format!("settle = \"{settle}\"\n{state}")).await
}

/// Without a settle bound, the cursor passes a document that is not searchable
/// yet, and it is never delivered; with one covering its delay it is delivered
/// once it is old enough, and nothing is delivered twice.
#[tokio::test]
async fn a_document_searchable_late_is_delivered_when_it_is_younger_than_settle() {
    let Some(url) = es_url() else { return };
    for (settle, expect_late) in [("0s", false), ("20m", true)] {
        let dir = tempfile::tempdir().unwrap();
        let state = file_state(dir.path(), "settle");
        let head = [
            json!({"id": "old", "@timestamp": ago(120), "n": 1}),
            json!({"id": "recent", "@timestamp": ago(5), "n": 2}),
            json!({"id": "future", "@timestamp": ago(-60), "n": 3}),
        ];
        let index = index_without_refresh(&url, "settle", &head).await;
        // Ten minutes old, but not searchable yet.
        index_unrefreshed(
            &index,
            &json!({"id": "late", "@timestamp": ago(10), "n": 4}),
        )
        .await;

        let mut first = source(&url, &index, &state, settle).await;
        let mut delivered = drain(&mut first).await;
        first.close().await.unwrap();
        let expected_first: &[&str] = if settle == "0s" {
            &["old", "recent"]
        } else {
            &["old"]
        };
        assert_eq!(delivered, expected_first, "settle {settle}: the first pass");

        index.refresh().await;
        // The same source later, once every document but `future` is older than
        // its settle: a run with settle 0s.
        let mut later = source(&url, &index, &state, "0s").await;
        delivered.extend(drain(&mut later).await);
        later.close().await.unwrap();
        let late = delivered.iter().filter(|id| *id == "late").count();
        assert_eq!(
            late,
            usize::from(expect_late),
            "settle {settle}: the late document, delivered {late} times; all: {delivered:?}"
        );
        assert!(
            !delivered.iter().any(|id| id == "future"),
            "a document stamped in the future waits for its time: {delivered:?}"
        );
        let mut distinct = delivered.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            delivered.len(),
            "no duplicates: {delivered:?}"
        );
    }
}

#[tokio::test]
async fn settle_is_validated_naming_the_key() {
    let config = connector::ConnectorConfig::from_toml(
        "[plugin_config]\nurl = \"http://127.0.0.1:9\"\nindex = \"i\"\nsettle = \"400d\"\n",
    );
    let e = config.map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("plugin_config.settle"), "{e}");
}
