//! The plugin as the runtime drives it: poll, then `Ack` or `Nack`, then a restart
//! with whatever state the runtime kept. Needs the Elasticsearch-compatible test
//! server (`ES_URL`, as `cargo xtask services up` exports it); the configuration
//! and state-decoding cases need nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use iggy_connector_elasticsearch_source::ElasticsearchSourcePlugin;
use iggy_connector_elasticsearch_source::owner::CursorOwner;
use iggy_connector_sdk::source::SourceBatchResult::{Ack, Nack};
use iggy_connector_sdk::{ConnectorState, Error, ProducedMessages, Source};
use serde_json::{Value, json};

fn es_url() -> Option<String> {
    state_core::conformance::service_endpoint("ES_URL")
}

/// An index of `n` documents (`event_id` e-000.., one per second), deleted on drop.
struct TestIndex {
    url: String,
    name: String,
}

impl TestIndex {
    async fn with_docs(url: &str, n: usize) -> TestIndex {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("plugin-src-{}-{nanos}", std::process::id());
        let http = reqwest::Client::new();
        let mapping = json!({"mappings": {"properties": {
            "event_id": {"type": "keyword"}, "@timestamp": {"type": "date"}, "n": {"type": "long"}}}});
        let r = http
            .put(format!("{url}/{name}"))
            .json(&mapping)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ES_URL={url} is set but the server is down: {e}"));
        assert!(
            r.status().is_success(),
            "create {name}: {}",
            r.text().await.unwrap_or_default()
        );
        let mut body = String::new();
        for i in 0..n {
            let id = format!("e-{i:03}");
            body.push_str(&json!({"index": {"_index": name, "_id": id}}).to_string());
            body.push('\n');
            let doc = json!({"event_id": id, "@timestamp": format!("2024-01-15T10:{:02}:{:02}Z", i / 60, i % 60), "n": i});
            body.push_str(&doc.to_string());
            body.push('\n');
        }
        let r = http
            .post(format!("{url}/_bulk?refresh=true"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["errors"], json!(false), "{answer}");
        TestIndex {
            url: url.to_owned(),
            name,
        }
    }
}

impl Drop for TestIndex {
    fn drop(&mut self) {
        let url = format!("{}/{}", self.url, self.name);
        // Best effort, off the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async { reqwest::Client::new().delete(url).send().await.ok() });
            }
        })
        .join();
    }
}

