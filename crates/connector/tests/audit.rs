//! `es-connector audit` against the test server (`ES_URL`): after a run it finds
//! nothing wrong; a document that arrived late behind the cursor is named as
//! missed (exit status 1), a message written twice counts as duplicated, a
//! document deleted since delivery as deleted. For the `file` output (read back
//! line by line) and the `elasticsearch` output (the target index). And
//! `late_window` through the stdout and elasticsearch outputs.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::{Value, json};

/// 300 documents, one per second from 2024-05-01T10:00:00Z (five 1-minute buckets).
fn second(i: usize) -> Value {
    json!(format!("2024-05-01T10:{:02}:{:02}Z", i / 60, i % 60))
}

fn config_file(dir: &Path, url: &str, index: &str, output: &str) -> String {
    let text = format!(
        "{output}\n[plugin_config]\nurl = \"{url}\"\nindex = \"{index}\"\nbatch_size = 100\n\
         tiebreaker_field = \"id\"\n[plugin_config.state]\nstorage_type = \"file\"\n\
         state_id = \"audit\"\nauto_save_interval = \"0s\"\n\
         [plugin_config.state.storage_config]\nbase_path = \"{states}\"\n",
        states = dir.join("states").display(),
    );
    let path = dir.join("connector.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn es_connector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_es-connector"))
        .args(args)
        .output()
        .unwrap()
}

fn audit_json(cfg: &str) -> (Option<i32>, Value, String) {
    let out = es_connector(&["audit", "--config", cfg, "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a report ({e}): {stdout}\n{stderr}"));
    (out.status.code(), report, stderr)
}

