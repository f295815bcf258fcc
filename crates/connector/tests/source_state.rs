//! The source's state against the test server (`ES_URL`): resume after a crash,
//! the acknowledgement watermark, conflicts, the documented state API.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use connector::{ConnectorError, ElasticsearchSource};
use serde_json::json;

/// A fresh index of `n` documents stamped by `ts`, and the `[plugin_config]`
/// lines of a source reading it 100 at a time by `id`, its state `state_id` a
/// file in the temporary directory returned.
async fn with_file_state(
    url: &str,
    state_id: &str,
    n: usize,
    ts: impl Fn(usize) -> serde_json::Value,
) -> (tempfile::TempDir, TestIndex, String) {
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::holding(url, state_id, n, ts).await;
    let extra = by_id(100) + &file_state(dir.path(), state_id);
    (dir, index, extra)
}

/// Every document at one instant.
fn one_instant(_: usize) -> serde_json::Value {
    json!("2024-01-15T10:30:00Z")
}

/// Opens `source`, polls and commits `batches` batches, polls one more that is
/// "sent" but never acknowledged, then drops it (the process dies, no close).
/// Returns every delivered `_id`, in order.
async fn commit_then_crash(mut source: ElasticsearchSource, batches: usize) -> Vec<String> {
    let mut delivered = Vec::new();
    source.open().await.unwrap();
    for _ in 0..batches {
        let batch = source.poll_batch().await.unwrap();
        delivered.extend(batch.messages.iter().map(doc_id));
        commit(&mut source, batch.ack.as_ref().unwrap()).await;
    }
    let lost = source.poll_batch().await.unwrap();
    delivered.extend(lost.messages.iter().map(doc_id));
    delivered
}

#[tokio::test]
async fn a_restart_rereads_at_most_the_unacknowledged_batch() {
    let Some(url) = es_url() else { return };
    let (dir, index, extra) = with_file_state(&url, "resume", 1000, cycling_seconds(5)).await;
    let mut delivered = commit_then_crash(
        ElasticsearchSource::new(7, plugin_config(&url, &index.name, &extra)),
        3,
    )
    .await;
    let stored = stored_state(dir.path(), "resume");
    assert_eq!(stored["data"]["total_documents_fetched"], 300);
    assert_eq!(stored["data"]["last_document_id"], json!(delivered[299]));
    assert!(stored["data"]["cursor"]["sort"].is_array(), "{stored}");
    assert_eq!(stored["metadata"]["connector_type"], "elasticsearch_source");
    assert_eq!(stored["metadata"]["connector_id"], 7);

    let mut source = open_source(7, &url, &index.name, &extra).await;
    delivered.extend(drain(&mut source).await);
    source.close().await.unwrap();
    assert_unacknowledged_batch_again(&delivered, 1000, 100);
    let state = source.get_state().await.unwrap();
    assert_eq!(state.data.total_documents_fetched, 1000);
}

#[tokio::test]
async fn the_documented_poll_commits_the_previous_batch_and_close_saves() {
    let Some(url) = es_url() else { return };
    let (_dir, index, extra) = with_file_state(&url, "poll", 250, one_instant).await;
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let mut seen = 0;
    for _ in 0..3 {
        seen += source.poll().await.unwrap().len();
    }
    assert_eq!(seen, 250);
    source.close().await.unwrap();
    // The third batch was returned but not yet confirmed by another poll().
    let mut again = ElasticsearchSource::new(1, plugin_config(&url, &index.name, &extra));
    let state = again.load_state().await.unwrap();
    assert_eq!(state.data.total_documents_fetched, 200);
    assert_eq!(state.data.poll_count, 3);
    assert!(again.get_state_manager().is_some());
    let stats = again
        .get_state_manager()
        .unwrap()
        .get_state_stats()
        .await
        .unwrap();
    assert_eq!(stats.total_states, 1);
    assert_eq!(
        again
            .get_state_manager()
            .unwrap()
            .cleanup_old_states(30)
            .await
            .unwrap(),
        0
    );
    let exported = again.export_state().await.unwrap();
    again.reset_state().await.unwrap();
    assert_eq!(
        again
            .get_state()
            .await
            .unwrap()
            .data
            .total_documents_fetched,
        0
    );
    again.import_state(exported).await.unwrap();
    again.open().await.unwrap();
    let rest = drain(&mut again).await;
    assert_eq!(rest.len(), 50, "import restored the cursor");
}

#[tokio::test]
async fn two_instances_with_one_state_id_cannot_both_advance_it() {
    let Some(url) = es_url() else { return };
    let (dir, index, extra) = with_file_state(&url, "shared", 300, one_instant).await;
    let mut a = open_source(1, &url, &index.name, &extra).await;
    let mut b = open_source(2, &url, &index.name, &extra).await;
    let batch_a = a.poll_batch().await.unwrap();
    commit(&mut a, batch_a.ack.as_ref().unwrap()).await;
    let batch_b = b.poll_batch().await.unwrap();
    let err = b.commit(batch_b.ack.as_ref().unwrap()).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(
        err.to_string().contains("shared"),
        "names the state id: {err}"
    );
    assert!(matches!(err, ConnectorError::State(_)));
    // The run loop stops on it too.
    let mut out = connector::FileOutput::open(dir.path().join("b.jsonl")).unwrap();
    let err = run_once(&mut b, &mut out).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
}

