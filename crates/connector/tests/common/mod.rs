//! Shared helpers of the tests that need the Elasticsearch/OpenSearch test server.

#![allow(
    dead_code,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

pub mod child;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use connector::{Ack, ConnectorConfig, ElasticsearchSource, Message, PluginConfig};
use serde_json::{Value, json};

/// `ES_URL`, or `None` (the test then does nothing, as `service_endpoint` reports).
pub fn es_url() -> Option<String> {
    state_core::conformance::service_endpoint("ES_URL")
}

/// A fresh index name for this test.
pub fn unique_index(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conn-src-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An index on the test server, deleted on drop.
pub struct TestIndex {
    pub url: String,
    pub name: String,
    http: reqwest::Client,
}

impl TestIndex {
    /// Creates an index named after `tag` with the `properties` mapping.
    pub async fn create(url: &str, tag: &str, properties: Value) -> TestIndex {
        Self::create_named(url, unique_index(tag), properties).await
    }

    /// Creates `name` with the `properties` mapping.
    pub async fn create_named(url: &str, name: String, properties: Value) -> TestIndex {
        let http = reqwest::Client::new();
        let create = http
            .put(format!("{url}/{name}"))
            .json(&json!({"mappings": {"properties": properties}}));
        succeeds(create, &format!("create {name} (ES_URL={url})")).await;
        TestIndex {
            url: url.to_owned(),
            name,
            http,
        }
    }

    /// `name`, created by the caller, deleted on drop.
    pub fn adopt(url: &str, name: String) -> TestIndex {
        TestIndex {
            url: url.to_owned(),
            name,
            http: reqwest::Client::new(),
        }
    }

    /// A keyword `id`, a date `@timestamp`, a long `n`.
    pub async fn standard(url: &str, tag: &str) -> TestIndex {
        Self::create(
            url,
            tag,
            json!({"id": {"type": "keyword"}, "@timestamp": {"type": "date"}, "n": {"type": "long"}}),
        )
        .await
    }

    /// A [`Self::standard`] index holding [`docs`]`(n, 0, ts)`.
    pub async fn holding(url: &str, tag: &str, n: usize, ts: impl Fn(usize) -> Value) -> TestIndex {
        let index = Self::standard(url, tag).await;
        index.load(&docs(n, 0, ts)).await;
        index
    }

    /// Indexes `docs` (each needs an `id` field, used as `_id`) via `_bulk`.
    pub async fn load(&self, docs: &[Value]) {
        for chunk in docs.chunks(2000) {
            let mut body = String::new();
            for doc in chunk {
                let id = doc["id"].as_str().unwrap_or_default();
                body.push_str(&json!({"index": {"_index": self.name, "_id": id}}).to_string());
                body.push('\n');
                body.push_str(&doc.to_string());
                body.push('\n');
            }
            let r = self
                .http
                .post(format!("{}/_bulk?refresh=true", self.url))
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("bulk: {e}"));
            let answer: Value = r.json().await.unwrap_or_default();
            assert_eq!(answer["errors"], json!(false), "bulk errors: {answer}");
        }
    }

    /// Makes everything indexed so far searchable (`_refresh`).
    pub async fn refresh(&self) {
        self.post_action("_refresh").await;
    }

    /// POSTs `<url>/<index>/<action>` (e.g. `_refresh`), asserting it succeeds.
    pub async fn post_action(&self, action: &str) {
        let post = self
            .http
            .post(format!("{}/{}/{action}", self.url, self.name));
        succeeds(post, &format!("{action} {}", self.name)).await;
    }

    /// Every `_id` the index holds (a scroll; call [`Self::refresh`] first).
    pub async fn ids(&self) -> std::collections::BTreeSet<String> {
        let mut ids = std::collections::BTreeSet::new();
        let mut page = post_json(
            &self.http,
            format!("{}/{}/_search?scroll=1m", self.url, self.name),
            &json!({"size": 5000, "_source": false, "sort": ["_doc"]}),
        )
        .await;
        loop {
            let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            ids.extend(
                hits.iter()
                    .filter_map(|h| h["_id"].as_str().map(String::from)),
            );
            let scroll_id = page["_scroll_id"].as_str().unwrap_or_default().to_owned();
            page = post_json(
                &self.http,
                format!("{}/_search/scroll", self.url),
                &json!({"scroll": "1m", "scroll_id": scroll_id}),
            )
            .await;
        }
        ids
    }

    /// Closes point in time `pit` behind a source's back, as if it expired.
    pub async fn close_pit(&self, opensearch: bool, pit: &str) {
        let (path, body) = if opensearch {
            ("_search/point_in_time", json!({"pit_id": [pit]}))
        } else {
            ("_pit", json!({"id": pit}))
        };
        let r = self
            .http
            .delete(format!("{}/{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "closing {pit}: {r:?}");
    }

    /// Raw request helper.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Drop for TestIndex {
    fn drop(&mut self) {
        // Best effort, blocking, no runtime needed: one raw HTTP/1.1 DELETE.
        use std::io::{Read, Write};
        let host = self
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Ok(mut stream) = std::net::TcpStream::connect(&host) {
            let request = format!(
                "DELETE /{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.name
            );
            let _ = stream.write_all(request.as_bytes());
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        }
    }
}

/// `n` documents `d00000..` with timestamps from `ts(i)`.
pub fn docs(n: usize, start: usize, ts: impl Fn(usize) -> Value) -> Vec<Value> {
    (start..start + n)
        .map(|i| json!({"id": format!("d{i:06}"), "@timestamp": ts(i), "n": i}))
        .collect()
}

/// Timestamps `2024-01-15T10:30:SSZ`, the seconds cycling through `0..period`:
/// groups of documents sharing a timestamp, each group spread over the index.
pub fn cycling_seconds(period: usize) -> impl Fn(usize) -> Value {
    move |i| json!(format!("2024-01-15T10:30:{:02}Z", i % period))
}

/// A `[plugin_config]` for `index`, plus `extra` TOML lines.
pub fn plugin_config(url: &str, index: &str, extra: &str) -> PluginConfig {
    let text = format!(
        "[plugin_config]\nurl = \"{url}\"\nindex = \"{index}\"\npolling_interval = \"100ms\"\n{extra}"
    );
    ConnectorConfig::from_toml(&text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .plugin_config
}

/// File state lines for `plugin_config` (`extra`).
pub fn file_state(dir: &std::path::Path, state_id: &str) -> String {
    format!(
        "[plugin_config.state]\nstorage_type = \"file\"\nstate_id = \"{state_id}\"\nauto_save_interval = \"0s\"\n[plugin_config.state.storage_config]\nbase_path = \"{}\"\n",
        dir.display()
    )
}

/// `[plugin_config]` lines: pages of `batch_size` documents, ordered inside a
/// timestamp by the documents' unique `id` (every server line has that tiebreaker).
pub fn by_id(batch_size: usize) -> String {
    format!("batch_size = {batch_size}\ntiebreaker_field = \"id\"\n")
}

/// The state `state_id` a file store in `dir` holds, as JSON.
pub fn stored_state(dir: &std::path::Path, state_id: &str) -> Value {
    let path = dir.join(format!("{state_id}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// Source `id` on `index` with `extra` `[plugin_config]` lines exactly, opened.
pub async fn open_source(id: u64, url: &str, index: &str, extra: &str) -> ElasticsearchSource {
    let mut source = ElasticsearchSource::new(id, plugin_config(url, index, extra));
    source.open().await.unwrap();
    source
}

/// One run of `source` into `out` that stops once caught up (`once`).
pub async fn run_once(
    source: &mut ElasticsearchSource,
    out: &mut dyn connector::Output,
) -> connector::Result<connector::RunSummary> {
    connector::run(source, out, connector::RunOptions::default().once(true)).await
}

/// The `es_id` header.
pub fn doc_id(m: &Message) -> String {
    m.headers.get("es_id").cloned().unwrap_or_default()
}

/// Polls and commits until an empty poll; returns every delivered `_id`, in order.
pub async fn drain(source: &mut ElasticsearchSource) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..100_000 {
        let batch = source
            .poll_batch()
            .await
            .unwrap_or_else(|e| panic!("poll: {e}"));
        let Some(ack) = batch.ack.clone() else {
            return ids;
        };
        ids.extend(batch.messages.iter().map(doc_id));
        commit(source, &ack).await;
    }
    panic!(
        "the source never caught up (looping?) after {} ids",
        ids.len()
    );
}

pub async fn commit(source: &mut ElasticsearchSource, ack: &Ack) {
    source
        .commit(ack)
        .await
        .unwrap_or_else(|e| panic!("commit: {e}"));
}

/// Asserts every id of `expected` appears exactly once in `got`.
pub fn assert_exactly_once(got: &[String], expected: usize) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in got {
        *counts.entry(id).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(dupes.is_empty(), "duplicates: {dupes:?}");
    assert_eq!(counts.len(), expected, "distinct documents delivered");
}

/// Whether a source without `tiebreaker_field` can read `index` on this server:
/// only where `_shard_doc` exists (Elasticsearch >= 7.12, OpenSearch >= 3.3), as
/// the server's own version says. Where it does not, asserts that such a source is
/// refused naming `tiebreaker_field`, so the test still proves something.
pub async fn shard_doc_or_refused(url: &str, index: &str) -> bool {
    let with_field = plugin_config(url, index, "tiebreaker_field = \"id\"\n");
    let server = ElasticsearchSource::check(&with_field)
        .await
        .unwrap_or_else(|e| panic!("ES_URL={url}: {e}"));
    let without = plugin_config(url, index, "");
    let refused = ElasticsearchSource::check(&without).await;
    if server.flavor.supports_shard_doc() {
        refused.unwrap_or_else(|e| panic!("{:?} {}: {e}", server.flavor, server.version));
        true
    } else {
        let error = refused.expect_err("no _shard_doc, yet no tiebreaker_field was accepted");
        assert!(error.to_string().contains("tiebreaker_field"), "{error}");
        false
    }
}

/// Tests about something other than the tiebreaker read without
/// `tiebreaker_field` (by `_shard_doc`) where the server has `_shard_doc`, and by
/// the documents' unique `id` where it does not (there a source without one is
/// refused: [`shard_doc_or_refused`] asserts that).
pub async fn tiebreaker_where_needed(config: &mut PluginConfig) {
    if config.tiebreaker_field.is_some() {
        return;
    }
    let mut with_field = config.clone();
    with_field.tiebreaker_field = Some("id".to_owned());
    let server = ElasticsearchSource::check(&with_field)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", config.url));
    if !server.flavor.supports_shard_doc() {
        config.tiebreaker_field = Some("id".to_owned());
    }
}

/// `IGGY_TCP_ADDRESS`, or `None` after saying the Iggy tests were not run
/// (Iggy is not installable from the registries).
pub fn iggy_address() -> Option<String> {
    match std::env::var("IGGY_TCP_ADDRESS") {
        Ok(a) if !a.trim().is_empty() => Some(a),
        _ => {
            eprintln!("IGGY_TCP_ADDRESS is not set: the Iggy tests were not run");
            None
        }
    }
}

/// `IGGY_USERNAME`/`IGGY_PASSWORD`, default `iggy`/`iggy`.
pub fn credentials() -> (String, String) {
    (
        std::env::var("IGGY_USERNAME").unwrap_or_else(|_| "iggy".into()),
        std::env::var("IGGY_PASSWORD").unwrap_or_else(|_| "iggy".into()),
    )
}

/// A client of the Iggy server at `iggy` (as [`credentials`]), connected.
#[cfg(feature = "iggy")]
pub async fn iggy_client(iggy: &str) -> iggy::prelude::IggyClient {
    use iggy::prelude::Client as _;
    let (user, password) = credentials();
    let client = iggy::prelude::IggyClient::from_connection_string(&format!(
        "iggy://{user}:{password}@{iggy}"
    ))
    .unwrap();
    client.connect().await.unwrap();
    client
}

/// Creates `stream/docs` through the Iggy output, which copes with servers
/// refusing this client's default topic options; `options`: more `[output]` lines.
#[cfg(feature = "iggy")]
pub async fn create_topic_through_output(iggy: &str, stream: &str, options: &str) {
    let (user, password) = credentials();
    let cfg = ConnectorConfig::from_toml(&format!(
        "[[streams]]\nstream = \"{stream}\"\ntopic = \"docs\"\n[plugin_config]\nurl = \"http://127.0.0.1:1\"\nindex = \"x\"\n\
         [output]\nkind = \"iggy\"\naddress = \"{iggy}\"\nusername = \"{user}\"\npassword = \"{password}\"\n{options}"
    ))
    .unwrap();
    let mut out = cfg.output.open(&cfg.streams).unwrap();
    out.recently_delivered(1).await.unwrap();
    out.close().await.unwrap();
}

/// A message of `payload` with the `es_id` header the source gives its messages.
#[cfg(feature = "iggy")]
pub fn message_with_es_id(es_id: &str, payload: String) -> iggy::prelude::IggyMessage {
    use iggy::prelude::{HeaderKey, HeaderValue, IggyMessage};
    let mut headers = std::collections::BTreeMap::new();
    headers.insert(
        HeaderKey::try_from("es_id").unwrap(),
        HeaderValue::try_from(es_id).unwrap(),
    );
    IggyMessage::builder()
        .payload(bytes::Bytes::from(payload))
        .user_headers(headers)
        .build()
        .unwrap()
}

/// An index that refreshes only when asked: a document indexed without a refresh
/// stays invisible to searches, like one waiting for its shard's refresh. It
/// holds `head`, searchable.
pub async fn index_without_refresh(url: &str, tag: &str, head: &[Value]) -> TestIndex {
    let index = TestIndex::standard(url, tag).await;
    let settings = index
        .http()
        .put(format!("{url}/{}/_settings", index.name))
        .json(&json!({"index": {"refresh_interval": "-1"}}));
    succeeds(settings, "refresh_interval = -1").await;
    index.load(head).await;
    index
}

/// Indexes `doc` without making it searchable.
pub async fn index_unrefreshed(index: &TestIndex, doc: &Value) {
    let id = doc["id"].as_str().unwrap();
    let put = index
        .http()
        .put(format!("{}/{}/_doc/{id}", index.url, index.name))
        .json(doc);
    succeeds(put, &format!("index {id}")).await;
}

/// `minutes` before now, as an RFC 3339 timestamp (negative: in the future).
pub fn ago(minutes: i64) -> Value {
    json!(
        (chrono::Utc::now() - chrono::Duration::minutes(minutes))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// A source on `index` with `extra` `[plugin_config]` lines, reading by
/// [`tiebreaker_where_needed`], opened.
pub async fn opened_source(url: &str, index: &str, extra: &str) -> ElasticsearchSource {
    let mut config = plugin_config(url, index, extra);
    tiebreaker_where_needed(&mut config).await;
    let mut source = ElasticsearchSource::new(1, config);
    source.open().await.unwrap();
    source
}

/// Sends `request` to the test server and asserts it succeeds; a failure (the
/// server down, or its answer) names `what`.
pub async fn succeeds(request: reqwest::RequestBuilder, what: &str) {
    let r = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: is the server down? {e}"));
    let status = r.status();
    assert!(
        status.is_success(),
        "{what}: {status} {}",
        r.text().await.unwrap_or_default()
    );
}

/// POSTs `body` to `url` and reads the answer as JSON.
pub async fn post_json(http: &reqwest::Client, url: String, body: &Value) -> Value {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
