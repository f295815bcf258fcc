//! The source built from the official `elasticsearch` client
//! (`ElasticsearchSource::with_official_client`) reading an index of the test
//! server (`ES_URL`: Elasticsearch or OpenSearch; `cargo xtask test` runs it on each).
#![cfg(feature = "elasticsearch")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use connector::{ConnectorError, ElasticsearchSource, ReadMode};
use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport;
use serde_json::json;

/// A URL nothing listens on: the configuration's `url`, which the source
/// built from the official client must not use.
fn closed_url() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    format!("http://{addr}")
}

async fn read_through_the_official_client(pagination: &str, expected: ReadMode) {
    let Some(url) = es_url() else { return };
    // Ten documents per timestamp: the tiebreaker keeps every one.
    let index = TestIndex::holding(&url, "official", 2000, |i| {
        json!(format!(
            "2024-01-15T10:{:02}:{:02}Z",
            i / 600,
            (i / 10) % 60
        ))
    })
    .await;
    let extra = format!("{}pagination = \"{pagination}\"\n", by_id(150));
    let config = plugin_config(&closed_url(), &index.name, &extra);
    let client = Elasticsearch::new(Transport::single_node(&url).unwrap());
    let mut source =
        ElasticsearchSource::with_official_client(1, client, config.validate().unwrap());
    source.open().await.unwrap();
    assert_eq!(source.read_mode(), Some(expected));
    let ids = drain(&mut source).await;
    assert_exactly_once(&ids, 2000);
    let state = source.get_state().await.unwrap();
    assert_eq!(state.data.total_documents_fetched, 2000);
    source.close().await.unwrap();
}

#[tokio::test]
async fn the_official_client_reads_an_index_in_a_point_in_time() {
    read_through_the_official_client("search_after", ReadMode::PointInTime).await;
}

#[tokio::test]
async fn the_official_client_reads_an_index_by_scroll() {
    read_through_the_official_client("scroll", ReadMode::Scroll).await;
}

#[tokio::test]
async fn an_unreachable_cluster_is_retryable_and_shows_no_credentials() {
    let config = plugin_config(&closed_url(), "logs", "tiebreaker_field = \"id\"\n");
    let node = closed_url().replace("http://", "http://elastic:hunter2@");
    let client = Elasticsearch::new(Transport::single_node(&node).unwrap());
    let mut source =
        ElasticsearchSource::with_official_client(1, client, config.validate().unwrap());
    let e = source.open().await.err().unwrap();
    assert!(matches!(e, ConnectorError::Unreachable { .. }), "{e:?}");
    assert!(e.is_retryable(), "{e}");
    let text = format!("{e} {e:?} {source:?}");
    assert!(!text.contains("hunter2"), "{text}");
}