#[tokio::test]
async fn the_run_loop_delivers_everything_and_stops_once_caught_up() {
    let Some(url) = es_url() else { return };
    let (dir, index, extra) = with_file_state(&url, "runloop", 450, cycling_seconds(9)).await;
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let path = dir.path().join("out.jsonl");
    let mut out = connector::FileOutput::open(&path).unwrap();
    let summary = run_once(&mut source, &mut out).await.unwrap();
    source.close().await.unwrap();
    assert_eq!(summary.documents, 450);
    assert_eq!(summary.batches, 5);
    assert!(summary.cursor.is_some());
    let lines = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["headers"]["es_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_exactly_once(&ids, 450);
}

/// Without `tiebreaker_field` the order is `_shard_doc`, which means nothing in the
/// next point in time: a restart resumes at the start of the cursor's timestamp. The
/// ids committed at that timestamp are stored with the state, so neither a crash in
/// the middle of one big timestamp group nor a restart after catching up delivers
/// them again.
#[tokio::test]
async fn a_restart_inside_a_shared_timestamp_rereads_at_most_one_batch() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 1500 documents: 1200 at one instant, then 300 at another.
    let index = TestIndex::holding(&url, "group-restart", 1500, |i| {
        json!(if i < 1200 {
            "2024-03-01T00:00:00Z"
        } else {
            "2024-03-01T00:00:01Z"
        })
    })
    .await;
    if !shard_doc_or_refused(&url, &index.name).await {
        return;
    }
    let extra = format!("batch_size = 100\n{}", file_state(dir.path(), "group"));
    let mut delivered = commit_then_crash(
        ElasticsearchSource::new(1, plugin_config(&url, &index.name, &extra)),
        5,
    )
    .await;
    let stored = stored_state(dir.path(), "group");
    assert_eq!(
        remembered(&stored["data"]["seen_at_cursor"][0]),
        500,
        "the ids committed at the cursor's timestamp are stored"
    );
    {
        let mut source = open_source(1, &url, &index.name, &extra).await;
        delivered.extend(drain(&mut source).await);
        source.close().await.unwrap();
    }
    assert_unacknowledged_batch_again(&delivered, 1500, 100);

    // Caught up; a restart finds nothing new, then only what is added.
    let mut source = open_source(1, &url, &index.name, &extra).await;
    assert!(source.poll_batch().await.unwrap().is_empty());
    index
        .load(&docs(10, 1500, |_| json!("2024-03-01T00:00:01Z")))
        .await;
    let again = drain(&mut source).await;
    source.close().await.unwrap();
    assert_eq!(again.len(), 10, "only the new documents: {again:?}");
}

/// After a crash that lost one unacknowledged batch of `batch` documents: every one
/// of `documents` documents delivered, and exactly that batch twice.
fn assert_unacknowledged_batch_again(delivered: &[String], documents: usize, batch: usize) {
    let distinct: std::collections::HashSet<_> = delivered.iter().collect();
    assert_eq!(distinct.len(), documents, "every document delivered");
    assert_eq!(
        delivered.len(),
        documents + batch,
        "exactly the unacknowledged batch again"
    );
}

/// How many documents a `seen_at_cursor` entry remembers: 8-byte fingerprints in
/// `fp64:` + base64 without padding (or, as earlier releases wrote it, a list of
/// hex ids).
fn remembered(entry: &serde_json::Value) -> usize {
    match entry {
        serde_json::Value::String(text) => {
            text.strip_prefix("fp64:").expect("the compact form").len() * 6 / 8 / 8
        }
        serde_json::Value::Array(ids) => ids.len(),
        other => panic!("not a seen_at_cursor entry: {other}"),
    }
}

/// Hardening item 8: inside one large group of documents sharing a timestamp,
/// every commit stores the ids committed at that timestamp. Each commit writes
/// them in about 10.7 bytes a document (earlier, 32-digit hex ids in the
/// pretty-printed file: about 42), so the state file after each commit stays
/// under 11 bytes per remembered document plus the rest of the state.
#[tokio::test]
async fn a_commit_inside_a_large_shared_timestamp_writes_a_bounded_state() {
    let Some(url) = es_url() else { return };
    const DOCS: usize = 20_000;
    const BATCH: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let index =
        TestIndex::holding(&url, "group-bytes", DOCS, |_| json!("2024-03-01T00:00:00Z")).await;
    if !shard_doc_or_refused(&url, &index.name).await {
        return;
    }
    let extra = format!("batch_size = {BATCH}\n{}", file_state(dir.path(), "bytes"));
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let mut sizes = Vec::new();
    loop {
        let batch = source.poll_batch().await.unwrap();
        let Some(ack) = batch.ack.clone() else { break };
        commit(&mut source, &ack).await;
        let bytes = std::fs::read(dir.path().join("bytes.json")).unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        sizes.push((
            remembered(&stored["data"]["seen_at_cursor"][0]),
            bytes.len(),
        ));
    }
    source.close().await.unwrap();
    println!(
        "state bytes per commit inside one shared timestamp (batch {BATCH}): {} in all, \
         largest {}; {}",
        sizes.iter().map(|s| s.1).sum::<usize>(),
        sizes.iter().map(|s| s.1).max().unwrap_or(0),
        sizes
            .iter()
            .map(|(ids, bytes)| format!("{ids} ids: {bytes} B"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(sizes.len(), DOCS / BATCH, "one commit per batch");
    assert_eq!(sizes.last().map(|s| s.0), Some(DOCS), "every id remembered");
    // The state without the ids: the size at the first commit less its ids' share.
    let rest = sizes[0].1 - BATCH * 11;
    for (i, (remembered, bytes)) in sizes.iter().enumerate() {
        assert!(
            *bytes <= rest + 11 * remembered + 64,
            "commit {}: {bytes} bytes for {remembered} remembered ids (rest of the state: {rest})",
            i + 1
        );
    }
}
