//! `slices`: concurrent sliced readers inside one source, against the test server
//! (`ES_URL`): every document once, per-slice cursors in the one state document,
//! resumption after a crash, and a state of another slicing refused.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use connector::{ConnectorConfig, ConnectorError, ElasticsearchSource, ReadMode};
use serde_json::json;

const DOCS: usize = 5000;
const BATCH: usize = 200;

/// 5000 documents sharing 50 timestamps (100 documents each).
async fn shared_timestamps(url: &str, tag: &str) -> TestIndex {
    TestIndex::holding(url, tag, DOCS, |i| {
        json!(format!("2024-01-15T10:{:02}:00Z", i % 50))
    })
    .await
}

/// Drains with slices = 3 under `pagination`; returns the ids and the slices seen.
async fn drain_sliced(url: &str, tag: &str, settings: &str, mode: ReadMode) {
    let dir = tempfile::tempdir().unwrap();
    let index = shared_timestamps(url, tag).await;
    let extra = format!(
        "batch_size = {BATCH}\nslices = 3\n{settings}\n{}",
        file_state(dir.path(), tag)
    );
    let mut source = open_source(1, url, &index.name, &extra).await;
    assert_eq!(source.read_mode(), Some(mode));
    let mut ids = Vec::new();
    let mut per_slice: HashMap<usize, usize> = HashMap::new();
    loop {
        let batch = source.poll_batch().await.unwrap();
        let Some(ack) = batch.ack.clone() else { break };
        assert!(batch.len() <= BATCH);
        *per_slice.entry(ack.slice()).or_default() += batch.len();
        ids.extend(batch.messages.iter().map(doc_id));
        commit(&mut source, &ack).await;
        assert!(ids.len() <= DOCS * 2, "looping? {} ids", ids.len());
    }
    assert_exactly_once(&ids, DOCS);
    assert_eq!(per_slice.len(), 3, "every slice read: {per_slice:?}");
    // Caught up: nothing more, and nothing again on the next pass.
    assert!(source.poll_batch().await.unwrap().is_empty());
    let state = stored_state(dir.path(), tag);
    let cursors = state["data"]["slice_cursors"].as_array().cloned().unwrap();
    assert_eq!(cursors.len(), 3, "{state}");
    assert!(cursors.iter().all(|c| c["sort"].is_array()), "{state}");
    assert!(state["data"].get("cursor").is_none(), "{state}");
    assert_eq!(state["data"]["total_documents_fetched"], DOCS);
    assert_eq!(source.committed_cursors().len(), 3);
    source.close().await.unwrap();
}

#[tokio::test]
async fn slices_in_a_point_in_time_deliver_every_document_once() {
    let Some(url) = es_url() else { return };
    // Without tiebreaker_field: `_shard_doc`, where the server has it.
    if shard_doc_or_refused(&url, "sl-pit").await {
        drain_sliced(&url, "sl-pit", "", ReadMode::PointInTime).await;
    }
}

#[tokio::test]
async fn slices_with_a_tiebreaker_field_deliver_every_document_once() {
    let Some(url) = es_url() else { return };
    drain_sliced(
        &url,
        "sl-tb",
        "tiebreaker_field = \"id\"",
        ReadMode::PointInTime,
    )
    .await;
}

#[tokio::test]
async fn sliced_scrolls_deliver_every_document_once() {
    let Some(url) = es_url() else { return };
    drain_sliced(
        &url,
        "sl-scroll",
        "pagination = \"scroll\"\ntiebreaker_field = \"id\"",
        ReadMode::Scroll,
    )
    .await;
}

#[tokio::test]
async fn a_restart_rereads_at_most_one_batch_per_slice() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = shared_timestamps(&url, "sl-resume").await;
    let extra = format!(
        "slices = 3\n{}{}",
        by_id(BATCH),
        file_state(dir.path(), "sl-resume")
    );
    let mut committed = Vec::new();
    let mut lost: HashMap<usize, Vec<String>> = HashMap::new();
    {
        let mut source = open_source(2, &url, &index.name, &extra).await;
        for _ in 0..7 {
            let batch = source.poll_batch().await.unwrap();
            committed.extend(batch.messages.iter().map(doc_id));
            commit(&mut source, batch.ack.as_ref().unwrap()).await;
        }
        // One batch of each slice polled, "sent", never acknowledged; then the
        // process dies (no close).
        while lost.len() < 3 {
            let batch = source.poll_batch().await.unwrap();
            let ack = batch.ack.as_ref().unwrap();
            assert!(!lost.contains_key(&ack.slice()), "round-robin over slices");
            lost.insert(ack.slice(), batch.messages.iter().map(doc_id).collect());
        }
    }
    let state = stored_state(dir.path(), "sl-resume");
    assert_eq!(state["data"]["total_documents_fetched"], 7 * BATCH);

    let mut source = open_source(2, &url, &index.name, &extra).await;
    let again = drain(&mut source).await;
    source.close().await.unwrap();

    let first: HashSet<&String> = committed.iter().collect();
    let lost_ids: HashSet<&String> = lost.values().flatten().collect();
    assert!(
        again.iter().all(|id| !first.contains(id)),
        "a committed document was read again"
    );
    let reread: Vec<&String> = again.iter().filter(|id| lost_ids.contains(id)).collect();
    assert_eq!(
        reread.len(),
        lost_ids.len(),
        "exactly the unacknowledged batches again"
    );
    assert!(reread.len() <= 3 * BATCH);
    let mut all = committed.clone();
    all.extend(again);
    assert_exactly_once(&all, DOCS);
    let state = source.get_state().await.unwrap();
    assert_eq!(state.data.total_documents_fetched, DOCS as u64);
}