fn config(url: &str, index: &str, extra: Value) -> Value {
    let mut c = json!({"url": url, "index": index, "batch_size": 10, "polling_interval": "1s",
        "tiebreaker_field": "event_id"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// The `event_id`s of a batch, in order.
fn ids(batch: &ProducedMessages) -> Vec<String> {
    batch
        .messages
        .iter()
        .map(|m| {
            let doc: Value = serde_json::from_slice(&m.payload).unwrap();
            doc["event_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn range(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("e-{i:03}")).collect()
}

#[tokio::test]
async fn runtime_owned_nack_rereads_ack_advances_and_a_restart_resumes() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::with_docs(&url, 25).await;
    let config = config(&url, &index.name, json!({}));

    let mut plugin = ElasticsearchSourcePlugin::new(1, config.clone(), None);
    assert_eq!(plugin.owner(), Some(CursorOwner::Runtime));
    plugin.open().await.unwrap();

    let first = plugin.poll().await.unwrap();
    assert_eq!(ids(&first), range(0, 10));
    assert!(
        first.state.is_some(),
        "the runtime owns the cursor: it gets the state"
    );
    plugin.on_batch_result(Nack).await.unwrap();

    let again = plugin.poll().await.unwrap();
    assert_eq!(ids(&again), range(0, 10), "a Nack reads the batch again");
    let ids_first: Vec<_> = first.messages.iter().map(|m| m.id).collect();
    let ids_again: Vec<_> = again.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids_first, ids_again, "message ids are deterministic");
    plugin.on_batch_result(Ack).await.unwrap();

    let second = plugin.poll().await.unwrap();
    assert_eq!(ids(&second), range(10, 20));
    // What the runtime saved after sending the second batch; then it stops.
    let saved = second.state.as_ref().unwrap().0.clone();
    plugin.on_batch_result(Ack).await.unwrap();
    let unacknowledged = plugin.poll().await.unwrap();
    assert_eq!(ids(&unacknowledged), range(20, 25));
    plugin.close().await.unwrap();

    // Restarted (perhaps under another plugin id) with the runtime's saved state:
    // the batch never acknowledged is read again, nothing before it.
    let mut restarted = ElasticsearchSourcePlugin::new(9, config, Some(ConnectorState(saved)));
    restarted.open().await.unwrap();
    let resumed = restarted.poll().await.unwrap();
    assert_eq!(ids(&resumed), range(20, 25));
    restarted.on_batch_result(Ack).await.unwrap();
    let caught_up = restarted.poll().await.unwrap();
    assert!(caught_up.messages.is_empty() && caught_up.state.is_none());
    restarted.on_batch_result(Ack).await.unwrap();
    restarted.close().await.unwrap();
}

#[tokio::test]
async fn store_owned_commits_on_ack_only_and_ignores_the_runtime_state() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::with_docs(&url, 25).await;
    let dir = tempfile::tempdir().unwrap();
    let state = json!({"storage_type": "file", "state_id": "plugin_test",
        "storage_config": {"base_path": dir.path()}});
    let config = config(&url, &index.name, json!({"state": state}));
    let state_file = dir.path().join("plugin_test.json");
    let stored_cursor = || -> Value {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
        doc["data"]["cursor"].clone()
    };

    let mut plugin = ElasticsearchSourcePlugin::new(1, config.clone(), None);
    assert_eq!(plugin.owner(), Some(CursorOwner::Store));
    plugin.open().await.unwrap();
    let first = plugin.poll().await.unwrap();
    assert_eq!(ids(&first), range(0, 10));
    assert!(
        first.state.is_none(),
        "the store owns the cursor: the runtime gets none"
    );
    plugin.on_batch_result(Ack).await.unwrap();
    assert_eq!(stored_cursor()["sort"][1], "e-009", "saved on Ack");

    let second = plugin.poll().await.unwrap();
    assert_eq!(ids(&second), range(10, 20));
    plugin.on_batch_result(Nack).await.unwrap();
    assert_eq!(stored_cursor()["sort"][1], "e-009", "a Nack moves nothing");
    let again = plugin.poll().await.unwrap();
    assert_eq!(ids(&again), range(10, 20), "a Nack reads the batch again");
    plugin.on_batch_result(Ack).await.unwrap();
    assert_eq!(stored_cursor()["sort"][1], "e-019");
    plugin.close().await.unwrap();

    // A state the runtime kept from an earlier configuration is ignored: the store decides.
    let stale = ConnectorState(vec![1, 2, 3]);
    let mut restarted = ElasticsearchSourcePlugin::new(2, config, Some(stale));
    restarted.open().await.unwrap();
    let resumed = restarted.poll().await.unwrap();
    assert_eq!(ids(&resumed), range(20, 25));
    restarted.on_batch_result(Ack).await.unwrap();
    restarted.close().await.unwrap();
    let all: BTreeSet<_> = ids(&first)
        .into_iter()
        .chain(ids(&again))
        .chain(ids(&resumed))
        .collect();
    assert_eq!(all.len(), 25);
}

#[tokio::test]
async fn an_unreadable_runtime_state_fails_open_instead_of_starting_over() {
    let config = json!({"url": "http://127.0.0.1:9", "index": "logs"});
    let mut plugin = ElasticsearchSourcePlugin::new(1, config, Some(ConnectorState(vec![0xc1])));
    assert_eq!(plugin.owner(), Some(CursorOwner::Runtime));
    assert_eq!(plugin.open().await, Err(Error::InvalidState));
}

#[tokio::test]
async fn an_invalid_configuration_fails_open_naming_the_key() {
    let config = json!({"url": "http://127.0.0.1:9", "index": "logs", "batch": 5});
    let mut plugin = ElasticsearchSourcePlugin::new(1, config, None);
    assert_eq!(plugin.owner(), None);
    match plugin.open().await {
        Err(Error::InvalidConfigValue(reason)) => assert!(reason.contains("batch"), "{reason}"),
        other => panic!("expected InvalidConfigValue, got {other:?}"),
    }
    let documented = json!({"url": "http://127.0.0.1:9", "index": "logs-*", "polling_interval": "30s",
        "batch_size": 100, "timestamp_field": "@timestamp", "query": {"match_all": {}},
        "state": {"enabled": true, "storage_type": "file", "storage_config": {"base_path": "./connector_states"},
            "state_id": "elasticsearch_logs_connector", "auto_save_interval": "5m",
            "tracked_fields": ["last_poll_timestamp", "last_document_id", "total_documents_fetched"]}});
    let plugin = ElasticsearchSourcePlugin::new(1, documented, None);
    assert_eq!(
        plugin.owner(),
        Some(CursorOwner::Store),
        "the documented configuration, as the runtime passes it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_down_at_open_is_not_fatal_polls_retry() {
    // Nothing listens on port 9 (discard): the source cannot connect.
    let config = json!({"url": "http://127.0.0.1:9", "index": "logs", "request_timeout": "2s"});
    let mut plugin = ElasticsearchSourcePlugin::new(1, config, None);
    assert_eq!(
        plugin.open().await,
        Ok(()),
        "open leaves connecting to the polls"
    );
    match plugin.poll().await {
        Err(Error::Connection(reason)) => assert!(reason.contains("127.0.0.1:9"), "{reason}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
    plugin.close().await.unwrap();
}
