//! `backfill = true` against the test server (`ES_URL`): a source with no position
//! reads a point-in-time snapshot in index order, then hands over to the
//! incremental cursor at the snapshot's last document. Documents written during
//! the backfill are read once (after the hand-over) or are late (before it, found by
//! `late_window`); none is read twice, none lost; a crash resumes each slice where
//! it stood; an expired point in time starts the slice over.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use connector::{ElasticsearchSource, Message};
use serde_json::{Value, json};

const DOCS: usize = 1500;
const BATCH: usize = 100;
/// The documents' timestamps span this, ending an hour ago.
const SPAN_MS: i64 = 30 * 60 * 1000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `n` documents `{prefix}{i}` at `ts(i)` (epoch millis).
fn docs_at(prefix: &str, n: usize, ts: impl Fn(usize) -> i64) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("{prefix}{i:05}"), "@timestamp": ts(i), "n": i}))
        .collect()
}

/// An index of 3 primary shards holding [`DOCS`] documents `d…`, 50 sharing each
/// timestamp, spread over [`SPAN_MS`] ending an hour ago; its timestamps' start.
async fn snapshot_index(url: &str, tag: &str) -> (TestIndex, i64) {
    let name = unique_index(tag);
    let http = reqwest::Client::new();
    let create = http.put(format!("{url}/{name}")).json(&json!({
        "settings": {"number_of_shards": 3, "number_of_replicas": 0},
        "mappings": {"properties": {
            "id": {"type": "keyword"}, "@timestamp": {"type": "date"}, "n": {"type": "long"}
        }}
    }));
    succeeds(create, &format!("create {name}")).await;
    let index = TestIndex::adopt(url, name);
    let start = now_ms() - 3_600_000 - SPAN_MS;
    let step = SPAN_MS / (DOCS as i64 / 50);
    index
        .load(&docs_at("d", DOCS, |i| {
            start + (i % (DOCS / 50)) as i64 * step
        }))
        .await;
    (index, start)
}

fn ids(messages: &[Message]) -> Vec<String> {
    messages.iter().map(doc_id).collect()
}

/// How many times each id was delivered.
fn counts(ids: &[String]) -> HashMap<&str, usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    counts
}

/// The tiebreaker settings to run under on this server: a field always, and
/// `_shard_doc` where the server has it.
/// Where the server has no `_shard_doc`, asserts that backfill is refused naming
/// its key, and returns none.
async fn tiebreakers(url: &str, index: &str) -> Vec<&'static str> {
    if !shard_doc_or_refused(url, index).await {
        let config = plugin_config(url, index, "backfill = true\ntiebreaker_field = \"id\"\n");
        let error = ElasticsearchSource::check(&config)
            .await
            .expect_err("backfill without _shard_doc");
        assert!(
            error.to_string().contains("plugin_config.backfill"),
            "{error}"
        );
        return Vec::new();
    }
    vec!["tiebreaker_field = \"id\"\n", ""]
}

