//! `cargo xtask e2e`: end-to-end scenarios that drive the built `es-connector`
//! binary against the test services. A scenario is a function taking [`Cx`];
//! add new ones (connector, Iggy, ...) to [`SCENARIOS`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::connector::{Connector, STATE_ID, Storage, write_config};
use crate::services::{Session, UpOptions};
use crate::util::{self, run_id};
use crate::{net, step};

mod iggy;
mod late;
mod security;
mod source;
pub mod source_kit;

type Scenario = fn(&mut Cx) -> Result<()>;

/// Every scenario: name, what it shows, function.
pub const SCENARIOS: &[(&str, &str, Scenario)] = &[
    (
        "state-round-trip",
        "import the documented state into file storage, migrate it file -> sled -> redis -> \
         elasticsearch -> file, export and count it everywhere",
        state_round_trip,
    ),
    (
        "state-reset",
        "import into every backend, reset, show zeroed counters",
        state_reset,
    ),
    (
        "state-errors",
        "an unknown config key is named in the error; showing a missing state fails",
        state_errors,
    ),
    (
        "source-shared-timestamps",
        "10000 documents with ONE timestamp, batch 100: search_after and scroll each write \
         exactly 10000 distinct ids",
        source::shared_timestamps,
    ),
    (
        "source-sigkill-restart",
        "SIGKILL `run` three times mid-read, finish with --once: every document delivered, \
         duplicates <= kills x batch",
        source::sigkill_restart,
    ),
    (
        "source-server-down-and-back",
        "a private server dies under a running connector (it retries, stays alive), comes back \
         empty; of old and new documents indexed there only the new are delivered; SIGTERM \
         exits 0 with the state saved",
        source::server_down_and_back,
    ),
    (
        "source-es-to-es",
        "output into another index: _count equal, and equal again after `state reset` and a \
         second run (idempotent by _id)",
        source::es_to_es,
    ),
    (
        "source-expired-pit",
        "a point in time deleted mid-pass under a running connector: it logs the expiry, \
         reopens, resumes from its cursor; 5000 distinct ids, duplicates <= one batch, SIGTERM \
         exits 0",
        source::expired_pit,
    ),
    (
        "source-streaming-refresh",
        "30000 documents streamed in on the index's default 1 s refresh while `run` reads, by \
         event_id and by _shard_doc: each delivered exactly once",
        source::streaming_default_refresh,
    ),
    (
        "source-late-window",
        "3000 documents streamed on the default refresh, one in twenty 1-60 s late (half into \
         an index of the pattern created mid-stream), runs throughout: with late_window \
         (SIGKILLed once), with late_window and slices = 2 (on Elasticsearch a new index moves \
         whole shards between slices) and into an Iggy topic (where one is up) every document arrives; \
         without, `audit` counts exactly the documents the output lacks and exits 1",
        late::late_window,
    ),
    (
        "source-security",
        "a private Elasticsearch 8.19 with security (plus our analysis stand-in plugin, so it \
         can keep API keys): HTTPS with a private CA, with basic authentication and with an \
         API key, delivers every document; a wrong CA fails naming the certificate, a wrong \
         password and a wrong API key fail naming 401; no secret in output, logs or state. \
         Then the state store (inheriting the source's API key and CA; with credentials of its \
         own), the `elasticsearch` output and `es-connector sink` (where Iggy is up), each over \
         HTTPS with an API key and with basic credentials: everything delivered, the state \
         stored in the secured cluster; a state cluster of its own never gets the source's \
         credentials (fails naming 401)",
        security::security,
    ),
    (
        "iggy-source-sigkill",
        "50000 documents to an Iggy topic, SIGKILL three times (each time 50 more documents \
         indexed inside the range that was in flight), finish: one message per document in a \
         single partition (tail resume), none missing over three balanced ones (needs \
         IGGY_TCP_ADDRESS)",
        iggy::source_sigkill,
    ),
    (
        "iggy-sink-sigkill",
        "that topic into an index with `es-connector sink`, SIGKILL mid-way, finish: _count \
         50000, offset stored (a second run reads nothing) (needs IGGY_TCP_ADDRESS)",
        iggy::sink_sigkill,
    ),
    (
        "iggy-server-restart",
        "a private iggy-server stopped under a running connector and started again on the same \
         data: it reconnects; every document once, at most one batch repeated (needs \
         IGGY_SERVER_BIN)",
        iggy::server_restart,
    ),
    (
        "iggy-tls",
        "a private iggy-server with TLS on TCP and a test CA: every document delivered with \
         tls_ca_file; the wrong CA cannot connect (needs IGGY_SERVER_BIN and openssl)",
        iggy::tls,
    ),
];

