//! Malformed and incomplete answers never move the cursor; they are counted.
//! Runs against a scripted local server: no service needed.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "common/fake_server.rs"]
mod fake_server;

use std::time::Duration;

use connector::{ConnectorConfig, ElasticsearchSource, RunOptions};
use fake_server::{FakeServer, page};
use serde_json::json;

fn source(url: &str) -> ElasticsearchSource {
    let text = format!(
        "[plugin_config]\nurl = \"{url}\"\nindex = \"logs\"\npagination = \"cursor\"\ntiebreaker_field = \"id\"\nbatch_size = 2\nrequest_timeout = \"5s\"\n"
    );
    ElasticsearchSource::new(1, ConnectorConfig::from_toml(&text).unwrap().plugin_config)
}

const TRUNCATED: &str = r#"{"took":1,"timed_out":false,"hits":{"hits":[{"_index":"logs","_id":"x"#;
const HTML: &str = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
const TIMED_OUT: &str = r#"{"took":30000,"timed_out":true,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"hits":[{"_index":"logs","_id":"z","_source":{},"sort":[2000,"z"]}]}}"#;
const SHARD_FAILURE: &str = r#"{"took":3,"timed_out":false,"_shards":{"total":2,"successful":1,"skipped":0,"failed":1,"failures":[{"shard":1,"index":"logs","reason":{"type":"node_disconnected_exception","reason":"node left"}}]},"hits":{"hits":[{"_index":"logs","_id":"z","_source":{},"sort":[2000,"z"]}]}}"#;

#[tokio::test]
async fn malformed_answers_are_counted_and_never_move_the_cursor() {
    let server = FakeServer::start();
    let mut source = source(&server.url);
    source.open().await.unwrap();
    let bad = [
        (200, TRUNCATED, "truncated"),
        (200, HTML, "<html>"),
        (502, HTML, "502"),
        (200, TIMED_OUT, "timed out"),
        (200, SHARD_FAILURE, "node left"),
    ];
    for (n, (status, body, expect)) in bad.iter().enumerate() {
        server.push(*status, *body);
        let err = source.poll_batch().await.unwrap_err();
        assert!(
            err.to_string().contains(expect) || err.to_string().contains("end"),
            "{expect}: {err}"
        );
        assert!(err.is_retryable(), "{err}");
        let state = source.get_state().await.unwrap();
        assert_eq!(state.data.error_count, n as u64 + 1);
        assert_eq!(
            state.data.last_error.as_deref(),
            Some(err.to_string().as_str())
        );
        assert_eq!(state.data.total_documents_fetched, 0);
        assert_eq!(source.committed_cursor(), None);
    }
    server.push(200, page(&["a", "b"]));
    let batch = source.poll_batch().await.unwrap();
    source.commit(batch.ack.as_ref().unwrap()).await.unwrap();
    let committed = source.committed_cursor().cloned();
    assert_eq!(
        committed.as_ref().map(|c| c.sort.clone()),
        Some(vec![json!(1000), json!("b")])
    );
    for (status, body, _) in bad {
        server.push(status, body);
        assert!(source.poll_batch().await.is_err());
        assert_eq!(source.committed_cursor(), committed.as_ref());
    }
    server.push(200, page(&["c"]));
    let batch = source.poll_batch().await.unwrap();
    assert_eq!(batch.len(), 1);
    let last_search = server.searches().pop().unwrap();
    assert_eq!(
        last_search["search_after"],
        json!([1000, "b"]),
        "resumed right after b"
    );
    let state = source.get_state().await.unwrap();
    assert_eq!(state.data.error_count, 10);
    assert_eq!(state.data.processing_stats.successful_polls_count, 2);
}

#[tokio::test]
async fn the_run_loop_retries_failures_with_backoff_and_delivers_everything() {
    let server = FakeServer::start();
    let mut source = source(&server.url);
    source.open().await.unwrap();
    server.push(
        503,
        r#"{"error":{"type":"unavailable","reason":"busy"},"status":503}"#,
    );
    server.push(200, HTML);
    server.push(200, page(&["a", "b"]));
    server.push(200, TRUNCATED);
    server.push(200, page(&["c"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let mut out = connector::FileOutput::open(&path).unwrap();
    let options = RunOptions::default()
        .once(true)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5));
    let summary = connector::run(&mut source, &mut out, options)
        .await
        .unwrap();
    assert_eq!((summary.documents, summary.batches), (3, 2));
    // The hang-up may be retried by the HTTP client itself on a fresh connection.
    assert!((3..=4).contains(&summary.errors), "{summary:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    let state = source.get_state().await.unwrap();
    assert_eq!(state.data.error_count, summary.errors);
    assert!(state.data.last_error.is_some());
}

#[tokio::test]
async fn an_unreachable_server_is_retryable_and_names_the_url_without_credentials() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://elastic:hunter2@127.0.0.1:{port}");
    let mut source = source(&url);
    let err = source.open().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(err.is_retryable(), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{source:?}").contains("hunter2"));
}

#[tokio::test]
async fn credentials_go_in_headers_never_in_the_request_line() {
    for (extra, expected) in [
        ("", "authorization: Basic ZWxhc3RpYzpodW50ZXIy"),
        (
            "api_key = \"a2V5LXNlY3JldA==\"\n",
            "authorization: ApiKey a2V5LXNlY3JldA==",
        ),
    ] {
        let server = FakeServer::start();
        let url = if extra.is_empty() {
            server.url.replacen("://", "://elastic:hunter2@", 1)
        } else {
            server.url.clone()
        };
        let text = format!(
            "[plugin_config]\nurl = \"{url}\"\nindex = \"logs\"\npagination = \"cursor\"\ntiebreaker_field = \"id\"\n{extra}"
        );
        let config = ConnectorConfig::from_toml(&text).unwrap().plugin_config;
        let mut source = ElasticsearchSource::new(1, config);
        source.open().await.unwrap();
        source.poll_batch().await.unwrap();
        let log = server.log().to_ascii_lowercase();
        assert!(log.contains(&expected.to_ascii_lowercase()), "{log}");
        assert!(!log.contains("hunter2"), "{log}");
        assert!(!format!("{source:?}").contains("hunter2"));
        assert!(!format!("{source:?}").contains("a2V5LXNlY3JldA"));
        assert_eq!(source.get_state().await.unwrap().metadata.url, server.url);
    }
}
