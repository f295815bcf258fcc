//! `es-connector run` and `check` as a user runs them, against the test server
//! (`ES_URL`): SIGKILL and restart, SIGTERM, secrets, bad keys.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

fn config_file(dir: &Path, url: &str, index: &str, extra: &str) -> String {
    let text = format!(
        "[output]\nkind = \"file\"\npath = \"{out}\"\n\n[plugin_config]\nurl = \"{url}\"\nindex = \"{index}\"\nbatch_size = 100\ntiebreaker_field = \"id\"\n{extra}\n[plugin_config.state]\nstorage_type = \"file\"\nstate_id = \"bin\"\nauto_save_interval = \"0s\"\n[plugin_config.state.storage_config]\nbase_path = \"{states}\"\n",
        out = dir.join("out.jsonl").display(),
        states = dir.join("states").display(),
    );
    let path = dir.join("connector.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Creates a test index (`TestIndex::holding`) from this synchronous test: the
/// binary under test runs as a process of its own, no runtime is needed after.
fn blocking_index(create: impl std::future::Future<Output = TestIndex>) -> TestIndex {
    tokio::runtime::Runtime::new().unwrap().block_on(create)
}

fn es_connector(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_es-connector"));
    cmd.args(args).env("ES_CONNECTOR_LOG", "info");
    cmd
}

/// Runs `cmd` to its end and asserts it succeeded (the failure shows its
/// stderr); its stdout and stderr.
fn succeeded(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn output_ids(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["headers"]["es_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Kills the child if the test fails midway, so no process outlives the test.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `run` and returns once its stderr reports `wanted` committed documents.
fn spawn_until_progress(
    cfg: &str,
    extra_args: &[&str],
    wanted: u64,
) -> (Reap, BufReader<std::process::ChildStderr>) {
    let mut args = vec!["run", "--config", cfg];
    args.extend_from_slice(extra_args);
    let mut child = Reap(
        es_connector(&args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "es-connector ended before reporting progress"
        );
        if let Some(n) = line
            .split("documents=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            && line.contains("batch committed")
            && n >= wanted
        {
            return (child, stderr);
        }
    }
}

#[test]
fn sigkill_at_any_moment_then_restart_delivers_every_document() {
    let Some(url) = es_url() else { return };
    let index = blocking_index(TestIndex::holding(&url, "sigkill", 3000, |i| {
        json!(format!("2024-01-15T10:{:02}:00Z", i % 60))
    }));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), &url, &index.name, "polling_interval = \"1h\"\n");
    let (mut child, _stderr) = spawn_until_progress(&cfg, &[], 300);
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let before = output_ids(dir.path()).len();
    let (_, stderr) = succeeded(&mut es_connector(&["run", "--config", &cfg, "--once"]));
    assert!(
        stderr.contains("done:") && stderr.contains("docs/s") && stderr.contains("cursor"),
        "{stderr}"
    );
    let ids = output_ids(dir.path());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(
        counts.len(),
        3000,
        "every document delivered (had {before} before the kill)"
    );
    let duplicates = ids.len() - counts.len();
    assert!(
        duplicates <= 100,
        "{duplicates} duplicates: more than one batch"
    );
}

#[test]
fn sigterm_finishes_the_batch_saves_and_exits_zero() {
    let Some(url) = es_url() else { return };
    let index = blocking_index(TestIndex::holding(&url, "sigterm", 500, |_| {
        json!("2024-01-15T10:30:00Z")
    }));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), &url, &index.name, "polling_interval = \"1h\"\n");
    let (mut child, mut stderr) = spawn_until_progress(&cfg, &[], 500);
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit {status:?}: {rest}");
    assert!(rest.contains("stopped: 500 documents"), "{rest}");
    let state = stored_state(&dir.path().join("states"), "bin");
    assert_eq!(state["data"]["total_documents_fetched"], 500);
    assert_eq!(output_ids(dir.path()).len(), 500);
}

#[test]
fn secrets_never_appear_in_output_logs_state_or_check() {
    let Some(url) = es_url() else { return };
    let index = blocking_index(TestIndex::holding(&url, "secrets", 150, |_| {
        json!("2024-01-15T10:30:00Z")
    }));
    let with_password = url.replacen("://", "://elastic:Pw-hunter2-secret@", 1);
    for (n, (url, extra, secret)) in [
        (with_password.as_str(), "", "Pw-hunter2-secret"),
        (
            url.as_str(),
            "api_key = \"QXBpS2V5LXNlY3JldA==\"\n",
            "QXBpS2V5LXNlY3JldA==",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_file(dir.path(), url, &index.name, extra);
        let mut everything = String::new();
        for args in [
            vec!["check", "--config", &cfg],
            vec!["run", "--config", &cfg, "--once"],
            vec!["state", "show", "--config", &cfg],
        ] {
            let (stdout, stderr) = succeeded(es_connector(&args).env("ES_CONNECTOR_LOG", "debug"));
            everything.push_str(&stdout);
            everything.push_str(&stderr);
        }
        assert!(
            everything.contains("OpenSearch") || everything.contains("Elasticsearch"),
            "{everything}"
        );
        everything.push_str(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
        let state = std::fs::read_to_string(dir.path().join("states/bin.json")).unwrap();
        everything.push_str(&state);
        assert_eq!(output_ids(dir.path()).len(), 150, "case {n}");
        assert!(
            !everything.contains(secret),
            "case {n}: the secret leaked:\n{everything}"
        );
        assert!(
            !everything.contains("elastic:"),
            "case {n}: URL userinfo leaked"
        );
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert_eq!(
            state["metadata"]["url"],
            json!(url.replace("elastic:Pw-hunter2-secret@", ""))
        );
    }
    // An unreachable server: the error names it, without the password.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config_file(
        dir.path(),
        &format!("http://elastic:Pw-hunter2-secret@127.0.0.1:{port}"),
        "x",
        "",
    );
    let out = es_connector(&["check", "--config", &cfg])
        .env("ES_CONNECTOR_LOG", "debug")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("Pw-hunter2-secret"), "{text}");
}

#[test]
fn check_names_a_bad_key_and_reports_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        "http://127.0.0.1:9",
        "x",
        "paginaton = \"scroll\"\n",
    );
    let out = es_connector(&["check", "--config", &cfg]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("plugin_config.paginaton"), "{text}");
    let Some(url) = es_url() else { return };
    let cfg = config_file(dir.path(), &url, "logs-*", "");
    let (text, _) = succeeded(&mut es_connector(&["check", "--config", &cfg]));
    assert!(
        text.contains("is OpenSearch") || text.contains("is Elasticsearch"),
        "{text}"
    );
    assert!(text.contains("(version "), "{text}");
}

/// `run --once` on an index that does not exist ends with an error naming it
/// (in every pagination mode), instead of waiting for the index forever.
#[test]
fn once_on_a_missing_index_fails_naming_it() {
    let Some(url) = es_url() else { return };
    let index = unique_index("missing");
    for pagination in ["search_after", "cursor", "scroll"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_file(
            dir.path(),
            &url,
            &index,
            &format!("pagination = \"{pagination}\"\n"),
        );
        let mut child = es_connector(&["run", "--config", &cfg, "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a run that waits for the index would be killed here and fail below.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let status =
            status.unwrap_or_else(|| panic!("{pagination}: still waiting after 60 s:\n{err}"));
        assert!(!status.success(), "{pagination}: {err}");
        assert!(
            err.contains(&index) && err.contains("index_not_found"),
            "{pagination}: {err}"
        );
    }
}