fn run_once(cfg: &str) {
    let out = es_connector(&["run", "--config", cfg, "--once", "--no-progress"]);
    assert!(
        out.status.success(),
        "run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn delete(index: &TestIndex, id: &str) {
    let r = index
        .http()
        .delete(format!(
            "{}/{}/_doc/{id}?refresh=true",
            index.url, index.name
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Makes what was indexed into `target` (on `index`'s server) searchable.
async fn refresh(index: &TestIndex, target: &str) {
    let refreshed = index
        .http()
        .post(format!("{}/{target}/_refresh", index.url))
        .send()
        .await
        .unwrap();
    assert!(refreshed.status().is_success());
}

#[tokio::test]
async fn the_audit_names_missed_duplicated_and_deleted_documents_of_the_file_output() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::holding(&url, "audit-file", 300, second).await;
    let out = dir.path().join("out.jsonl");
    let output = format!("[output]\nkind = \"file\"\npath = \"{}\"\n", out.display());
    let cfg = config_file(dir.path(), &url, &index.name, &output);
    run_once(&cfg);

    let (status, report, stderr) = audit_json(&cfg);
    assert_eq!(status, Some(0), "{report}\n{stderr}");
    // Up to the committed cursor's timestamp (10:04:59), exclusive: what shares it
    // may still be in flight.
    assert_eq!(report["until"], "2024-05-01T10:04:59Z", "{report}");
    assert_eq!(report["indexed"], 299, "{report}");
    assert_eq!(report["delivered"], 299, "{report}");
    assert_eq!(report["differences"], json!([]), "{report}");

    // A document stamped 10:01:30.5, indexed after the cursor passed it.
    index
        .load(&[json!({"id": "late", "@timestamp": "2024-05-01T10:01:30.500Z", "n": -1})])
        .await;
    // The line of d000200 written twice (a crash between write and commit).
    let text = std::fs::read_to_string(&out).unwrap();
    let line = text.lines().find(|l| l.contains("\"d000200\"")).unwrap();
    std::fs::write(&out, format!("{text}{line}\n")).unwrap();
    // d000010 deleted from the index since it was delivered.
    delete(&index, "d000010").await;

    let (status, report, stderr) = audit_json(&cfg);
    assert_eq!(status, Some(1), "missed documents fail the audit: {report}");
    assert!(stderr.contains("1 documents"), "{stderr}");
    assert_eq!(
        (&report["missed"], &report["duplicated"], &report["deleted"]),
        (&json!(1), &json!(1), &json!(1)),
        "{report}"
    );
    let by_start = |start: &str| {
        report["differences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["start"] == start)
            .cloned()
            .unwrap_or_else(|| panic!("no bucket {start}: {report}"))
    };
    let late = by_start("2024-05-01T10:01:00Z");
    assert_eq!(
        late["missed_examples"],
        json!([format!("{}/late", index.name)]),
        "{late}"
    );
    assert_eq!(by_start("2024-05-01T10:03:00Z")["duplicated"], 1);
    assert_eq!(by_start("2024-05-01T10:00:00Z")["deleted"], 1);

    let bad = es_connector(&["audit", "--config", &cfg, "--bucket", "1500us"]);
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && said.contains("--bucket"), "{said}");

    // The table says the same to a person.
    let out = es_connector(&["audit", "--config", &cfg]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&format!("{}/late", index.name))
            && table.contains("1 missed, 1 duplicated, 1 deleted"),
        "{table}"
    );
}

#[tokio::test]
async fn the_audit_reads_the_elasticsearch_output_back_from_its_target_index() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::holding(&url, "audit-src", 150, second).await;
    let target = unique_index("audit-dst");
    let output =
        format!("[output]\nkind = \"elasticsearch\"\nurl = \"{url}\"\nindex = \"{target}\"\n");
    let cfg = config_file(dir.path(), &url, &index.name, &output);
    run_once(&cfg);
    refresh(&index, &target).await;

    let (status, report, stderr) = audit_json(&cfg);
    assert_eq!(status, Some(0), "{report}\n{stderr}");
    assert_eq!(
        (&report["indexed"], &report["delivered"]),
        (&json!(149), &json!(149)),
        "{report}"
    );

    index
        .load(&[json!({"id": "late", "@timestamp": "2024-05-01T10:00:30.500Z", "n": -1})])
        .await;
    let (status, report, _) = audit_json(&cfg);
    assert_eq!(status, Some(1), "{report}");
    assert_eq!(report["missed"], 1, "{report}");
    assert_eq!(
        report["differences"][0]["missed_examples"],
        json!([format!("{}/late", index.name)]),
        "{report}"
    );
}

/// `late_window` through the outputs the e2e scenario does not use (it writes a
/// file and an Iggy topic): a document indexed behind the cursor between two
/// runs reaches stdout once, and the target index of the elasticsearch output,
/// whose audit then finds nothing missed.
#[tokio::test]
async fn late_documents_reach_the_stdout_and_elasticsearch_outputs_once() {
    let Some(url) = es_url() else { return };
    let target = unique_index("late-dst");
    for output in [
        "[output]\nkind = \"stdout\"\n".to_owned(),
        format!("[output]\nkind = \"elasticsearch\"\nurl = \"{url}\"\nindex = \"{target}\"\n"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let index = TestIndex::holding(&url, "late-out", 150, second).await;
        let cfg = config_file(dir.path(), &url, &index.name, &output);
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            &cfg,
            text.replace(
                "batch_size = 100\n",
                "batch_size = 100\nlate_window = \"1h\"\n",
            ),
        )
        .unwrap();
        let run = || {
            let out = es_connector(&["run", "--config", &cfg, "--once", "--no-progress"]);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "run: {stderr}");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                    v["headers"]["es_id"].as_str().unwrap().to_owned()
                })
                .collect::<Vec<_>>()
        };
        let head = run();
        index
            .load(&[json!({"id": "late", "@timestamp": "2024-05-01T10:00:30.500Z", "n": -1})])
            .await;
        let late = run();
        let again = run();
        let stored: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("states").join("audit.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            stored["data"]["late_documents_delivered"], 1,
            "{output}: {stored}"
        );
        if output.contains("stdout") {
            assert_eq!(head.len(), 150, "{output}");
            assert_eq!((late, again), (vec!["late".to_owned()], vec![]), "{output}");
            continue;
        }
        refresh(&index, &target).await;
        let (status, report, stderr) = audit_json(&cfg);
        assert_eq!(status, Some(0), "{report}\n{stderr}");
        assert_eq!(report["missed"], 0, "{report}");
        assert_eq!(report["delivered"], report["indexed"], "{report}");
    }
}
