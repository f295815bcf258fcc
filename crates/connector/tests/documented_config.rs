//! The configuration blocks of the connector's documentation, pasted as they are
//! (`tests/fixtures/documented/`, see its README): they are not valid TOML, and
//! `es-connector` reads them anyway, with one warning, and `config fmt` rewrites them.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::es_url;
use connector::ConnectorConfig;
use serde_json::json;
use state_core::StorageSettings;

const FIXTURES: [&str; 5] = [
    "basic",
    "state_management",
    "storage_file",
    "storage_elasticsearch",
    "storage_redis",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/documented")
        .join(format!("{name}.toml"))
}

fn es_connector(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_es-connector"))
        .args(args)
        .current_dir(cwd)
        .env_remove("ES_CONNECTOR_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run es-connector: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The comments of a configuration text, in order.
fn comments(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.find('#').map(|at| l[at..].trim().to_owned()))
        .collect()
}

/// The state backend each documented block configures, and its other state keys.
fn assert_documented_values(name: &str, config: &ConnectorConfig) {
    let p = &config.plugin_config;
    assert_eq!(p.url, "http://localhost:9200", "{name}");
    assert_eq!(p.index, "logs-*", "{name}");
    let validated = p.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(validated.query(), &json!({"match_all": {}}), "{name}");
    let settings = validated.state_settings().cloned();
    let state = p.state.as_ref();
    match name {
        "basic" => {
            assert_eq!(config.kind.as_deref(), Some("source"));
            assert_eq!(config.key.as_deref(), Some("elasticsearch"));
            assert_eq!(config.streams.len(), 1);
            assert_eq!(config.streams[0].topic, "documents");
            assert_eq!(p.polling_interval, Duration::from_secs(30));
            assert_eq!(p.batch_size, 100);
            assert_eq!(p.timestamp_field, "@timestamp");
            // Written out, not the default: the query is a table holding match_all.
            assert!(p.query.is_some());
            assert!(state.is_none() && settings.is_none());
        }
        "state_management" => {
            let state = state.unwrap();
            assert!(state.enabled);
            assert_eq!(state.state_id, "elasticsearch_logs_connector");
            assert_eq!(state.auto_save_interval, Duration::from_secs(300));
            assert_eq!(
                state.tracked_fields,
                [
                    "last_poll_timestamp",
                    "last_document_id",
                    "total_documents_fetched"
                ]
            );
            assert_eq!(
                settings,
                Some(StorageSettings::File {
                    base_path: "./connector_states".into()
                })
            );
        }
        "storage_file" => assert_eq!(
            settings,
            Some(StorageSettings::File {
                base_path: "./connector_states".into()
            })
        ),
        "storage_elasticsearch" => assert_eq!(
            settings,
            Some(StorageSettings::Elasticsearch {
                endpoint: connector::config::Endpoint::from_url(
                    "http://localhost:9200"
                        .parse()
                        .unwrap_or_else(|e| panic!("{e}"))
                ),
                index: "connector_states".parse().unwrap_or_else(|e| panic!("{e}")),
            })
        ),
        "storage_redis" => assert_eq!(
            settings,
            Some(StorageSettings::Redis {
                url: "redis://localhost:6379".into(),
                key_prefix: "connector_states:".into()
            })
        ),
        other => panic!("no expectations for {other}"),
    }
    if name != "basic" {
        assert!(state.is_some_and(|s| s.enabled), "{name}");
    }
}

#[test]
fn every_documented_block_loads_with_its_values() {
    for name in FIXTURES {
        let path = fixture(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            toml::from_str::<toml::Table>(&text).is_err(),
            "{name} is valid TOML: the test would prove nothing"
        );
        let from_file = ConnectorConfig::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_documented_values(name, &from_file);
        let from_text = ConnectorConfig::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{from_text:?}"), format!("{from_file:?}"), "{name}");
    }
}

#[test]
fn config_fmt_rewrites_each_block_as_toml_with_the_same_meaning() {
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let original = std::fs::read_to_string(fixture(name)).unwrap();
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &original).unwrap();
        let file = path.to_str().unwrap();

        let check = es_connector(&["config", "fmt", "--check", file], dir.path());
        assert_eq!(check.status.code(), Some(1), "{name}: {}", stderr(&check));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original, "{name}");

        let fmt = es_connector(&["config", "fmt", file], dir.path());
        assert!(fmt.status.success(), "{name}: {}", stderr(&fmt));
        assert!(stdout(&fmt).starts_with(&format!("rewrote {file} as valid TOML")));
        let rewritten = std::fs::read_to_string(&path).unwrap();
        toml::from_str::<toml::Table>(&rewritten).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            format!("{:?}", ConnectorConfig::from_file(&path).unwrap()),
            format!("{:?}", ConnectorConfig::from_toml(&original).unwrap()),
            "{name}"
        );
        assert_eq!(comments(&rewritten), comments(&original), "{name}");

        let again = es_connector(&["config", "fmt", file], dir.path());
        assert!(again.status.success(), "{name}: {}", stderr(&again));
        assert_eq!(
            stdout(&again).trim_end(),
            format!("{file} is valid TOML already; nothing changed")
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), rewritten, "{name}");
        let check = es_connector(&["config", "fmt", "--check", file], dir.path());
        assert!(check.status.success(), "{name}: {}", stdout(&check));
    }
    // Only the configuration was written: no temporary file is left behind.
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        FIXTURES.len()
    );
}

#[test]
fn a_block_never_closed_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(fixture("state_management")).unwrap();
    // The documentation's block without its last `}`.
    let broken = text.trim_end().strip_suffix('}').unwrap();
    std::fs::write(&path, broken).unwrap();
    let file = path.to_str().unwrap();
    let expected = format!(
        "error: {file}, line 5: `state = {{` opens a table that is never closed; write it as a `[plugin_config.state]` table"
    );
    for args in [
        &["check", "--config", file][..],
        &["config", "fmt", file][..],
    ] {
        let out = es_connector(args, dir.path());
        assert!(!out.status.success());
        assert_eq!(stderr(&out).trim_end(), expected, "{args:?}");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
}

#[test]
fn check_reads_each_documented_block_with_one_warning() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let states = dir.path().join("states");
    for name in FIXTURES {
        // The documented text, but the cluster is the test server and the state
        // files go to the temporary directory.
        let text = std::fs::read_to_string(fixture(name))
            .unwrap()
            .replace("http://localhost:9200", &url)
            .replace("./connector_states", states.to_str().unwrap());
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &text).unwrap();
        let file = path.to_str().unwrap();
        let out = es_connector(&["check", "--config", file], dir.path());
        let err = stderr(&out);
        assert!(out.status.success(), "{name}: {err}");
        assert!(
            stdout(&out).starts_with(&format!("configuration {file} is valid\n")),
            "{name}: {}",
            stdout(&out)
        );
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains(" WARN ")).collect();
        assert_eq!(warnings.len(), 1, "{name}: {err}");
        assert!(
            warnings[0].ends_with(&format!(
                "{file} is not valid TOML: it writes tables the way the connector's documentation does (`key = {{` over several lines, no commas). It was read as this TOML; `es-connector config fmt {file}` writes it into the file:"
            )),
            "{name}: {err}"
        );
        let fmt = es_connector(&["config", "fmt", file], dir.path());
        assert!(fmt.status.success(), "{name}: {}", stderr(&fmt));
        // The TOML shown is the TOML `config fmt` writes.
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(err.contains(written.trim_end()), "{name}: {err}");
        // Valid TOML is read without a word.
        let out = es_connector(&["check", "--config", file], dir.path());
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{name}");
    }
}
