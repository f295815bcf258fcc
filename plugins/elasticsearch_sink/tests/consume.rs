//! The sink against a fake `_bulk` server (no service needed): documents are
//! indexed under the right ids, and a document the server refuses for good either
//! fails the consume call, naming it, or lands in the dead-letter file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use iggy_common::{HeaderKey, HeaderValue};
use iggy_connector_elasticsearch_sink::ElasticsearchSinkPlugin;
use iggy_connector_sdk::{ConsumedMessage, Error, MessagesMetadata, Schema, Sink, TopicMetadata};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A `_bulk` endpoint that indexes every document except those with `"reject": true`,
/// which it answers with a 400 mapping error. Keeps what it indexed: `(_index, _id, doc)`.
/// The first calls may be refused as a whole, with the statuses given to
/// [`FakeBulk::failing_first`] (an outage, or credentials not yet accepted).
struct FakeBulk {
    url: String,
    indexed: Arc<Mutex<Vec<(String, String, Value)>>>,
    failures_left: Arc<Mutex<VecDeque<u16>>>,
}

impl FakeBulk {
    async fn start() -> FakeBulk {
        Self::failing_first(Vec::new()).await
    }

    async fn failing_first(statuses: Vec<u16>) -> FakeBulk {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let indexed = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(Mutex::new(VecDeque::from(statuses)));
        let store = indexed.clone();
        let failures = failures_left.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                let failures = failures.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut reader = BufReader::new(read);
                    loop {
                        let mut length = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':')
                                && name.eq_ignore_ascii_case("content-length")
                            {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).await.unwrap();
                        let refusal = failures.lock().unwrap().pop_front();
                        let (status, answer) = match refusal {
                            Some(status) => (
                                status,
                                json!({"error": {"type": "test_refusal", "reason": "refused by the test"}, "status": status}),
                            ),
                            None => (200, answer(&body, &store)),
                        };
                        let answer = answer.to_string();
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        write.write_all(response.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        FakeBulk {
            url,
            indexed,
            failures_left,
        }
    }

    fn failures_left(&self) -> usize {
        self.failures_left.lock().unwrap().len()
    }

    fn indexed(&self) -> Vec<(String, String, Value)> {
        self.indexed.lock().unwrap().clone()
    }
}

fn answer(body: &[u8], store: &Mutex<Vec<(String, String, Value)>>) -> Value {
    let text = String::from_utf8_lossy(body);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let mut items = Vec::new();
    let mut errors = false;
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).unwrap();
        let doc: Value = serde_json::from_str(pair[1]).unwrap();
        let index = action["index"]["_index"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let id = action["index"]["_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if doc["reject"] == json!(true) {
            errors = true;
            items.push(json!({"index": {"_index": index, "_id": id, "status": 400,
                "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [reject]"}}}));
        } else {
            store.lock().unwrap().push((index.clone(), id.clone(), doc));
            items.push(
                json!({"index": {"_index": index, "_id": id, "status": 201, "result": "created"}}),
            );
        }
    }
    json!({"took": 1, "errors": errors, "items": items})
}

fn message(offset: u64, es_id: Option<&str>, doc: Value) -> ConsumedMessage {
    let headers = es_id.map(|id| {
        let mut h = BTreeMap::new();
        h.insert(
            HeaderKey::try_from("es_id").unwrap(),
            HeaderValue::try_from(id).unwrap(),
        );
        h
    });
    let payload = Schema::Json
        .try_into_payload(doc.to_string().into_bytes())
        .unwrap();
    ConsumedMessage {
        id: 1000 + u128::from(offset),
        offset,
        checksum: 0,
        timestamp: 0,
        origin_timestamp: 0,
        headers,
        payload,
    }
}

async fn open_sink(url: &str, extra: Value) -> ElasticsearchSinkPlugin {
    let mut config = json!({"url": url, "index": "copy", "request_timeout": "5s"});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let mut sink = ElasticsearchSinkPlugin::new(7, config);
    sink.open().await.unwrap();
    sink
}

fn topic() -> TopicMetadata {
    TopicMetadata {
        stream: "elasticsearch_stream".into(),
        topic: "documents".into(),
    }
}

fn meta() -> MessagesMetadata {
    MessagesMetadata {
        partition_id: 1,
        current_offset: 2,
        schema: Schema::Json,
    }
}

#[tokio::test]
async fn documents_are_indexed_under_es_id_or_the_message_id() {
    let server = FakeBulk::start().await;
    let mut sink = open_sink(&server.url, json!({})).await;
    let batch = vec![
        message(0, Some("doc-a"), json!({"n": 1})),
        message(1, None, json!({"n": 2})),
    ];
    sink.consume(&topic(), meta(), batch).await.unwrap();
    let indexed = server.indexed();
    assert_eq!(indexed.len(), 2);
    assert_eq!(indexed[0], ("copy".into(), "doc-a".into(), json!({"n": 1})));
    assert_eq!(indexed[1].1, format!("{:032x}", 1001));
    sink.close().await.unwrap();
}