/// The documented state document every scenario starts from.
pub fn fixture_path() -> PathBuf {
    util::root().join("crates/state-core/tests/fixtures/documented_state.json")
}

/// Step counts of a run, and how each scenario ended.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub scenarios: Vec<(&'static str, Outcome)>,
}

/// How one scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    /// It said why it could not run (e.g. no Iggy server).
    NotRun,
}

/// What a scenario works with.
#[derive(Debug)]
pub struct Cx {
    pub connector: Connector,
    pub es_url: String,
    pub redis_url: String,
    /// `IGGY_TCP_ADDRESS`, user, password, when an Iggy server is up.
    pub iggy: Option<(String, String, String)>,
    /// A fresh directory for this run's files.
    pub dir: PathBuf,
    /// Unique per run: index names, key prefixes.
    pub run_id: String,
    pub fixture: Value,
    es_indices: Vec<String>,
    redis_prefixes: Vec<String>,
    summary: Summary,
    scenario: &'static str,
    /// Set by [`Cx::not_run`] during the current scenario.
    not_run: std::cell::Cell<bool>,
}

impl Cx {
    /// Says why the current scenario does not run (it then returns `Ok`).
    pub fn not_run(&self, why: &str) {
        step!("  NOT RUN: {why}");
        self.not_run.set(true);
    }

    /// Runs one step: prints it, counts it; a failed step ends its scenario.
    pub fn step<T>(&mut self, what: &str, f: impl FnOnce(&mut Cx) -> Result<T>) -> Result<T> {
        step!("e2e: [{}] {what}", self.scenario);
        match f(self) {
            Ok(v) => {
                self.summary.passed += 1;
                Ok(v)
            }
            Err(e) => {
                self.summary.failed += 1;
                step!("e2e: [{}] FAILED: {what}\n{e:#}", self.scenario);
                Err(e.context(format!("step `{what}`")))
            }
        }
    }

    /// A storage of `kind` private to this run (unique dir, key prefix or index).
    pub fn storage(&mut self, kind: &str, name: &str) -> Result<Storage> {
        Ok(match kind {
            "file" => Storage::File {
                base_path: self.dir.join(format!("{name}-states")),
            },
            "sled" => Storage::Sled {
                path: self.dir.join(format!("{name}.sled")),
            },
            "redis" => {
                let key_prefix = format!("xtask-e2e:{}:{name}:", self.run_id);
                self.redis_prefixes.push(key_prefix.clone());
                Storage::Redis {
                    url: self.redis_url.clone(),
                    key_prefix,
                }
            }
            "elasticsearch" => {
                let index = format!("xtask-e2e-{}-{name}", self.run_id).to_lowercase();
                self.es_indices.push(index.clone());
                Storage::Elasticsearch {
                    url: self.es_url.clone(),
                    index,
                }
            }
            other => bail!("unknown storage kind `{other}`"),
        })
    }

    /// Writes a config for `storage` named `<name>.toml`; returns its path as a string.
    pub fn config(&self, name: &str, storage: &Storage, extra: &str) -> Result<String> {
        let path = write_config(
            &self.dir.join(format!("{name}.toml")),
            &self.es_url,
            storage,
            extra,
        )?;
        Ok(path.display().to_string())
    }

    /// Deletes `index` after the run.
    pub fn track_index(&mut self, index: &str) {
        self.es_indices.push(index.to_string());
    }

    fn cleanup(&self) {
        for index in &self.es_indices {
            let _ = net::http("DELETE", &self.es_url, &format!("/{index}"));
        }
        for prefix in &self.redis_prefixes {
            let _ = net::redis_delete_prefix(&self.redis_url, prefix);
        }
    }
}

