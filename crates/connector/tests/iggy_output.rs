//! The Iggy output against a real Iggy server (`IGGY_TCP_ADDRESS`, with
//! `IGGY_USERNAME`/`IGGY_PASSWORD`, default `iggy`/`iggy`) and the test server
//! (`ES_URL`). Without `IGGY_TCP_ADDRESS` these tests do nothing (Iggy is not
//! installable from the registries; `cargo xtask test` says so in one line).

#![cfg(feature = "iggy")]
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use connector::iggy::IggyOutput;
use connector::{ConnectorConfig, ElasticsearchSource, Output, OutputConfig, RunOptions, run};
use iggy::prelude::{
    Client, Consumer, Identifier, IggyClient, MessageClient, PollingStrategy, TopicClient,
};
use serde_json::json;

fn iggy_address() -> Option<String> {
    match std::env::var("IGGY_TCP_ADDRESS") {
        Ok(a) if !a.trim().is_empty() => Some(a),
        _ => {
            eprintln!("IGGY_TCP_ADDRESS is not set: the Iggy tests were not run");
            None
        }
    }
}

fn credentials() -> (String, String) {
    (
        std::env::var("IGGY_USERNAME").unwrap_or_else(|_| "iggy".into()),
        std::env::var("IGGY_PASSWORD").unwrap_or_else(|_| "iggy".into()),
    )
}

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

/// Every message of `stream/docs`: (partition, id, es_id header).
async fn topic_messages(iggy: &str, stream: &str) -> Vec<(u32, u128, String)> {
    let (user, password) = credentials();
    let client =
        IggyClient::from_connection_string(&format!("iggy://{user}:{password}@{iggy}")).unwrap();
    client.connect().await.unwrap();
    let s = Identifier::named(stream).unwrap();
    let t = Identifier::named("docs").unwrap();
    let details = client
        .get_topic(&s, &t)
        .await
        .unwrap()
        .expect("topic exists");
    let consumer = Consumer::new(Identifier::numeric(7).unwrap());
    let mut all = Vec::new();
    for p in &details.partitions {
        let mut offset = 0;
        while offset < p.messages_count {
            let polled = client
                .poll_messages(
                    &s,
                    &t,
                    Some(p.id),
                    &consumer,
                    &PollingStrategy::offset(offset),
                    1000,
                    false,
                )
                .await
                .unwrap();
            if polled.messages.is_empty() {
                break;
            }
            for m in &polled.messages {
                let headers = m.user_headers_map().unwrap().unwrap_or_default();
                let es_id = headers
                    .iter()
                    .find(|(k, _)| k.to_string_value() == "es_id")
                    .map(|(_, v)| v.to_string_value())
                    .unwrap_or_default();
                all.push((p.id, m.header.id, es_id));
            }
            offset += polled.messages.len() as u64;
        }
    }
    all
}

fn unique_stream(tag: &str) -> String {
    format!("{}-{}", unique_index(tag), std::process::id())
}

/// A crash after the send and before the state save: the restarted run reads
/// the topic's tail and sends nothing twice; every document is there once, with
/// its deterministic id and headers.
#[tokio::test]
async fn a_crash_between_send_and_save_adds_no_duplicates() {
    let (Some(es), Some(iggy)) = (es_url(), iggy_address()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::standard(&es, "iggy-tail").await;
    index
        .load(&docs(1000, 0, |i| {
            json!(format!("2024-01-15T10:30:{:02}Z", i / 100))
        }))
        .await;
    let stream = unique_stream("tail");
    let cfg = config(&es, &index.name, &iggy, &stream, "balanced", 1, dir.path());
    {
        let mut source = ElasticsearchSource::new(1, cfg.plugin_config.clone());
        source.open().await.unwrap();
        let mut out = output(&cfg).await;
        for _ in 0..3 {
            let batch = source.poll_batch().await.unwrap();
            out.send(&batch.messages).await.unwrap();
            commit(&mut source, batch.ack.as_ref().unwrap()).await;
        }
        // Sent, then the process dies before the state is saved.
        let batch = source.poll_batch().await.unwrap();
        out.send(&batch.messages).await.unwrap();
        // And half of the next one (a send cut short by the crash).
        let batch = source.poll_batch().await.unwrap();
        out.send(&batch.messages[..50]).await.unwrap();
    }
    let mut source = ElasticsearchSource::new(1, cfg.plugin_config.clone());
    source.open().await.unwrap();
    let mut out = output(&cfg).await;
    let summary = run(
        &mut source,
        out.as_mut(),
        RunOptions {
            once: true,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    out.close().await.unwrap();
    assert_eq!(summary.documents, 700, "{summary:?}");
    assert_eq!(summary.skipped, 150, "{summary:?}");

    let messages = topic_messages(&iggy, &stream).await;
    assert_eq!(messages.len(), 1000, "exactly one message per document");
    let es_ids: HashSet<_> = messages.iter().map(|(_, _, e)| e.clone()).collect();
    assert_eq!(es_ids.len(), 1000);
    let ids: HashSet<_> = messages.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(ids.len(), 1000);
    // The ids are the source's deterministic ones.
    let expected = connector::MessageId::of(&index.name, "d000000", Some(0)).0;
    assert!(
        ids.contains(&expected) || messages.iter().any(|(_, _, e)| e == "d000000"),
        "document d000000 is in the topic"
    );
}

/// Partitioning by a field keeps equal values together; with balanced
/// partitioning over several partitions nothing is missing either.
#[tokio::test]
async fn partitioning_by_field_and_balanced() {
    let (Some(es), Some(iggy)) = (es_url(), iggy_address()) else {
        return;
    };
    let index = TestIndex::standard(&es, "iggy-part").await;
    index
        .load(&docs(600, 0, |i| {
            json!(format!("2024-01-15T10:30:{:02}Z", i / 60))
        }))
        .await;
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
        let mut source = ElasticsearchSource::new(1, cfg.plugin_config.clone());
        source.open().await.unwrap();
        let mut out = output(&cfg).await;
        let summary = run(
            &mut source,
            out.as_mut(),
            RunOptions {
                once: true,
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
        out.close().await.unwrap();
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
                "{streams}{base}[output]\nkind = \"iggy\"\ntoken = \"x\"\ntransport = \"http\"\n"
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
