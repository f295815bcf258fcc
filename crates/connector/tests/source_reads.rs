//! The source against the test server (`ES_URL`): no skipped document, every
//! timestamp type, incremental reads, contexts.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use connector::ReadMode;
use serde_json::json;

const SAME_TS: &str = "2024-01-15T10:30:00Z";

async fn shared_timestamp_exactly_once(pagination: &str, expected_mode: ReadMode) {
    let Some(url) = es_url() else { return };
    let index = TestIndex::holding(&url, "shared", 10_000, |_| json!(SAME_TS)).await;
    let extra = format!("{}pagination = \"{pagination}\"\n", by_id(100));
    let mut source = open_source(1, &url, &index.name, &extra).await;
    assert_eq!(source.read_mode(), Some(expected_mode));
    let ids = drain(&mut source).await;
    assert_exactly_once(&ids, 10_000);
    let state = source.get_state().await.unwrap();
    assert_eq!(state.data.total_documents_fetched, 10_000);
    assert_eq!(state.data.last_offset, 10_000);
    assert_eq!(state.data.processing_stats.successful_polls_count, 101);
    assert_eq!(state.data.processing_stats.empty_polls_count, 1);
    assert_eq!(state.data.last_document_id.as_deref(), Some("d009999"));
    assert_eq!(
        source.pit_id(),
        None,
        "the point in time is closed at the end of a pass"
    );
    assert_eq!(
        source.scroll_id(),
        None,
        "the scroll is cleared at the end of a pass"
    );
    source.close().await.unwrap();
}

#[tokio::test]
async fn ten_thousand_documents_with_one_timestamp_search_after() {
    shared_timestamp_exactly_once("search_after", ReadMode::PointInTime).await;
}

#[tokio::test]
async fn ten_thousand_documents_with_one_timestamp_scroll() {
    shared_timestamp_exactly_once("scroll", ReadMode::Scroll).await;
}

#[tokio::test]
async fn ten_thousand_documents_with_one_timestamp_cursor() {
    shared_timestamp_exactly_once("cursor", ReadMode::Plain).await;
}

#[tokio::test]
async fn shared_timestamps_without_tiebreaker_use_shard_doc_and_skip_nothing() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::holding(&url, "sharddoc", 1000, cycling_seconds(3)).await;
    if !shard_doc_or_refused(&url, &index.name).await {
        return;
    }
    let mut source = open_source(1, &url, &index.name, "batch_size = 70\n").await;
    let ids = drain(&mut source).await;
    assert_exactly_once(&ids, 1000);
    // A new pass opens a new point in time, re-reads the last timestamp's documents
    // (`_shard_doc` means nothing across points in time) and must not deliver them again.
    for _ in 0..2 {
        let again = source.poll_batch().await.unwrap();
        assert!(again.is_empty(), "{} delivered again", again.len());
    }
    index
        .load(&docs(10, 5000, |_| json!("2024-01-15T10:30:02Z")))
        .await;
    let ids = drain(&mut source).await;
    assert_exactly_once(&ids, 10);
}

/// An index whose `@timestamp` is a `kind` field, holding 250 documents stamped by `ts`.
async fn stamped(url: &str, kind: &str, ts: impl Fn(usize) -> serde_json::Value) -> TestIndex {
    let mapping = json!({"id": {"type": "keyword"}, "@timestamp": {"type": kind}});
    let index = TestIndex::create(url, kind, mapping).await;
    index.load(&docs(250, 0, ts)).await;
    index
}

#[tokio::test]
async fn epoch_millis_date_nanos_and_mixed_date_formats() {
    let Some(url) = es_url() else { return };
    // A `long` field of epoch milliseconds.
    let millis = stamped(&url, "long", |i| {
        json!(1_705_314_600_000_i64 + (i / 10) as i64)
    })
    .await;
    // date_nanos with sub-millisecond differences.
    let nanos = stamped(&url, "date_nanos", |i| {
        json!(format!("2024-01-15T10:30:00.000000{:03}Z", i / 2))
    })
    .await;
    // A `date` field holding RFC 3339 strings and epoch-millis numbers.
    let mixed = stamped(&url, "date", |i| {
        if i % 2 == 0 {
            json!(1_705_314_600_000_i64 + i as i64)
        } else {
            json!(format!("2024-01-15T10:30:00.{:03}Z", i))
        }
    })
    .await;
    for (index, kind) in [
        (&millis, "epoch_millis"),
        (&nanos, "date_nanos"),
        (&mixed, "date"),
    ] {
        let extra = format!("{}timestamp_type = \"{kind}\"\n", by_id(40));
        let mut source = open_source(1, &url, &index.name, &extra).await;
        let ids = drain(&mut source).await;
        assert_exactly_once(&ids, 250);
        if kind == "date" {
            let sorted = {
                let mut s = ids.clone();
                s.sort();
                s
            };
            assert_eq!(ids, sorted, "{kind}: read in timestamp order");
        }
    }
}

