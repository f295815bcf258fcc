//! `tiebreaker_field` inside a point in time, against the server of `ES_URL`, across
//! many pages and a restart.
//!
//! Inside a point in time, Elasticsearch >= 7.12 appends an implicit `_shard_doc`
//! value to every hit's `sort` when the request's sort does not end in `_shard_doc`
//! (elastic/elasticsearch#68833): sorted on `[timestamp, id]`, hits carry three sort
//! values. OpenSearch does not. The test asks the server what it is and checks that
//! it behaves as its version says, so it proves something on every line.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use connector::{ReadMode, ServerInfo};
use es_query::Flavor;
use serde_json::{Value, json};

const DOCS: usize = 2_500;

/// Whether this server appends the implicit `_shard_doc` inside a point in time.
fn appends_implicit_shard_doc(server: &ServerInfo) -> bool {
    matches!(server.flavor, Flavor::Elasticsearch { major, minor } if (major, minor) >= (7, 12))
}

/// How many sort values the first hit of a point-in-time search sorted on
/// `[@timestamp, id]` carries, asked directly of the server.
async fn sort_values_in_a_pit(index: &TestIndex, server: &ServerInfo) -> usize {
    let http = index.http();
    let (open, id_key, close) = if server.flavor.is_opensearch() {
        ("_search/point_in_time", "pit_id", "/_search/point_in_time")
    } else {
        ("_pit", "id", "/_pit")
    };
    let opened: Value = http
        .post(format!("{}/{}/{open}?keep_alive=1m", index.url, index.name))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pit = opened[id_key]
        .as_str()
        .unwrap_or_else(|| panic!("{opened}"));
    let page = post_json(
        http,
        format!("{}/_search", index.url),
        &json!({
            "size": 1,
            "pit": {"id": pit, "keep_alive": "1m"},
            "sort": [{"@timestamp": {"order": "asc"}}, {"id": {"order": "asc"}}],
        }),
    )
    .await;
    let close_body = if server.flavor.is_opensearch() {
        json!({"pit_id": [pit]})
    } else {
        json!({"id": pit})
    };
    http.delete(format!("{}{close}", index.url))
        .json(&close_body)
        .send()
        .await
        .unwrap();
    page["hits"]["hits"][0]["sort"]
        .as_array()
        .unwrap_or_else(|| panic!("no sort values: {page}"))
        .len()
}

#[tokio::test]
async fn tiebreaker_field_in_a_point_in_time_pages_and_resumes_exactly_once() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 7 documents per timestamp: pages end inside shared-timestamp groups.
    let index = TestIndex::holding(&url, "pit-tiebreaker", DOCS, |i| {
        let second = i / 7;
        json!(format!(
            "2024-01-15T10:{:02}:{:02}Z",
            second / 60,
            second % 60
        ))
    })
    .await;
    let extra = format!(
        "{}pagination = \"search_after\"\n{}",
        by_id(100),
        file_state(dir.path(), "pit-tiebreaker")
    );

    let mut source = open_source(5, &url, &index.name, &extra).await;
    assert_eq!(source.read_mode(), Some(ReadMode::PointInTime));
    let server = source.server().unwrap().clone();
    let expected = if appends_implicit_shard_doc(&server) {
        3
    } else {
        2
    };
    assert_eq!(
        sort_values_in_a_pit(&index, &server).await,
        expected,
        "sort values per hit on {:?} {}",
        server.flavor,
        server.version
    );

    let mut delivered = Vec::new();
    for _ in 0..12 {
        let batch = source.poll_batch().await.unwrap();
        assert_eq!(batch.messages.len(), 100);
        delivered.extend(batch.messages.iter().map(doc_id));
        commit(&mut source, batch.ack.as_ref().unwrap()).await;
    }
    // The process dies here (no close).
    drop(source);

    let path = dir.path().join("pit-tiebreaker.json");
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let sort = stored["data"]["cursor"]["sort"].as_array_mut().unwrap();
    assert_eq!(
        sort.len(),
        2,
        "the stored cursor holds [timestamp, id]: {sort:?}"
    );
    assert_eq!(sort[1], json!(delivered[1199]));
    // What a connector before the fix stored on Elasticsearch: the implicit
    // `_shard_doc` value as a third element. It must still resume.
    sort.push(json!(1199));
    std::fs::write(&path, serde_json::to_vec_pretty(&stored).unwrap()).unwrap();

    let mut source = open_source(5, &url, &index.name, &extra).await;
    delivered.extend(drain(&mut source).await);
    source.close().await.unwrap();
    assert_exactly_once(&delivered, DOCS);
    let mut in_order = delivered.clone();
    in_order.sort();
    assert_eq!(delivered, in_order, "delivered in [timestamp, id] order");
}
