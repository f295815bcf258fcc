//! The `es-connector state` commands, run as a user runs them (file backend, no services).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const FIXTURE: &str = include_str!("../../state-core/tests/fixtures/documented_state.json");

fn es_connector(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_es-connector"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run es-connector: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that `out` is a failure saying `says`.
fn assert_fails_saying(out: &Output, says: &str) {
    assert!(!out.status.success(), "{}", text(out));
    assert!(text(out).contains(says), "{}", text(out));
}

fn write_config(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
    path.to_string_lossy().into_owned()
}

const FILE_CONFIG: &str = r#"
[plugin_config]
url = "https://elastic:hunter2@127.0.0.1:9"
index = "logs-*"
[plugin_config.state]
storage_type = "file"
state_id = "elasticsearch_logs_connector"
[plugin_config.state.storage_config]
base_path = "states"
"#;

#[test]
fn import_show_export_stats_reset_round_trip() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = write_config(dir.path(), "c.toml", FILE_CONFIG);
    let fixture = dir.path().join("fixture.json");
    std::fs::write(&fixture, FIXTURE).unwrap_or_else(|e| panic!("{e}"));

    let show = es_connector(&["state", "show", "--config", &cfg], dir.path());
    assert_fails_saying(&show, "no state is stored");

    let import = es_connector(
        &[
            "state",
            "import",
            &fixture.to_string_lossy(),
            "--config",
            &cfg,
        ],
        dir.path(),
    );
    assert!(import.status.success(), "{}", text(&import));
    let show = es_connector(&["state", "show", "--config", &cfg], dir.path());
    assert_eq!(
        String::from_utf8_lossy(&show.stdout).trim_end(),
        FIXTURE.trim_end()
    );
    let on_disk =
        std::fs::read_to_string(dir.path().join("states/elasticsearch_logs_connector.json"));
    assert_eq!(
        on_disk.ok().as_deref().map(str::trim_end),
        Some(FIXTURE.trim_end())
    );

    let export = es_connector(&["state", "export", "--config", &cfg], dir.path());
    let exported: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap_or_default();
    let fixture_value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap_or_default();
    assert_eq!(exported, fixture_value);

    let stats = es_connector(&["state", "stats", "--config", &cfg], dir.path());
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap_or_default();
    assert_eq!(stats["total_states"], 1);
    assert_eq!(stats["oldest_update"], "2024-01-15T10:30:00Z");

    let reset = es_connector(&["state", "reset", "--config", &cfg], dir.path());
    assert!(reset.status.success(), "{}", text(&reset));
    let show = es_connector(&["state", "show", "--config", &cfg], dir.path());
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap_or_default();
    assert_eq!(shown["data"]["total_documents_fetched"], 0);
    assert_eq!(
        shown["metadata"]["index"], "logs-*",
        "reset keeps the metadata"
    );

    for out in [&import, &reset] {
        assert!(!text(out).contains("hunter2"), "{}", text(out));
    }
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = write_config(
        dir.path(),
        "bad.toml",
        &format!("{FILE_CONFIG}bogus_key = 1\n"),
    );
    let out = es_connector(&["state", "show", "--config", &cfg], dir.path());
    assert_fails_saying(&out, "plugin_config.state.storage_config.bogus_key");

    let cfg = write_config(dir.path(), "c.toml", FILE_CONFIG);
    let bad_json = dir.path().join("bad.json");
    std::fs::write(
        &bad_json,
        "{\"id\": \"elasticsearch_logs_connector\", \"version\": 7}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = es_connector(
        &[
            "state",
            "import",
            &bad_json.to_string_lossy(),
            "--config",
            &cfg,
        ],
        dir.path(),
    );
    assert_fails_saying(&out, "version 7");

    let out = es_connector(&["state", "show", "--config", "missing.toml"], dir.path());
    assert!(text(&out).contains("missing.toml"), "{}", text(&out));

    // A corrupt state file is reported with its path and left untouched.
    std::fs::create_dir_all(dir.path().join("states")).unwrap_or_else(|e| panic!("{e}"));
    let state_file = dir.path().join("states/elasticsearch_logs_connector.json");
    std::fs::write(&state_file, "{\"id\": \"elastic").unwrap_or_else(|e| panic!("{e}"));
    let out = es_connector(&["state", "reset", "--config", &cfg], dir.path());
    assert_fails_saying(&out, "elasticsearch_logs_connector.json");
    assert_eq!(
        std::fs::read_to_string(&state_file).ok().as_deref(),
        Some("{\"id\": \"elastic")
    );
}
