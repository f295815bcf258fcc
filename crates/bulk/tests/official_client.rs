//! The bulk processor through the official `elasticsearch` client
//! (`ElasticsearchTransport`, `client.bulk_processor()`), against the real test
//! cluster (`ES_URL`: Elasticsearch or OpenSearch, `cargo xtask test` runs it on each).
#![cfg(feature = "elasticsearch")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use bulk::{
    Backoff, BulkProcessorExt, BulkRequest, Delivery, ElasticsearchTransport, FailureKind,
    Transport,
};
use bytes::Bytes;
use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport as EsTransport;
use serde_json::json;

fn client(url: &str) -> Elasticsearch {
    Elasticsearch::new(EsTransport::single_node(url).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_indexes_through_the_processor() {
    let Some(url) = common::es_url() else { return };
    let index = common::TestIndex::create(
        &url,
        "official",
        json!({"mappings": {"properties": {"n": {"type": "integer"}}}}),
    )
    .await;
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let processor = client(&url)
        .bulk_processor()
        .name("official-client-test")
        .workers(2)
        .bulk_actions(100)
        .on_failure(move |f| sink.lock().unwrap().push(f))
        .build()
        .unwrap();
    for i in 0..500 {
        processor.add(common::doc(&index.name, i)).await.unwrap();
    }
    // Refused by the mapping: an item failure with the item's own status.
    processor
        .add(
            BulkRequest::index(&index.name)
                .id("bad")
                .doc(&json!({"n": "not a number"})),
        )
        .await
        .unwrap();
    processor.flush().await.unwrap();
    let stats = processor.stats();
    processor.close().await.unwrap();

    assert_eq!(stats.succeeded, 500, "{stats:?}");
    assert_eq!(stats.indexed, 500, "{stats:?}");
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert!(stats.bulk_calls >= 6, "{stats:?}");
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].kind, FailureKind::Item { status: 400 });
    assert_eq!(index.count().await, 500);
    index.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_any_status_come_back_as_they_are() {
    let Some(url) = common::es_url() else { return };
    let transport = ElasticsearchTransport::new(client(&url));
    // Not NDJSON: the server refuses the whole request.
    let answer = transport
        .bulk(Bytes::from_static(b"this is not json\n"))
        .await
        .unwrap();
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert!(body["error"]["type"].is_string(), "{body}");
}

#[tokio::test]
async fn a_refused_connection_is_not_sent() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let transport = ElasticsearchTransport::new(client(&format!("http://{closed}")));
    let e = transport
        .bulk(Bytes::from_static(b"{\"index\":{\"_index\":\"x\"}}\n{}\n"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.delivery(), Delivery::NotSent, "{e}");
    assert!(e.message().contains("cannot connect"), "{e}");

    // The processor sends a request that was not sent again, even one that
    // could not be resent after a lost answer, until the backoff gives up.
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let processor = client(&format!("http://{closed}"))
        .bulk_processor()
        .backoff(Backoff {
            initial: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(2),
            max_retries: 2,
            ..Backoff::default()
        })
        .on_failure(move |f| sink.lock().unwrap().push(f))
        .build()
        .unwrap();
    processor
        .add(BulkRequest::index("x").doc(&json!({"no": "id"})))
        .await
        .unwrap();
    processor.flush().await.unwrap();
    let stats = processor.stats();
    processor.close().await.unwrap();
    assert_eq!(stats.bulk_calls, 3, "{stats:?}");
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].kind, FailureKind::GaveUp, "{:?}", failures[0]);
}