#[tokio::test]
async fn writes_during_a_backfill_are_read_once_after_the_hand_over_or_found_late() {
    let Some(url) = es_url() else { return };
    let (probe, _) = snapshot_index(&url, "bf-probe").await;
    let lines = tiebreakers(&url, &probe.name).await;
    drop(probe);
    for tiebreaker in lines {
        for (slices, late_window) in [(1, ""), (3, "late_window = \"2h\"\n")] {
            let what = format!("{tiebreaker:?} slices {slices} {late_window:?}");
            let (index, start) = snapshot_index(&url, "bf-writes").await;
            let dir = tempfile::tempdir().unwrap();
            let extra = format!(
                "batch_size = {BATCH}\nslices = {slices}\nbackfill = true\nsettle = \"0s\"\n\
                 {tiebreaker}{late_window}{}",
                file_state(dir.path(), "bf")
            );
            let mut source = open_source(1, &url, &index.name, &extra).await;
            let mut got = Vec::new();
            // Part of the backfill, committed.
            for _ in 0..4 {
                let batch = source.poll_batch().await.unwrap();
                let ack = batch.ack.clone().expect("the backfill has pages");
                assert!(ack.is_backfill(), "{what}: a backfill batch");
                got.extend(ids(&batch.messages));
                commit(&mut source, &ack).await;
            }
            let state = stored_state(dir.path(), "bf");
            let upper = state["data"]["backfill"]["upper"]["sort"].clone();
            assert!(upper.is_array(), "{what}: {state}");
            assert!(
                state["data"].get("cursor").is_none_or(Value::is_null),
                "{what}: {state}"
            );
            let upper_ts = upper[0].as_i64().unwrap();
            // Written during the backfill: after the hand-over (a later timestamp, and
            // the bound's own timestamp) and before it (late).
            let after = docs_at("n", 40, |i| {
                if i % 2 == 0 {
                    upper_ts
                } else {
                    upper_ts + 1000 * (i as i64 + 1)
                }
            });
            let late = docs_at("l", 30, |i| start + 60_000 + i as i64);
            index.load(&after).await;
            index.load(&late).await;
            let mut backfill_docs = got.len();
            for _ in 0..10_000 {
                let batch = source.poll_batch().await.unwrap();
                let Some(ack) = batch.ack.clone() else { break };
                if ack.is_backfill() {
                    backfill_docs += batch.len();
                }
                got.extend(ids(&batch.messages));
                commit(&mut source, &ack).await;
            }
            // The second pass (late_window looks once every slice is caught up).
            got.extend(drain(&mut source).await);
            let counts = counts(&got);
            let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
            assert!(twice.is_empty(), "{what}: delivered twice: {twice:?}");
            for doc in docs_at("d", DOCS, |_| 0).iter().chain(&after) {
                let id = doc["id"].as_str().unwrap();
                assert!(counts.contains_key(id), "{what}: {id} was never delivered");
            }
            let late_found = late
                .iter()
                .filter(|d| counts.contains_key(d["id"].as_str().unwrap()))
                .count();
            if late_window.is_empty() {
                // Behind the hand-over, as behind any cursor: only late_window finds them.
                assert_eq!(late_found, 0, "{what}");
            } else {
                assert_eq!(late_found, late.len(), "{what}: late_window finds them all");
            }
            assert!(
                (DOCS - 50..=DOCS).contains(&backfill_docs),
                "{what}: the snapshot was read by the backfill ({backfill_docs})"
            );
            let state = stored_state(dir.path(), "bf");
            assert_eq!(state["data"]["backfill"]["done"], true, "{what}: {state}");
            assert_eq!(
                state["data"]["backfill"]["documents"].as_u64(),
                Some(backfill_docs as u64),
                "{what}"
            );
            let cursors: Vec<Value> = if slices == 1 {
                vec![state["data"]["cursor"].clone()]
            } else {
                state["data"]["slice_cursors"].as_array().cloned().unwrap()
            };
            assert!(
                cursors
                    .iter()
                    .all(|c| c["sort"][0].as_i64().is_some_and(|ts| ts >= upper_ts)),
                "{what}: every slice reads on from the hand-over: {state}"
            );
            source.close().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_crashed_backfill_resumes_each_slice_where_it_stood() {
    let Some(url) = es_url() else { return };
    let (index, _) = snapshot_index(&url, "bf-crash").await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}slices = 2\nbackfill = true\nsettle = \"0s\"\n{}",
        by_id(BATCH),
        file_state(dir.path(), "bfc")
    );
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let batch = source.poll_batch().await.unwrap();
        got.extend(ids(&batch.messages));
        commit(&mut source, batch.ack.as_ref().unwrap()).await;
    }
    // Polled, never committed: delivered again after the restart.
    let lost = source.poll_batch().await.unwrap();
    let uncommitted: BTreeSet<String> = ids(&lost.messages).into_iter().collect();
    got.extend(uncommitted.iter().cloned());
    drop(source); // a crash: no close
    let state = stored_state(dir.path(), "bfc");
    let positions = state["data"]["backfill"]["slices"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(positions.len(), 2, "{state}");
    assert!(
        positions.iter().all(|p| p["after"].is_array()),
        "both slices have a position: {state}"
    );
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let mut after_restart = drain(&mut source).await;
    got.append(&mut after_restart);
    let counts = counts(&got);
    assert_eq!(counts.len(), DOCS, "every document delivered");
    for (id, n) in &counts {
        if *n > 1 {
            assert!(
                uncommitted.contains(*id) && *n == 2,
                "{id} delivered {n} times, not from the uncommitted batch"
            );
        }
    }
    assert_eq!(got.len(), DOCS + uncommitted.len());
    assert!(
        source.committed_cursor().is_some(),
        "after the hand-over the source reports where it stands"
    );
    source.close().await.unwrap();
}

#[tokio::test]
async fn an_expired_backfill_point_in_time_starts_its_slice_over_without_loss() {
    let Some(url) = es_url() else { return };
    let (index, _) = snapshot_index(&url, "bf-expire").await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}backfill = true\nsettle = \"0s\"\n{}",
        by_id(BATCH),
        file_state(dir.path(), "bfe")
    );
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let batch = source.poll_batch().await.unwrap();
        got.extend(ids(&batch.messages));
        commit(&mut source, batch.ack.as_ref().unwrap()).await;
    }
    let state = stored_state(dir.path(), "bfe");
    let pit = state["data"]["backfill"]["slices"][0]["pit"]
        .as_str()
        .unwrap()
        .to_owned();
    let opensearch = source.server().unwrap().flavor.is_opensearch();
    drop(source);
    index.close_pit(opensearch, &pit).await;
    // Written since: the new point in time holds them, yet they sort after the
    // hand-over, so only the incremental read may deliver them.
    let upper_ts = state["data"]["backfill"]["upper"]["sort"][0]
        .as_i64()
        .unwrap();
    let after = docs_at("n", 20, |i| upper_ts + 1 + i as i64);
    index.load(&after).await;
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let again = drain(&mut source).await;
    let all = [got.clone(), again.clone()].concat();
    let counts = counts(&all);
    for doc in &after {
        let id = doc["id"].as_str().unwrap();
        assert_eq!(counts.get(id), Some(&1), "{id}: once, after the hand-over");
    }
    assert_eq!(counts.len(), DOCS + after.len(), "nothing lost");
    // The share starts over: what was delivered before comes once more, no more.
    assert_eq!(
        again.len(),
        DOCS + after.len(),
        "the whole share read again"
    );
    assert!(counts.values().all(|n| *n <= 2));
    let state = stored_state(dir.path(), "bfe");
    assert_eq!(state["data"]["backfill"]["done"], true, "{state}");
    source.close().await.unwrap();
}

