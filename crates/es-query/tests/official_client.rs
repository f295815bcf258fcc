//! This crate's requests run through the official `elasticsearch` client
//! (`Request::send`) against the real test cluster (`ES_URL`: Elasticsearch or
//! OpenSearch; `cargo xtask test` runs it on each): a whole read inside a point
//! in time, which on OpenSearch is `/_search/point_in_time`, a path the client
//! has no typed API for.
#![cfg(feature = "elasticsearch")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport;
use es_query::{
    Cursor, Flavor, Method, PitId, QueryConfig, Request, SearchPage, parse_close, parse_count,
};
use serde_json::json;

/// `ES_URL`, or `None` (one line saying so) when unset; a failure when
/// `XTASK_REQUIRE_SERVICES=1` demands it.
fn es_url() -> Option<String> {
    match std::env::var("ES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if std::env::var("XTASK_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("ES_URL is not set, and XTASK_REQUIRE_SERVICES=1 requires this test to run")
        }
        _ => {
            println!("ES_URL not set: the official client test of es-query was not run");
            None
        }
    }
}

fn raw(method: Method, path: &str, body: Option<serde_json::Value>) -> Request {
    Request {
        method,
        path: path.to_owned(),
        query: Vec::new(),
        body,
    }
}

#[tokio::test]
async fn a_point_in_time_read_runs_through_the_official_client() {
    let Some(url) = es_url() else { return };
    let client = Elasticsearch::new(Transport::single_node(&url).unwrap());

    let root = raw(Method::Get, "/", None)
        .send(&client)
        .await
        .unwrap_or_else(|e| panic!("ES_URL={url} is set but the server does not answer: {e}"));
    assert_eq!(root.status, 200);
    let flavor = Flavor::from_root_response(&root.body).unwrap();
    assert!(flavor.supports_pit(), "{flavor}");

    // 25 documents, five per timestamp, written with the client's own bulk API.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let index = format!("es-query-official-{nanos:x}");
    let created = client
        .indices()
        .create(elasticsearch::indices::IndicesCreateParts::Index(&index))
        .body(json!({"mappings": {"properties": {
            "@timestamp": {"type": "date"}, "event_id": {"type": "keyword"}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status_code().as_u16(), 200);
    let mut body: Vec<elasticsearch::BulkOperation<serde_json::Value>> = Vec::new();
    for i in 0..25 {
        let doc = json!({"@timestamp": 1_700_000_000_000_i64 + (i / 5) * 1000, "event_id": format!("e{i:02}")});
        body.push(
            elasticsearch::BulkOperation::index(doc)
                .id(i.to_string())
                .into(),
        );
    }
    let written = client
        .bulk(elasticsearch::BulkParts::Index(&index))
        .refresh(elasticsearch::params::Refresh::True)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status_code().as_u16(), 200);

    let spec = QueryConfig::new(&index)
        .with_tiebreaker_field("event_id")
        .with_batch_size(10)
        .build(flavor)
        .unwrap();
    let count = spec.count(None).unwrap().send(&client).await.unwrap();
    assert_eq!(parse_count(&count.body).unwrap(), 25);

    let keep_alive = Duration::from_secs(60);
    let open = spec.open_pit(keep_alive).unwrap();
    let expected_path = if flavor.is_opensearch() {
        format!("/{index}/_search/point_in_time")
    } else {
        format!("/{index}/_pit")
    };
    assert_eq!(open.path, expected_path);
    let opened = open.send(&client).await.unwrap();
    assert!(opened.is_success(), "{opened:?}");
    let mut pit = PitId::from_open_response(&opened.body).unwrap();

    let mut ids = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let request = spec
            .search_after_page(cursor.as_ref(), Some((&pit, keep_alive)))
            .unwrap();
        let answer = request.send(&client).await.unwrap();
        let page = SearchPage::from_response(answer.status, &answer.body).unwrap();
        if let Some(newer) = page.pit_id.clone() {
            pit = newer;
        }
        if page.hits.is_empty() {
            break;
        }
        pages += 1;
        cursor = page.last_cursor();
        ids.extend(page.hits.iter().map(|h| h.id.clone()));
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);

    let close = spec.close_pit(&pit).unwrap();
    if flavor.is_opensearch() {
        assert_eq!(close.path, "/_search/point_in_time");
    }
    let closed = close.send(&client).await.unwrap();
    assert!(closed.is_success(), "{closed:?}");
    assert_eq!(parse_close(&closed.body).unwrap(), 1);

    let deleted = raw(Method::Delete, &format!("/{index}"), None)
        .send(&client)
        .await
        .unwrap();
    assert!(deleted.is_success(), "{deleted:?}");
}

#[tokio::test]
async fn no_answer_is_the_clients_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let client = Elasticsearch::new(Transport::single_node(&format!("http://{closed}")).unwrap());
    let e = raw(Method::Get, "/", None)
        .send(&client)
        .await
        .err()
        .unwrap();
    assert!(e.status_code().is_none(), "{e}");
}
