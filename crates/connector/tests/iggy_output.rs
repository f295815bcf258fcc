//! The Iggy output against a real Iggy server (`IGGY_TCP_ADDRESS`, with
//! `IGGY_USERNAME`/`IGGY_PASSWORD`, default `iggy`/`iggy`) and the test server
//! (`ES_URL`). Without `IGGY_TCP_ADDRESS` these tests do nothing (Iggy is not
//! installable from the registries; `cargo xtask test` says so in one line).

#![cfg(feature = "iggy")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use connector::iggy::IggyOutput;
use connector::{ConnectorConfig, ElasticsearchSource, Output, OutputConfig, RunOptions, run};
use iggy::prelude::{Identifier, MessageClient, TopicClient};
use serde_json::json;

/// A config sending `index` to `stream/topic` with `partitioning`.
fn config(
    es: &str,
    index: &str,
    iggy: &str,
    stream: &str,
    partitioning: &str,
    partitions: u32,
    state_dir: &std::path::Path,
) -> ConnectorConfig {
    let (user, password) = credentials();
    let text = format!(
        "[[streams]]\nstream = \"{stream}\"\ntopic = \"docs\"\nschema = \"json\"\nbatch_length = 37\nlinger_time = \"5ms\"\n\n\
         [plugin_config]\nurl = \"{es}\"\nindex = \"{index}\"\nbatch_size = 100\npolling_interval = \"100ms\"\n\n\
         {}\n\
         [output]\nkind = \"iggy\"\naddress = \"{iggy}\"\nusername = \"{user}\"\npassword = \"{password}\"\n\
         partitioning = \"{partitioning}\"\npartitions = {partitions}\n",
        file_state(state_dir, "iggy").replace(
            "[plugin_config.state]",
            "[plugin_config.state]\nenabled = true"
        )
    );
    ConnectorConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn output(config: &ConnectorConfig) -> Box<dyn Output> {
    config.output.open(&config.streams).unwrap()
}

/// `es-connector run --once` of `config`, in process: open, run until caught
/// up, close the output.
async fn run_once(config: &ConnectorConfig) -> connector::Result<connector::RunSummary> {
    let mut plugin_config = config.plugin_config.clone();
    tiebreaker_where_needed(&mut plugin_config).await;
    let mut source = ElasticsearchSource::new(1, plugin_config);
    source.open().await?;
    let mut out = output(config).await;
    let summary = run(
        &mut source,
        out.as_mut(),
        RunOptions {
            once: true,
            ..RunOptions::default()
        },
    )
    .await?;
    out.close().await?;
    Ok(summary)
}

/// Every message of `stream/docs`: (partition, id, es_id header).
async fn topic_messages(iggy: &str, stream: &str) -> Vec<(u32, u128, String)> {
    let (user, password) = credentials();
    let connection: connector::config::IggyConnection =
        serde_json::from_value(json!({"address": iggy, "username": user, "password": password}))
            .unwrap();
    let target = connector::config::IggyTarget {
        stream: stream.to_owned(),
        topic: "docs".to_owned(),
        batch_length: 1000,
    };
    let mut all = Vec::new();
    connector::iggy::read_topic(&connection, &target, |m| {
        all.push((m.partition, m.id, m.es_id.unwrap_or_default()))
    })
    .await
    .unwrap();
    all
}

/// The timestamp `2024-01-15T10:30:SSZ` of second `s`.
fn second(s: usize) -> serde_json::Value {
    json!(format!("2024-01-15T10:30:{s:02}Z"))
}

fn unique_stream(tag: &str) -> String {
    format!("{}-{}", unique_index(tag), std::process::id())
}

/// What the crash tests start from: 1000 documents, a hundred a second, and a
/// config sending them to a fresh stream (balanced over one partition).
struct Crash {
    iggy: String,
    index: TestIndex,
    stream: String,
    cfg: ConnectorConfig,
    /// Holds the state files until the test ends.
    _dir: tempfile::TempDir,
}

impl Crash {
    /// `None` without `ES_URL` or `IGGY_TCP_ADDRESS` (the test then does nothing).
    async fn new(tag: &str) -> Option<Crash> {
        let (Some(es), Some(iggy)) = (es_url(), iggy_address()) else {
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let index =
            TestIndex::holding(&es, &format!("iggy-{tag}"), 1000, |i| second(i / 100)).await;
        let stream = unique_stream(tag);
        let cfg = config(&es, &index.name, &iggy, &stream, "balanced", 1, dir.path());
        Some(Crash {
            iggy,
            index,
            stream,
            cfg,
            _dir: dir,
        })
    }

    /// A source and the output of `cfg`, three batches sent and committed.
    async fn three_batches_delivered(&self) -> (ElasticsearchSource, Box<dyn Output>) {
        let mut source = ElasticsearchSource::new(1, self.cfg.plugin_config.clone());
        source.open().await.unwrap();
        let mut out = output(&self.cfg).await;
        for _ in 0..3 {
            let batch = source.poll_batch().await.unwrap();
            out.send(&batch.messages).await.unwrap();
            commit(&mut source, batch.ack.as_ref().unwrap()).await;
        }
        (source, out)
    }
}

/// A crash after the send and before the state save: the restarted run reads
/// the topic's tail and sends nothing twice; every document is there once, with
/// its deterministic id and headers.
#[tokio::test]
async fn a_crash_between_send_and_save_adds_no_duplicates() {
    let Some(mut crash) = Crash::new("tail").await else {
        return;
    };
    tiebreaker_where_needed(&mut crash.cfg.plugin_config).await;
    {
        let (mut source, mut out) = crash.three_batches_delivered().await;
        // Sent, then the process dies before the state is saved.
        let batch = source.poll_batch().await.unwrap();
        out.send(&batch.messages).await.unwrap();
        // And half of the next one (a send cut short by the crash).
        let batch = source.poll_batch().await.unwrap();
        out.send(&batch.messages[..50]).await.unwrap();
    }
    let summary = run_once(&crash.cfg).await.unwrap();
    assert_eq!(summary.documents, 700, "{summary:?}");
    assert_eq!(summary.skipped, 150, "{summary:?}");

    let messages = topic_messages(&crash.iggy, &crash.stream).await;
    assert_eq!(messages.len(), 1000, "exactly one message per document");
    let es_ids: HashSet<_> = messages.iter().map(|(_, _, e)| e.clone()).collect();
    assert_eq!(es_ids.len(), 1000);
    let ids: HashSet<_> = messages.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(ids.len(), 1000);
    // The ids are the source's deterministic ones.
    let expected = connector::MessageId::of(&crash.index.name, "d000000", Some(0)).0;
    assert!(
        ids.contains(&expected) || messages.iter().any(|(_, _, e)| e == "d000000"),
        "document d000000 is in the topic"
    );
}

/// Documents indexed inside the in-flight range before the restart: the re-read
/// batch then starts with new documents, and the rest of what was sent before
/// the crash comes only in the next batch. It must still be recognised as
/// delivered: nothing twice in the topic.
#[tokio::test]
async fn documents_arriving_inside_the_in_flight_range_add_no_duplicates() {
    let Some(mut crash) = Crash::new("inflight").await else {
        return;
    };
    // Ordered by `id` within a timestamp, so the late `c…` documents sort
    // before the `d…` ones that were in flight.
    crash.cfg.plugin_config.tiebreaker_field = Some("id".to_owned());
    {
        let (mut source, mut out) = crash.three_batches_delivered().await;
        // Two batches sent (d000300..d000499), then the process dies before
        // the state is saved.
        for _ in 0..2 {
            let batch = source.poll_batch().await.unwrap();
            out.send(&batch.messages).await.unwrap();
        }
    }
    // Meanwhile 30 documents arrive at each of the in-flight timestamps.
    let late: Vec<_> = (0..60)
        .map(|i| json!({"id": format!("c{i:06}"), "@timestamp": second(3 + i / 30), "n": i}))
        .collect();
    crash.index.load(&late).await;

    let summary = run_once(&crash.cfg).await.unwrap();
    let messages = topic_messages(&crash.iggy, &crash.stream).await;
    let mut seen = HashMap::new();
    for (_, _, es_id) in &messages {
        *seen.entry(es_id.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "sent twice: {} ({:?}…)",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(seen.len(), 1060, "every document once");
    assert_eq!(summary.skipped, 200, "{summary:?}");
}

/// Partitioning by a field keeps equal values together; with balanced
/// partitioning over several partitions nothing is missing either.
#[tokio::test]
async fn partitioning_by_field_and_balanced() {
    let (Some(es), Some(iggy)) = (es_url(), iggy_address()) else {
        return;
    };
    let index = TestIndex::holding(&es, "iggy-part", 600, |i| second(i / 60)).await;
    for partitioning in ["field:n", "balanced"] {
        let dir = tempfile::tempdir().unwrap();
        let stream = unique_stream("part");
        let cfg = config(
            &es,
            &index.name,
            &iggy,
            &stream,
            partitioning,
            3,
            dir.path(),
        );
        let summary = run_once(&cfg).await.unwrap();
        assert_eq!(summary.documents, 600);
        let messages = topic_messages(&iggy, &stream).await;
        let es_ids: HashSet<_> = messages.iter().map(|(_, _, e)| e.clone()).collect();
        assert_eq!(messages.len(), 600, "{partitioning}");
        assert_eq!(es_ids.len(), 600, "{partitioning}");
        let mut per_partition: HashMap<u32, usize> = HashMap::new();
        for (p, _, _) in &messages {
            *per_partition.entry(*p).or_default() += 1;
        }
        assert!(
            per_partition.len() > 1,
            "{partitioning}: spread over the partitions: {per_partition:?}"
        );
    }
}

/// A bad `[output]` names the key.
#[test]
fn bad_iggy_output_config_names_the_key() {
    let base = "[plugin_config]\nurl = \"http://127.0.0.1:9200\"\nindex = \"i\"\n";
    let streams = "[[streams]]\nstream = \"s\"\ntopic = \"t\"\n";
    for (text, key) in [
        (
            format!("{streams}{base}[output]\nkind = \"iggy\"\nusername = \"u\"\n"),
            "output.password",
        ),
        (
            format!(
                "{streams}{base}[output]\nkind = \"iggy\"\nusername = \"u\"\npassword = \"p\"\npartitioning = \"hash\"\n"
            ),
            "partitioning",
        ),
        (
            format!(
                "{streams}{base}[output]\nkind = \"iggy\"\nusername = \"u\"\npassword = \"p\"\nbogus = 1\n"
            ),
            "bogus",
        ),
        (
            format!("{base}[output]\nkind = \"iggy\"\nusername = \"u\"\npassword = \"p\"\n"),
            "streams",
        ),
        (
            format!(
                "[[streams]]\nstream = \"s\"\ntopic = \"t\"\nschema = \"avro\"\n{base}[output]\nkind = \"iggy\"\ntoken = \"x\"\n"
            ),
            "streams.schema",
        ),
        (
            format!(
                "{streams}{base}[output]\nkind = \"iggy\"\ntoken = \"x\"\ntransport = \"http\"\naddress = \"http://127.0.0.1:3000\"\n"
            ),
            "output.transport",
        ),
        (
            format!(
                "{streams}{base}[output]\nkind = \"iggy\"\ntoken = \"x\"\naddress = \"http://127.0.0.1:3000\"\n"
            ),
            "output.address",
        ),
    ] {
        let err = ConnectorConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(key), "{key} not in: {err}");
        assert!(!err.contains("\"p\""), "a password leaked: {err}");
    }
    let ok = format!(
        "{streams}{base}[output]\nkind = \"iggy\"\nusername = \"u\"\npassword = \"hunter2\"\n"
    );
    let cfg = ConnectorConfig::from_toml(&ok).unwrap();
    assert!(matches!(cfg.output, OutputConfig::Iggy(_)));
    let shown = format!("{:?}", cfg.output);
    assert!(!shown.contains("hunter2"), "{shown}");
    let _ = IggyOutput::new;
}

/// Sends raw payloads (with an `es_id` header each) into `stream/docs`.
async fn produce(iggy: &str, stream: &str, payloads: &[(String, String)]) {
    use iggy::prelude::{IggyMessage, Partitioning, StreamClient, TopicCreateOptions};
    let client = iggy_client(iggy).await;
    client.create_stream(stream).await.unwrap();
    let s = Identifier::named(stream).unwrap();
    // Servers refusing this client's default topic options are handled by the
    // output; here the output creates the topic first when needed.
    if client
        .create_topic(&s, "docs", &TopicCreateOptions::default())
        .await
        .is_err()
    {
        create_topic_through_output(iggy, stream, "tail_resume = true\n").await;
    }
    let t = Identifier::named("docs").unwrap();
    let mut messages: Vec<IggyMessage> = payloads
        .iter()
        .map(|(es_id, payload)| message_with_es_id(es_id, payload.clone()))
        .collect();
    client
        .send_messages(&s, &t, &Partitioning::balanced(), &mut messages)
        .await
        .unwrap();
}

fn sink_toml(
    iggy: &str,
    stream: &str,
    es: &str,
    index: &str,
    dead: Option<&std::path::Path>,
) -> String {
    let (user, password) = credentials();
    let dead = dead
        .map(|p| format!("[dead_letter]\npath = \"{}\"\n", p.display()))
        .unwrap_or_default();
    format!(
        "[[streams]]\nstream = \"{stream}\"\ntopic = \"docs\"\nbatch_length = 40\n\
         [input]\nkind = \"iggy\"\naddress = \"{iggy}\"\nusername = \"{user}\"\npassword = \"{password}\"\nconsumer = \"g\"\n\
         [output]\nkind = \"elasticsearch\"\nurl = \"{es}\"\nindex = \"{index}\"\n{dead}"
    )
}

/// The sink indexes good documents, puts refused ones (a wrong field type, a
/// payload that is not JSON) into the dead-letter file, and stores the offset;
/// without a dead-letter file it stops and stores nothing.
#[tokio::test]
async fn the_sink_dead_letters_refused_documents_and_commits_after() {
    use connector::sink::{SinkConfig, SinkOptions, run_sink};
    let (Some(es), Some(iggy)) = (es_url(), iggy_address()) else {
        return;
    };
    let index = TestIndex::standard(&es, "iggy-sink").await;
    let stream = unique_stream("sink");
    let mut payloads: Vec<(String, String)> = (0..100)
        .map(|i| {
            (
                format!("ok{i}"),
                json!({"id": format!("ok{i}"), "n": i}).to_string(),
            )
        })
        .collect();
    payloads.push(("bad-type".into(), json!({"n": "not a number"}).to_string()));
    payloads.push(("bad-json".into(), "{not json".into()));
    produce(&iggy, &stream, &payloads).await;

    let once = || SinkOptions {
        once: true,
        ..SinkOptions::default()
    };
    // No dead-letter file: the refused documents stop the sink; nothing is lost.
    let no_dead =
        SinkConfig::from_toml(&sink_toml(&iggy, &stream, &es, &index.name, None)).unwrap();
    let err = run_sink(&no_dead, once()).await.unwrap_err().to_string();
    assert!(err.contains("dead_letter"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let cfg =
        SinkConfig::from_toml(&sink_toml(&iggy, &stream, &es, &index.name, Some(&dead))).unwrap();
    let summary = run_sink(&cfg, once()).await.unwrap();
    assert_eq!(summary.dead_lettered, 2, "{summary:?}");
    index.refresh().await;
    let count: serde_json::Value = reqwest::get(format!("{es}/{}/_count", index.name))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["count"], 100, "{count}");
    let lines = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.contains("bad-type") && lines.contains("not JSON"),
        "{lines}"
    );
    let again = run_sink(&cfg, once()).await.unwrap();
    assert_eq!(again.messages, 0, "the offset was stored: {again:?}");
}

/// The documents over TCP with a personal access token.
#[tokio::test]
async fn a_personal_access_token_delivers() {
    use iggy::prelude::{PersonalAccessTokenClient, PersonalAccessTokenExpiry};
    let (Some(es), Some(iggy)) = (es_url(), iggy_address()) else {
        return;
    };
    let admin = iggy_client(&iggy).await;
    let token_name = format!(
        "t{}",
        unique_index("pat").len() + std::process::id() as usize
    );
    let token = admin
        .create_personal_access_token(&token_name, PersonalAccessTokenExpiry::NeverExpire)
        .await
        .unwrap()
        .token;
    let index = TestIndex::holding(&es, "iggy-transports", 120, |i| second(i / 10)).await;
    let cases = vec![(
        "tcp + token".to_owned(),
        format!("address = \"{iggy}\"\ntoken = \"{token}\"\n"),
    )];
    // QUIC is not tried: against the tested server (apache/iggy cc269ef) the 0.11
    // client's QUIC connection never completed here (docs/iggy.md).
    for (label, connection) in cases {
        let dir = tempfile::tempdir().unwrap();
        let stream = unique_stream("transport");
        let text = format!(
            "[[streams]]\nstream = \"{stream}\"\ntopic = \"docs\"\n\
             [plugin_config]\nurl = \"{es}\"\nindex = \"{}\"\nbatch_size = 50\n{}\n\
             [output]\nkind = \"iggy\"\n{connection}",
            index.name,
            file_state(dir.path(), "t").replace(
                "[plugin_config.state]",
                "[plugin_config.state]\nenabled = true"
            ),
        );
        let cfg = ConnectorConfig::from_toml(&text).unwrap_or_else(|e| panic!("{label}: {e}"));
        let summary = run_once(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(summary.documents, 120, "{label}");
        let messages = topic_messages(&iggy, &stream).await;
        assert_eq!(messages.len(), 120, "{label}");
    }
    admin
        .delete_personal_access_token(&token_name)
        .await
        .unwrap();
}