#[tokio::test]
async fn a_state_of_another_slicing_is_refused_naming_slices() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = shared_timestamps(&url, "sl-mismatch").await;
    let state = file_state(dir.path(), "sl-mismatch");
    let config = |slices: u32| {
        plugin_config(
            &url,
            &index.name,
            &format!("batch_size = {BATCH}\nslices = {slices}\ntiebreaker_field = \"id\"\n{state}"),
        )
    };
    let mut source = ElasticsearchSource::new(3, config(3));
    source.open().await.unwrap();
    let batch = source.poll_batch().await.unwrap();
    commit(&mut source, batch.ack.as_ref().unwrap()).await;
    source.close().await.unwrap();

    for slices in [2, 1] {
        let mut other = ElasticsearchSource::new(3, config(slices));
        match other.open().await {
            Err(ConnectorError::InvalidConfig { key, reason }) => {
                assert_eq!(key, "plugin_config.slices");
                assert!(reason.contains("slices = 3"), "{reason}");
            }
            other => panic!("slices = {slices} over a slices = 3 state: {other:?}"),
        }
    }
    // The state is untouched: the same slicing resumes it.
    let mut source = ElasticsearchSource::new(3, config(3));
    source.open().await.unwrap();
    let rest = drain(&mut source).await;
    assert_eq!(rest.len(), DOCS - batch.len());
    // A reset state may be read with another slicing.
    source.reset_state().await.unwrap();
    source.close().await.unwrap();
    let mut other = ElasticsearchSource::new(3, config(2));
    other.open().await.unwrap();
    assert_exactly_once(&drain(&mut other).await, DOCS);
    other.close().await.unwrap();
}

#[tokio::test]
async fn a_single_reader_state_is_refused_by_a_sliced_source() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = shared_timestamps(&url, "sl-single").await;
    let state = file_state(dir.path(), "sl-single");
    let extra = by_id(BATCH) + &state;
    let mut source = open_source(4, &url, &index.name, &extra).await;
    let batch = source.poll_batch().await.unwrap();
    commit(&mut source, batch.ack.as_ref().unwrap()).await;
    source.close().await.unwrap();
    let mut sliced = ElasticsearchSource::new(
        4,
        plugin_config(&url, &index.name, &format!("slices = 2\n{extra}")),
    );
    match sliced.open().await {
        Err(ConnectorError::InvalidConfig { key, .. }) => assert_eq!(key, "plugin_config.slices"),
        other => panic!("slices = 2 over a single-reader state: {other:?}"),
    }
}

#[test]
fn slices_that_cannot_slice_are_refused_naming_the_key() {
    let base = "[plugin_config]\nurl = \"http://localhost:9200\"\nindex = \"logs\"\n";
    for extra in [
        "slices = 0\n",
        "slices = 1000\n",
        "slices = 2\npagination = \"cursor\"\ntiebreaker_field = \"id\"\n",
        "slices = 2\nslice = { id = 0, max = 2 }\n",
    ] {
        match ConnectorConfig::from_toml(&format!("{base}{extra}")) {
            Err(ConnectorError::InvalidConfig { key, .. }) => {
                assert_eq!(key, "plugin_config.slices", "{extra}")
            }
            other => panic!("{extra}: {other:?}"),
        }
    }
    let ok = ConnectorConfig::from_toml(&format!("{base}slices = 4\n")).unwrap();
    assert_eq!(ok.plugin_config.slices, 4);
    let default = ConnectorConfig::from_toml(base).unwrap();
    assert_eq!(default.plugin_config.slices, 1);
}

/// A slice must hold the same documents in every point in time: each pass opens a
/// new one, and a document that moved to another slice would be delivered again
/// by it (or skipped, when that slice's cursor is already past it). Elasticsearch
/// slices a point in time by Lucene document id unless told a field, and merges
/// renumber documents: two passes with a force-merge and new documents between.
#[tokio::test]
async fn slices_keep_their_documents_across_points_in_time() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::standard(&url, "slices-stable").await;
    let minute = |i: usize| json!(format!("2024-01-15T10:{:02}:{:02}Z", i / 60 % 60, i % 60));
    // Several segments: five loads, each refreshed.
    for part in 0..5 {
        index.load(&docs(200, part * 200, minute)).await;
    }
    let extra = format!(
        "slices = 2\nbatch_size = 100\n{}",
        file_state(dir.path(), "stable")
    );
    let mut config = plugin_config(&url, &index.name, &extra);
    tiebreaker_where_needed(&mut config).await;
    let mut source = ElasticsearchSource::new(1, config);
    source.open().await.unwrap();
    let mut delivered = drain(&mut source).await;
    // New documents after every cursor, then one segment: document ids change.
    index.load(&docs(500, 1000, minute)).await;
    index.post_action("_forcemerge?max_num_segments=1").await;
    index.refresh().await;
    delivered.extend(drain(&mut source).await);
    source.close().await.unwrap();
    assert_exactly_once(&delivered, 1500);
}
