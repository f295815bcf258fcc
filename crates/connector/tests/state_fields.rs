//! Each state field counts what docs/configuration.md says it counts.
//! Runs against a scripted local server: no service needed.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "common/fake_server.rs"]
mod fake_server;

use std::path::Path;
use std::time::Duration;

use connector::{ConnectorConfig, ElasticsearchSource};
use fake_server::{FakeServer, page, scroll_page};
use state_core::ConnectorState;

const BUSY: &str = r#"{"error":{"type":"unavailable","reason":"busy"},"status":503}"#;

fn source(url: &str, extra: &str) -> ElasticsearchSource {
    let text = format!(
        "[plugin_config]\nurl = \"{url}\"\nindex = \"logs\"\ntiebreaker_field = \"id\"\nbatch_size = 2\nrequest_timeout = \"5s\"\n{extra}"
    );
    ElasticsearchSource::new(1, ConnectorConfig::from_toml(&text).unwrap().plugin_config)
}

fn file_state(dir: &Path) -> String {
    format!(
        "[plugin_config.state]\nstorage_type = \"file\"\nstate_id = \"fields\"\nauto_save_interval = \"0s\"\n[plugin_config.state.storage_config]\nbase_path = \"{}\"\n",
        dir.display()
    )
}

async fn state(source: &mut ElasticsearchSource) -> ConnectorState {
    source.get_state().await.unwrap()
}

/// Polls one batch and commits it; returns its size.
async fn poll_and_commit(source: &mut ElasticsearchSource) -> usize {
    let batch = source.poll_batch().await.unwrap();
    if let Some(ack) = &batch.ack {
        source.commit(ack).await.unwrap();
    }
    batch.len()
}

#[tokio::test]
async fn poll_count_counts_failed_polls_too() {
    let server = FakeServer::start();
    let mut source = source(&server.url, "pagination = \"cursor\"\n");
    source.open().await.unwrap();
    server.push(503, BUSY);
    assert!(source.poll_batch().await.is_err());
    server.push(200, page(&["a", "b"]));
    assert_eq!(poll_and_commit(&mut source).await, 2);
    assert_eq!(poll_and_commit(&mut source).await, 0);
    let data = state(&mut source).await.data;
    let stats = &data.processing_stats;
    assert_eq!(
        (
            data.poll_count,
            stats.successful_polls_count,
            stats.empty_polls_count
        ),
        (3, 2, 1),
        "poll_count = successful + failed polls; empty ones are successful"
    );
    assert_eq!(data.error_count, 1);
}

#[tokio::test]
async fn last_offset_is_the_position_in_the_pass_not_a_copy_of_the_total() {
    let server = FakeServer::start();
    let mut source = source(&server.url, "pagination = \"cursor\"\n");
    source.open().await.unwrap();
    server.push(200, page(&["a", "b"]));
    server.push(200, page(&["c"]));
    assert_eq!(poll_and_commit(&mut source).await, 2);
    assert_eq!(state(&mut source).await.data.last_offset, 2);
    assert_eq!(poll_and_commit(&mut source).await, 1);
    assert_eq!(state(&mut source).await.data.last_offset, 3);
    // Caught up: the pass is over; the next one starts at offset 0.
    assert_eq!(poll_and_commit(&mut source).await, 0);
    server.push(200, page(&["d"]));
    assert_eq!(poll_and_commit(&mut source).await, 1);
    let data = state(&mut source).await.data;
    assert_eq!(data.total_documents_fetched, 4);
    assert_eq!(
        data.last_offset, 1,
        "d is the first document of the second pass"
    );
}

#[tokio::test]
async fn last_scroll_id_is_cleared_once_its_scroll_is_closed() {
    let server = FakeServer::start();
    let mut source = source(&server.url, "pagination = \"scroll\"\n");
    source.open().await.unwrap();
    server.push(200, scroll_page(&["a", "b"], "scroll-1"));
    assert_eq!(poll_and_commit(&mut source).await, 2);
    assert_eq!(
        state(&mut source).await.data.last_scroll_id.as_deref(),
        Some("scroll-1")
    );
    // The end of the pass clears the scroll on the server.
    assert_eq!(poll_and_commit(&mut source).await, 0);
    assert!(
        server.log().contains("DELETE /_search/scroll"),
        "{}",
        server.log()
    );
    assert_eq!(
        state(&mut source).await.data.last_scroll_id,
        None,
        "the scroll named in the state no longer exists"
    );
}

#[tokio::test]
async fn failed_state_saves_count_in_error_count() {
    let server = FakeServer::start();
    let dir = tempfile::tempdir().unwrap();
    let states = dir.path().join("states");
    let mut source = source(
        &server.url,
        &format!("pagination = \"cursor\"\n{}", file_state(&states)),
    );
    source.open().await.unwrap();
    server.push(200, page(&["a", "b"]));
    let batch = source.poll_batch().await.unwrap();
    let ack = batch.ack.clone().unwrap();
    // The state directory is gone (a file stands in its place): the save fails.
    let away = dir.path().join("states.away");
    std::fs::rename(&states, &away).unwrap();
    std::fs::write(&states, b"not a directory").unwrap();
    let failed = source.commit(&ack).await;
    assert!(failed.is_err(), "the save cannot succeed: {failed:?}");
    let data = state(&mut source).await.data;
    assert_eq!(data.error_count, 1, "the failed save is an error");
    assert!(data.last_error.is_some());
    // Back again: committing the batch again saves it, the failure counted.
    std::fs::remove_file(&states).unwrap();
    std::fs::rename(&away, &states).unwrap();
    source.commit(&ack).await.unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(states.join("fields.json")).unwrap()).unwrap();
    assert_eq!(stored["data"]["error_count"], 1);
    assert_eq!(stored["data"]["total_documents_fetched"], 2);
}

/// Each batch counts the search that read it, also a page fetched ahead (one per
/// slice, concurrently) and returned by a later poll.
#[tokio::test]
async fn avg_batch_processing_time_counts_each_batch_read_with_slices_too() {
    let server = FakeServer::start();
    let slow = Duration::from_millis(300);
    server.push_slow(200, scroll_page(&["a"], "s-a"), slow);
    server.push_slow(200, scroll_page(&["b"], "s-b"), slow);
    let mut source = source(&server.url, "pagination = \"scroll\"\nslices = 2\n");
    source.open().await.unwrap();
    assert_eq!(poll_and_commit(&mut source).await, 1);
    assert_eq!(poll_and_commit(&mut source).await, 1);
    let avg = state(&mut source)
        .await
        .data
        .processing_stats
        .avg_batch_processing_time_ms;
    assert!(
        avg >= slow.as_millis() as f64,
        "each of the two batches took a {slow:?} search to read, yet the average is {avg} ms"
    );
}
