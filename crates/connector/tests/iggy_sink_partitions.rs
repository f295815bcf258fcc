//! `es-connector sink` on a topic with three partitions, SIGKILLed again and
//! again mid-way: every good message ends up in the index exactly once and
//! every refused one in the dead-letter file, and a last run finds nothing.
//! Against a real Iggy server (`IGGY_TCP_ADDRESS`) and `ES_URL`; without
//! `IGGY_TCP_ADDRESS` it does nothing (Iggy is not installable from the
//! registries; `cargo xtask test` says so in one line).

#![cfg(feature = "iggy")]
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use iggy::prelude::{Identifier, IggyMessage, MessageClient, Partitioning};
use serde_json::{Value, json};

const PARTITIONS: u32 = 3;
const SENDS: u64 = 30;
const PER_SEND: u64 = 500;
/// `batch_length` of the sink: one send is one poll.
const BATCH: u64 = 500;

/// What message `k` is: a good document, a payload that is not JSON, or a
/// document the index's mapping refuses (`n` must be a long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Good,
    NotJson,
    BadType,
}

fn kind(k: u64) -> Kind {
    match k % 150 {
        7 => Kind::NotJson,
        80 => Kind::BadType,
        _ => Kind::Good,
    }
}

fn payload(k: u64) -> String {
    match kind(k) {
        Kind::Good => json!({"id": format!("m{k}"), "n": k}).to_string(),
        Kind::NotJson => format!("{{not json {k}"),
        Kind::BadType => json!({"id": format!("m{k}"), "n": format!("x{k}")}).to_string(),
    }
}

/// Creates `stream/docs` with three partitions (through the output, which
/// copes with servers refusing this client's default topic options), then
/// sends `SENDS` sends of `PER_SEND` messages, balanced: each send lands in one
/// partition, in turn.
async fn fill(iggy: &str, stream: &str) {
    create_topic_through_output(iggy, stream, &format!("partitions = {PARTITIONS}\n")).await;
    let client = iggy_client(iggy).await;
    let (s, t) = (
        Identifier::named(stream).unwrap(),
        Identifier::named("docs").unwrap(),
    );
    for send in 0..SENDS {
        let mut messages: Vec<IggyMessage> = (send * PER_SEND..(send + 1) * PER_SEND)
            .map(|k| message_with_es_id(&format!("m{k}"), payload(k)))
            .collect();
        client
            .send_messages(&s, &t, &Partitioning::balanced(), &mut messages)
            .await
            .unwrap();
    }
}

fn sink_toml(iggy: &str, stream: &str, es: &str, index: &str, dead: &Path) -> String {
    let (user, password) = credentials();
    format!(
        "[[streams]]\nstream = \"{stream}\"\ntopic = \"docs\"\nbatch_length = {BATCH}\n\
         [input]\nkind = \"iggy\"\naddress = \"{iggy}\"\nusername = \"{user}\"\npassword = \"{password}\"\n\
         consumer = \"parts\"\npoll_interval = \"100ms\"\n\
         [output]\nkind = \"elasticsearch\"\nurl = \"{es}\"\nindex = \"{index}\"\n\
         [dead_letter]\npath = \"{}\"\n",
        dead.display()
    )
}

/// A running `es-connector sink` whose stderr lines arrive on a channel.
struct Sink {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sink {
    fn spawn(cfg: &Path) -> Sink {
        let (child, lines) = common::child::spawn_reading_stderr(
            Command::new(env!("CARGO_BIN_EXE_es-connector"))
                .args(["sink", "--config"])
                .arg(cfg)
                .env("ES_CONNECTOR_LOG", "info"),
        );
        Sink { child, lines }
    }

    /// Waits (bounded) for `n` batches stored, then SIGKILLs the sink; the
    /// next batch is then somewhere between its poll and its offset.
    fn kill_after_batches(mut self, n: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut stored = 0;
        while stored < n {
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    stored += usize::from(line.contains("offset stored"));
                    seen.push(line);
                }
                Err(e) => panic!(
                    "the sink stored {stored} of {n} batches ({e}); it said:\n{}",
                    seen.join("\n")
                ),
            }
        }
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        seen
    }
}

/// `es-connector sink --once` to its end; its stdout and stderr.
fn sink_once(cfg: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_es-connector"))
        .args(["sink", "--once", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "sink --once failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// The `es_id` header of each dead-letter record, with how often it is there.
fn dead_lettered(path: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let id = record["headers"]["es_id"].as_str().unwrap().to_owned();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_twelve_times_on_three_partitions_the_sink_loses_nothing() {
    let (Some(es), Some(iggy)) = (es_url(), iggy_address()) else {
        return;
    };
    let index = TestIndex::create(&es, "sink-parts", json!({"n": {"type": "long"}})).await;
    let stream = format!("{}-{}", unique_index("parts"), std::process::id());
    fill(&iggy, &stream).await;

    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let cfg = dir.path().join("sink.toml");
    std::fs::write(&cfg, sink_toml(&iggy, &stream, &es, &index.name, &dead)).unwrap();

    // Twelve kills, each one to three batches into a run: 20 of the 30
    // batches are stored by killed runs, each kill lands in the next one.
    let kills = [1, 2, 1, 3, 1, 2, 1, 1, 2, 3, 1, 2];
    for (i, batches) in kills.into_iter().enumerate() {
        let seen = Sink::spawn(&cfg).kill_after_batches(batches);
        eprintln!(
            "kill {}: after {batches} batches ({} log lines)",
            i + 1,
            seen.len()
        );
    }
    let (done, _) = sink_once(&cfg);
    eprintln!("{done}");

    let total = SENDS * PER_SEND;
    let good: BTreeSet<String> = (0..total)
        .filter(|k| kind(*k) == Kind::Good)
        .map(|k| format!("m{k}"))
        .collect();
    let refused: BTreeSet<String> = (0..total)
        .filter(|k| kind(*k) != Kind::Good)
        .map(|k| format!("m{k}"))
        .collect();
    index.refresh().await;
    let indexed = index.ids().await;
    let missing: Vec<&String> = good.difference(&indexed).take(10).collect();
    let extra: Vec<&String> = indexed.difference(&good).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} of {} good messages are not in the index (first: {missing:?}); extra: {extra:?}",
        good.difference(&indexed).count(),
        good.len()
    );
    let dead_ids = dead_lettered(&dead);
    let dead_set: BTreeSet<String> = dead_ids.keys().cloned().collect();
    assert_eq!(
        dead_set,
        refused,
        "the dead-letter file must hold every refused message ({} of {})",
        dead_set.len(),
        refused.len()
    );

    let (again, _) = sink_once(&cfg);
    assert!(again.starts_with("done: 0 messages"), "{again}");
    for p in 0..PARTITIONS {
        let end = SENDS / u64::from(PARTITIONS) * PER_SEND;
        let expected = format!("consumed up to offset {end} of {end}");
        assert!(
            again
                .lines()
                .any(|l| l.starts_with(&format!("partition {p}:")) && l.ends_with(&expected)),
            "partition {p} is not consumed to its end:\n{again}"
        );
    }
}