/// Parses a command's stdout as JSON.
fn json(stdout: &str) -> Result<Value> {
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("output is not JSON:\n{}", stdout.trim()))
}

/// An error listing where `actual` differs from `expected`.
pub fn ensure_same_json(actual: &Value, expected: &Value) -> Result<()> {
    let mut diffs = Vec::new();
    json_diff("", actual, expected, &mut diffs);
    if !diffs.is_empty() {
        bail!(
            "differs from the fixture:\n  {}\nfull output:\n{}",
            diffs.join("\n  "),
            serde_json::to_string_pretty(actual).unwrap_or_default()
        );
    }
    Ok(())
}

fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                match a.get(k) {
                    Some(av) => json_diff(&format!("{path}/{k}"), av, bv, out),
                    None => out.push(format!("{path}/{k}: missing (expected {bv})")),
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                out.push(format!("{path}/{k}: unexpected (= {})", a[k]));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (av, bv)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}/{i}"), av, bv, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} (expected {b})")),
        _ => {}
    }
}

/// `cargo xtask e2e [--docker] [--list] [SCENARIO...]`.
pub fn cmd(args: &crate::cli::E2eArgs) -> Result<()> {
    if args.list {
        for (name, about, _) in SCENARIOS {
            println!("{name:<28} {about}");
        }
        return Ok(());
    }
    let opts = UpOptions {
        docker: args.docker,
        ..UpOptions::default()
    };
    let names = &args.scenarios;
    let session = Session::start(opts, true)?;
    let connector = Connector::build()?;
    let summary = run(&session, &connector, Select::Named(names));
    session.finish()?;
    let summary = summary?;
    if summary.failed > 0 {
        bail!("e2e: {} step(s) failed", summary.failed);
    }
    Ok(())
}

/// Runs the named scenarios (all when `names` is empty) and prints the summary line.
/// Scenarios that start a server of their own and never read `ES_URL`: in
/// `cargo xtask test` they run in the first server pass only.
pub const OWN_SERVER: [&str; 3] = [
    "source-server-down-and-back",
    "source-expired-pit",
    "source-security",
];

/// Which scenarios [`run`] runs.
#[derive(Debug, Clone, Copy)]
pub enum Select<'a> {
    /// These by name; all when empty.
    Named(&'a [String]),
    /// All but [`OWN_SERVER`] (a later server pass of `cargo xtask test`).
    UsingEsUrl,
}

pub fn run(session: &Session, connector: &Connector, select: Select<'_>) -> Result<Summary> {
    let names = match select {
        Select::Named(names) => names,
        Select::UsingEsUrl => &[],
    };
    for name in names {
        ensure!(
            SCENARIOS.iter().any(|(n, _, _)| n == name),
            "e2e: no scenario `{name}` (`cargo xtask e2e --list` lists them)"
        );
    }
    let fixture_text = std::fs::read_to_string(fixture_path())
        .with_context(|| format!("cannot read {}", fixture_path().display()))?;
    let run_id = run_id();
    let dir = util::xtask_dir().join("e2e").join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cx = Cx {
        connector: connector.clone(),
        es_url: session.get("ES_URL").context("ES_URL is not set")?.into(),
        redis_url: session
            .get("REDIS_URL")
            .context("REDIS_URL is not set")?
            .into(),
        iggy: session.get("IGGY_TCP_ADDRESS").map(|a| {
            (
                a.to_owned(),
                session.get("IGGY_USERNAME").unwrap_or("iggy").to_owned(),
                session.get("IGGY_PASSWORD").unwrap_or("iggy").to_owned(),
            )
        }),
        dir: dir.clone(),
        run_id,
        fixture: serde_json::from_str(&fixture_text)?,
        es_indices: Vec::new(),
        redis_prefixes: Vec::new(),
        summary: Summary::default(),
        scenario: "",
        not_run: std::cell::Cell::new(false),
    };
    let mut outcomes = Vec::new();
    let mut failed_scenarios = Vec::new();
    for (name, about, scenario) in SCENARIOS {
        let selected = match select {
            Select::Named(names) => names.is_empty() || names.iter().any(|n| n == name),
            Select::UsingEsUrl => !OWN_SERVER.contains(name),
        };
        if !selected {
            continue;
        }
        step!("e2e: scenario {name}: {about}");
        cx.scenario = name;
        cx.not_run.set(false);
        let outcome = match scenario(&mut cx) {
            Err(e) => {
                failed_scenarios.push(format!("{name}: {e:#}"));
                Outcome::Failed
            }
            Ok(()) if cx.not_run.get() => Outcome::NotRun,
            Ok(()) => Outcome::Passed,
        };
        outcomes.push((*name, outcome));
    }
    cx.cleanup();
    let summary = std::mem::take(&mut cx.summary);
    if failed_scenarios.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        step!("e2e: files of the failed run kept in {}", dir.display());
        for f in &failed_scenarios {
            step!("e2e: scenario {f}");
        }
    }
    // Scenarios that fail before their first step still count as a failure.
    let failed = summary.failed.max(failed_scenarios.len());
    println!("e2e: {} passed, {failed} failed", summary.passed);
    Ok(Summary {
        passed: summary.passed,
        failed,
        scenarios: outcomes,
    })
}