#[tokio::test]
async fn a_refused_document_fails_the_call_naming_it() {
    let server = FakeBulk::start().await;
    let mut sink = open_sink(&server.url, json!({})).await;
    let batch = vec![
        message(0, Some("good"), json!({"n": 1})),
        message(1, Some("bad"), json!({"reject": true})),
    ];
    let result = sink.consume(&topic(), meta(), batch).await;
    match result {
        Err(Error::PermanentHttpError(reason)) => {
            assert!(
                reason.contains("1 of 2") && reason.contains("bad"),
                "{reason}"
            );
            assert!(reason.contains("mapper_parsing_exception"), "{reason}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(server.indexed().len(), 1, "the good document is indexed");
    // The next batch is not blamed for the previous one's failure.
    sink.consume(
        &topic(),
        meta(),
        vec![message(2, Some("next"), json!({"n": 3}))],
    )
    .await
    .unwrap();
    sink.close().await.unwrap();
}

#[tokio::test]
async fn with_a_dead_letter_file_the_refused_document_is_kept_there() {
    let server = FakeBulk::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let mut sink = open_sink(&server.url, json!({"dead_letter_path": path})).await;
    let batch = vec![
        message(0, Some("good"), json!({"n": 1})),
        message(1, Some("bad"), json!({"reject": true})),
        message(2, Some("not-an-object"), json!([1, 2])),
    ];
    sink.consume(&topic(), meta(), batch).await.unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let bad = lines.iter().find(|l| l["id"] == "bad").unwrap();
    assert_eq!(bad["status"], 400);
    assert_eq!(bad["offset"], 1);
    assert_eq!(bad["document"], json!({"reject": true}));
    assert_eq!(bad["stream"], "elasticsearch_stream");
    let refused = lines.iter().find(|l| l["id"] == "not-an-object").unwrap();
    assert_eq!(refused["attempts"], 0);
    assert_eq!(refused["document"], json!([1, 2]));
    assert_eq!(server.indexed().len(), 1);
    sink.close().await.unwrap();
}

#[tokio::test]
async fn an_invalid_configuration_fails_open_naming_the_key() {
    let mut sink =
        ElasticsearchSinkPlugin::new(7, json!({"url": "http://h", "index": "i", "bulk_size": 1}));
    match sink.open().await {
        Err(Error::InvalidConfigValue(reason)) => assert!(reason.contains("bulk_size"), "{reason}"),
        other => panic!("expected InvalidConfigValue, got {other:?}"),
    }
}

/// The runtime commits a batch's offsets when it polls it, so a consume call that
/// gives up loses the batch (or dead-letters documents nothing was wrong with).
/// During an outage longer than the bulk processor's retries the call holds the
/// batch and sends it again until the server answers; the dead letter stays empty.
#[tokio::test]
async fn an_outage_longer_than_the_retries_holds_the_batch_until_the_server_is_back() {
    // More refusals than the bulk processor's own retries (10 by default).
    let server = FakeBulk::failing_first(vec![503; 14]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let mut sink = open_sink(
        &server.url,
        json!({"dead_letter_path": path, "max_retry_delay": "100ms"}),
    )
    .await;
    let batch = vec![
        message(0, Some("a"), json!({"n": 1})),
        message(1, Some("b"), json!({"n": 2})),
        message(2, Some("c"), json!({"n": 3})),
    ];
    sink.consume(&topic(), meta(), batch).await.unwrap();
    assert_eq!(server.failures_left(), 0, "the outage was sat through");
    let ids: Vec<String> = server.indexed().into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(
        ids,
        ["a", "b", "c"],
        "the batch indexed once the server is back"
    );
    assert!(
        !path.exists(),
        "nothing dead-lettered: {:?}",
        std::fs::read_to_string(&path)
    );
    sink.close().await.unwrap();
}

/// A request refused as a whole (credentials, privileges) is not the documents'
/// fault: they are held, not dead-lettered, and indexed once the server accepts.
#[tokio::test]
async fn a_whole_request_refusal_holds_the_batch_instead_of_dead_lettering_it() {
    let server = FakeBulk::failing_first(vec![401, 403, 401]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let mut sink = open_sink(&server.url, json!({"dead_letter_path": path})).await;
    sink.consume(
        &topic(),
        meta(),
        vec![message(0, Some("a"), json!({"n": 1}))],
    )
    .await
    .unwrap();
    assert_eq!(server.failures_left(), 0);
    assert_eq!(server.indexed().len(), 1);
    assert!(
        !path.exists(),
        "nothing dead-lettered: {:?}",
        std::fs::read_to_string(&path)
    );
    sink.close().await.unwrap();
}