#[tokio::test]
async fn documents_without_the_timestamp_never_make_the_source_loop() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::standard(&url, "missing").await;
    let mut all = docs(120, 0, cycling_seconds(60));
    all.extend((0..30).map(|i| json!({"id": format!("m{i:03}"), "n": i})));
    index.load(&all).await;
    for (policy, expected) in [("skip", 120), ("first", 150)] {
        let extra = format!("{}missing_timestamp = \"{policy}\"\n", by_id(25));
        let mut source = open_source(1, &url, &index.name, &extra).await;
        let ids = drain(&mut source).await;
        assert_exactly_once(&ids, expected);
        // Caught up: polling again finds nothing, it does not re-read the undated ones.
        let again = source.poll_batch().await.unwrap();
        assert!(again.is_empty(), "{policy}: {} re-read", again.len());
    }
}

#[tokio::test]
async fn backfill_then_only_new_documents() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::holding(&url, "incr", 250, |i| {
        json!(format!("2024-01-15T10:{:02}:00Z", i % 60))
    })
    .await;
    let mut source = open_source(1, &url, &index.name, &by_id(100)).await;
    assert_exactly_once(&drain(&mut source).await, 250);
    assert!(source.poll_batch().await.unwrap().is_empty());
    // New documents, with later timestamps and one equal to the cursor's.
    let mut new = docs(49, 1000, |_| json!("2024-01-16T00:00:00Z"));
    new.push(json!({"id": "d000999", "@timestamp": "2024-01-15T10:59:00Z", "n": 999}));
    index.load(&new).await;
    let ids = drain(&mut source).await;
    assert_exactly_once(&ids, 50);
    assert!(ids.iter().all(|id| id.as_str() >= "d000999"), "{ids:?}");
    assert_eq!(
        source
            .get_state()
            .await
            .unwrap()
            .data
            .total_documents_fetched,
        300
    );
}

#[tokio::test]
async fn an_expired_point_in_time_resumes_from_the_cursor_without_loss() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::holding(&url, "expire", 500, cycling_seconds(7)).await;
    let shard_doc = shard_doc_or_refused(&url, &index.name).await;
    for tiebreaker in ["tiebreaker_field = \"id\"\n", ""] {
        if tiebreaker.is_empty() && !shard_doc {
            continue;
        }
        let extra = format!("batch_size = 100\n{tiebreaker}");
        let mut source = open_source(1, &url, &index.name, &extra).await;
        let mut ids = Vec::new();
        let first = source.poll_batch().await.unwrap();
        ids.extend(first.messages.iter().map(doc_id));
        commit(&mut source, first.ack.as_ref().unwrap()).await;
        // Close the point in time behind the source's back.
        let pit = source
            .pit_id()
            .cloned()
            .expect("a point in time is open mid-pass");
        let opensearch = source.server().unwrap().flavor.is_opensearch();
        index.close_pit(opensearch, pit.as_str()).await;
        ids.extend(drain(&mut source).await);
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 500, "{tiebreaker:?}: nothing lost");
        if !tiebreaker.is_empty() {
            assert_eq!(ids.len(), 500, "a field tiebreaker resumes exactly");
        }
    }
}

#[tokio::test]
async fn an_expired_scroll_resumes_from_the_cursor_without_loss() {
    let Some(url) = es_url() else { return };
    let index = TestIndex::holding(&url, "scrollexp", 300, |_| json!(SAME_TS)).await;
    let extra = by_id(100) + "pagination = \"scroll\"\n";
    let mut source = open_source(1, &url, &index.name, &extra).await;
    let first = source.poll_batch().await.unwrap();
    let mut ids: Vec<String> = first.messages.iter().map(doc_id).collect();
    commit(&mut source, first.ack.as_ref().unwrap()).await;
    let scroll = source
        .scroll_id()
        .cloned()
        .expect("a scroll is open mid-pass");
    let r = index
        .http()
        .delete(format!("{url}/_search/scroll"))
        .json(&json!({"scroll_id": [scroll.as_str()]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    ids.extend(drain(&mut source).await);
    assert_exactly_once(&ids, 300);
}