#[tokio::test]
async fn a_source_with_a_position_does_not_backfill_and_a_backfill_keeps_its_slices() {
    let Some(url) = es_url() else { return };
    let (index, _) = snapshot_index(&url, "bf-pos").await;
    let dir = tempfile::tempdir().unwrap();
    let state = file_state(dir.path(), "bfp");
    // A first read without backfill leaves a cursor.
    let mut source = open_source(1, &url, &index.name, &format!("{}{state}", by_id(500))).await;
    let batch = source.poll_batch().await.unwrap();
    commit(&mut source, batch.ack.as_ref().unwrap()).await;
    source.close().await.unwrap();
    // With backfill on, it reads on from there, sorted.
    let extra = format!("{}backfill = true\n{state}", by_id(500));
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let batch = source.poll_batch().await.unwrap();
    assert!(!batch.ack.as_ref().unwrap().is_backfill());
    commit(&mut source, batch.ack.as_ref().unwrap()).await;
    let rest = drain(&mut source).await;
    assert_eq!(rest.len() + batch.len() + 500, DOCS);
    source.close().await.unwrap();

    // A backfill in progress refuses another slicing, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let state = file_state(dir.path(), "bfs");
    let extra = format!("{}backfill = true\nslices = 2\n{state}", by_id(100));
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let batch = source.poll_batch().await.unwrap();
    commit(&mut source, batch.ack.as_ref().unwrap()).await;
    drop(source);
    let mut other = ElasticsearchSource::new(
        1,
        plugin_config(
            &url,
            &index.name,
            &format!("{}backfill = true\nslices = 3\n{state}", by_id(100)),
        ),
    );
    let error = other
        .open()
        .await
        .expect_err("another slicing mid-backfill");
    let text = error.to_string();
    assert!(
        text.contains("plugin_config.slices") && text.contains("slices = 2"),
        "{text}"
    );
}

#[test]
fn backfill_needs_a_point_in_time_and_says_so() {
    let text = "[plugin_config]\nurl = \"http://127.0.0.1:9\"\nindex = \"logs\"\n\
                backfill = true\npagination = \"scroll\"\ntiebreaker_field = \"id\"\n";
    let error = connector::ConnectorConfig::from_toml(text).expect_err("backfill with scroll");
    let text = error.to_string();
    assert!(
        text.contains("plugin_config.backfill") && text.contains("search_after"),
        "{text}"
    );
}