const BACKENDS: [&str; 4] = ["file", "sled", "redis", "elasticsearch"];

fn state_round_trip(cx: &mut Cx) -> Result<()> {
    let fixture = fixture_path().display().to_string();
    // The chain: file -> sled -> redis -> elasticsearch -> file2.
    let mut chain = Vec::new();
    for kind in BACKENDS {
        let storage = cx.storage(kind, &format!("trip-{kind}"))?;
        chain.push((
            kind.to_string(),
            cx.config(&format!("trip-{kind}"), &storage, "")?,
        ));
    }
    let file2 = cx.storage("file", "trip-file2")?;
    chain.push(("file2".into(), cx.config("trip-file2", &file2, "")?));

    let first = chain[0].1.clone();
    cx.step("import the documented state into file storage", |cx| {
        cx.connector
            .state_ok(&["import", &fixture, "--config", &first])
            .map(|_| ())
    })?;
    cx.step("`state show` from file prints the documented state", |cx| {
        let out = cx.connector.state_ok(&["show", "--config", &first])?;
        ensure_same_json(&json(&out.stdout)?, &cx.fixture)
    })?;
    for pair in chain.windows(2) {
        let [(from, from_cfg), (to, to_cfg)] = pair else {
            continue;
        };
        cx.step(&format!("migrate {from} -> {to}"), |cx| {
            cx.connector
                .state_ok(&["migrate", "--to", to_cfg, "--config", from_cfg])
                .map(|_| ())
        })?;
    }
    for (name, cfg) in &chain {
        cx.step(
            &format!("`state export` from {name} equals the fixture"),
            |cx| {
                let exported = if name == "file2" {
                    // Also cover --output.
                    let out_path = cx.dir.join("exported-file2.json");
                    let out_arg = out_path.display().to_string();
                    cx.connector
                        .state_ok(&["export", "--config", cfg, "--output", &out_arg])?;
                    std::fs::read_to_string(&out_path)
                        .with_context(|| format!("--output did not write {out_arg}"))?
                } else {
                    cx.connector.state_ok(&["export", "--config", cfg])?.stdout
                };
                ensure_same_json(&json(&exported)?, &cx.fixture)
            },
        )?;
    }
    for (name, cfg) in &chain {
        cx.step(&format!("`state stats` of {name} counts 1 state"), |cx| {
            let stats = json(&cx.connector.state_ok(&["stats", "--config", cfg])?.stdout)?;
            ensure!(
                stats["total_states"] == 1,
                "total_states is {} (expected 1) in {stats}",
                stats["total_states"]
            );
            Ok(())
        })?;
    }
    Ok(())
}

fn state_reset(cx: &mut Cx) -> Result<()> {
    let fixture = fixture_path().display().to_string();
    for kind in BACKENDS {
        let storage = cx.storage(kind, &format!("reset-{kind}"))?;
        let cfg = cx.config(&format!("reset-{kind}"), &storage, "")?;
        cx.step(
            &format!("{kind}: import, reset, show zeroed counters"),
            |cx| {
                cx.connector
                    .state_ok(&["import", &fixture, "--config", &cfg])?;
                cx.connector.state_ok(&["reset", "--config", &cfg])?;
                let shown = json(&cx.connector.state_ok(&["show", "--config", &cfg])?.stdout)?;
                ensure_zeroed(&shown)
            },
        )?;
    }
    Ok(())
}

fn ensure_zeroed(state: &Value) -> Result<()> {
    ensure!(
        state["id"] == STATE_ID,
        "id is {} (expected {STATE_ID})",
        state["id"]
    );
    let counters = [
        "/data/total_documents_fetched",
        "/data/poll_count",
        "/data/last_offset",
        "/data/error_count",
        "/data/processing_stats/total_bytes_processed",
        "/data/processing_stats/empty_polls_count",
        "/data/processing_stats/successful_polls_count",
    ];
    for pointer in counters {
        let v = state.pointer(pointer).unwrap_or(&Value::Null);
        ensure!(
            v.is_null() || v == 0,
            "{pointer} is {v} after reset (expected 0) in\n{state:#}"
        );
    }
    Ok(())
}

fn state_errors(cx: &mut Cx) -> Result<()> {
    let storage = cx.storage("file", "errors")?;
    let bad_storage = cx.config(
        "bad-storage-key",
        &storage,
        "no_such_storage_option = true\n",
    )?;
    cx.step(
        "an unknown storage_config key is named in the error",
        |cx| {
            expect_failure_naming(
                cx,
                &["show", "--config", &bad_storage],
                "no_such_storage_option",
            )
        },
    )?;
    let good = cx.config("errors", &storage, "")?;
    let bad_state = bad_state_config(Path::new(&good), &cx.dir.join("bad-state-key.toml"))?;
    cx.step("an unknown state key is named in the error", |cx| {
        expect_failure_naming(
            cx,
            &["stats", "--config", &bad_state],
            "no_such_state_option",
        )
    })?;
    cx.step(
        "`state show` with nothing stored fails with a message",
        |cx| {
            let out = cx.connector.state(&["show", "--config", &good])?;
            ensure!(!out.status.success(), "it succeeded:\n{}", out.all());
            ensure!(
                !out.stderr.trim().is_empty(),
                "it printed no message on stderr"
            );
            Ok(())
        },
    )?;
    Ok(())
}

/// A copy of config `good` with an unknown key in `[plugin_config.state]`.
fn bad_state_config(good: &Path, out: &Path) -> Result<String> {
    let text = std::fs::read_to_string(good)?.replacen(
        "enabled = true\n",
        "enabled = true\nno_such_state_option = 1\n",
        1,
    );
    std::fs::write(out, text)?;
    Ok(out.display().to_string())
}

fn expect_failure_naming(cx: &Cx, args: &[&str], key: &str) -> Result<()> {
    let out = cx.connector.state(args)?;
    ensure!(!out.status.success(), "it succeeded:\n{}", out.all().trim());
    ensure!(
        out.stderr.contains(key),
        "the error does not name `{key}`:\n{}",
        out.all().trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_diff_names_paths() {
        let a = serde_json::json!({"a": 1, "b": {"c": 2}, "x": true});
        let b = serde_json::json!({"a": 1, "b": {"c": 3}, "d": null});
        let mut diffs = Vec::new();
        json_diff("", &a, &b, &mut diffs);
        assert_eq!(
            diffs,
            [
                "/b/c: 2 (expected 3)",
                "/d: missing (expected null)",
                "/x: unexpected (= true)"
            ]
        );
        assert!(ensure_same_json(&a, &a).is_ok());
    }

    #[test]
    fn zeroed_counters() {
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture_path()).unwrap_or_default())
                .unwrap_or_default();
        assert!(ensure_zeroed(&fixture).is_err());
        let reset = serde_json::json!({"id": STATE_ID, "data": {"poll_count": 0}});
        assert!(ensure_zeroed(&reset).is_ok());
    }
}
