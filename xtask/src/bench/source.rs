//! `cargo xtask bench source`: reading a whole index, side by side in one run
//! against the test server, same index and page size:
//!
//! - `es-connector run --once` (file output, file state, `pagination = "cursor"`);
//! - the floor: a raw `search_after` loop (the `source_scan` bench of the connector
//!   crate) sending the same request bodies over one keep-alive connection and
//!   reading only the last hit's sort values;
//! - opensearch-py's `helpers.scan` (scroll; bench/source/scan.py, cached venv).
//!
//! Each contender is a child process, launched by `bench/source/scan.py measure`,
//! which reports its CPU time (wait4) and peak RSS (VmHWM). docs/s is the
//! contender's own read-loop time (its start-up and connection excluded); CPU
//! seconds per 1M docs subtract the CPU of the same contender reading an empty
//! index (its start-up). Best of 3 rounds. Then es-connector reads a smaller index
//! too, to show that its peak RSS does not grow with the index.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::services::Session;
use crate::{net, step, util};

const PAGE: usize = 1000;
const DOCS: u64 = 20_000;
const SMALL_DOCS: u64 = 5_000;
const ROUNDS: usize = 3;
/// es-connector's docs/s must reach this share of the raw loop's.
const TARGET: f64 = 0.9;
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Connector,
    Raw,
    Scan,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::Connector => "es-connector run --once (file output, file state)",
            Contender::Raw => "raw search_after loop (floor)",
            Contender::Scan => "opensearch-py 3.2.0 helpers.scan (scroll)",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Measured {
    docs: u64,
    /// The contender's own read-loop time.
    elapsed: f64,
    cpu: f64,
    rss_kib: u64,
}

impl Measured {
    fn docs_per_sec(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.docs as f64 / self.elapsed
        } else {
            0.0
        }
    }
}

struct Bench {
    url: String,
    python: PathBuf,
    scan_python: Option<PathBuf>,
    connector: PathBuf,
    helper: PathBuf,
    dir: PathBuf,
}

pub fn cmd(args: &crate::cli::DocsArgs) -> Result<()> {
    let (opts, docs) = super::docs_options(args, DOCS);
    let (connector, helper) = build()?;
    let scan_python = prepare_python()
        .map_err(|e| step!("warning: helpers.scan not measured: {e}"))
        .ok();
    let session = Session::start(opts, true)?;
    let url = session
        .get("ES_URL")
        .context("the services session has no ES_URL")?
        .to_string();
    let dir = util::xtask_dir().join("bench-source");
    std::fs::create_dir_all(&dir)?;
    let bench = Bench {
        url,
        python: std::env::var("XTASK_PYTHON")
            .unwrap_or_else(|_| "python3".into())
            .into(),
        scan_python,
        connector,
        helper,
        dir,
    };
    let result = bench.run_all(docs);
    session.finish()?;
    result
}

impl Bench {
    fn run_all(&self, docs: u64) -> Result<()> {
        let run = util::run_id();
        let big = format!("bench-source-{run}-big");
        let small = format!("bench-source-{run}-small");
        let empty = format!("bench-source-{run}-empty");
        let result = self.measure_all(docs, &big, &small, &empty);
        for index in [&big, &small, &empty] {
            let _ = net::http("DELETE", &self.url, &format!("/{index}"));
        }
        result
    }

    fn measure_all(&self, docs: u64, big: &str, small: &str, empty: &str) -> Result<()> {
        for (index, n) in [(big, docs), (small, SMALL_DOCS.min(docs)), (empty, 0)] {
            step!("indexing {n} documents into {index}");
            self.seed(index, n)?;
        }
        let mut contenders = vec![Contender::Connector, Contender::Raw];
        if self.scan_python.is_some() {
            contenders.push(Contender::Scan);
        }
        // Start-up CPU: the same contender reading an empty index.
        let mut startup = Vec::new();
        for &c in &contenders {
            let m = self.measure(c, empty, "empty")?;
            startup.push(m.cpu);
        }
        let mut best: Vec<Option<Measured>> = vec![None; contenders.len()];
        let mut rss_big = u64::MAX;
        for round in 1..=ROUNDS {
            for (i, &c) in contenders.iter().enumerate() {
                let m = self.measure(c, big, &format!("r{round}"))?;
                if m.docs != docs {
                    bail!("{}: read {} documents of {docs}", c.label(), m.docs);
                }
                step!(
                    "round {round}: {}: {:.0} docs/s, {:.2} CPU s, {} MiB",
                    c.label(),
                    m.docs_per_sec(),
                    m.cpu,
                    m.rss_kib / 1024
                );
                if c == Contender::Connector {
                    rss_big = rss_big.min(m.rss_kib);
                }
                if best[i].is_none_or(|b| m.docs_per_sec() > b.docs_per_sec()) {
                    best[i] = Some(m);
                }
            }
        }
        let mut rss_small = u64::MAX;
        for round in 1..=ROUNDS {
            let m = self.measure(Contender::Connector, small, &format!("s{round}"))?;
            rss_small = rss_small.min(m.rss_kib);
        }
        let rows: Vec<(Contender, Measured, f64)> = contenders
            .iter()
            .zip(&best)
            .zip(&startup)
            .filter_map(|((c, m), s)| m.map(|m| (*c, m, *s)))
            .collect();
        let raw = rows
            .iter()
            .find(|(c, ..)| *c == Contender::Raw)
            .map(|(_, m, _)| m.docs_per_sec())
            .unwrap_or(0.0);
        let table = Table {
            rows,
            raw,
            docs,
            small_docs: SMALL_DOCS.min(docs),
            rss_small,
            rss_big,
        };
        println!("{}", table.text());
        let checks = table.checks();
        for (ok, text) in &checks {
            step!("{} {text}", if *ok { "OK:" } else { "MISSED:" });
        }
        self.write_markdown(&table, &checks)?;
        if checks.iter().any(|(ok, _)| !ok) {
            bail!("bench source: a target was missed (see above)");
        }
        Ok(())
    }

    fn seed(&self, index: &str, docs: u64) -> Result<()> {
        let out = util::capture(
            Command::new(&self.helper)
                .args(["seed", "--url", &self.url, "--index", index, "--docs"])
                .arg(docs.to_string()),
            RUN_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!("seeding {index} failed: {}", out.all().trim());
        }
        Ok(())
    }

    fn command(&self, c: Contender, index: &str, tag: &str) -> Result<Command> {
        let page = PAGE.to_string();
        Ok(match c {
            Contender::Connector => {
                let config = self.connector_config(index, tag)?;
                let mut cmd = Command::new(&self.connector);
                cmd.args(["run", "--once", "--no-progress", "--config"])
                    .arg(config);
                cmd
            }
            Contender::Raw => {
                let mut cmd = Command::new(&self.helper);
                cmd.args(["raw", "--url", &self.url, "--index", index, "--page", &page]);
                cmd
            }
            Contender::Scan => {
                let python = self.scan_python.as_ref().context("no opensearch-py venv")?;
                let mut cmd = Command::new(python);
                cmd.arg(script()).args([
                    "scan", "--url", &self.url, "--index", index, "--page", &page,
                ]);
                cmd
            }
        })
    }

    /// A fresh file state and output for each run.
    fn connector_config(&self, index: &str, tag: &str) -> Result<PathBuf> {
        let run_dir = self.dir.join(format!("{index}-{tag}"));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(run_dir.join("state"))?;
        let text = format!(
            "[plugin_config]\nurl = {url}\nindex = {index}\nbatch_size = {PAGE}\n\
             pagination = \"cursor\"\ntiebreaker_field = \"id\"\n\n\
             [plugin_config.state]\nenabled = true\nstorage_type = \"file\"\n\
             state_id = \"bench\"\n\n[plugin_config.state.storage_config]\nbase_path = {state}\n\n\
             [output]\nkind = \"file\"\npath = {out}\n",
            url = toml_str(&self.url),
            index = toml_str(index),
            state = toml_str(&run_dir.join("state").display().to_string()),
            out = toml_str(&run_dir.join("out.jsonl").display().to_string()),
        );
        let path = run_dir.join("connector.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn measure(&self, c: Contender, index: &str, tag: &str) -> Result<Measured> {
        let contender = self.command(c, index, tag)?;
        let mut cmd = Command::new(&self.python);
        cmd.arg(script()).args(["measure", "--"]);
        cmd.arg(contender.get_program()).args(contender.get_args());
        let out = util::capture(&mut cmd, RUN_TIMEOUT)?;
        let line = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("MEASURED "))
            .with_context(|| format!("{}: no measurement: {}", c.label(), out.all().trim()))?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        let (stdout, stderr) = (
            v["stdout"].as_str().unwrap_or_default(),
            v["stderr"].as_str().unwrap_or_default(),
        );
        if v["status"].as_i64() != Some(0) {
            bail!(
                "{} failed ({}): {}{}",
                c.label(),
                v["status"],
                stdout.trim(),
                stderr.trim()
            );
        }
        let (docs, elapsed) = match c {
            Contender::Connector => connector_summary(stderr)
                .with_context(|| format!("es-connector printed no summary: {stderr}"))?,
            _ => {
                let result: serde_json::Value = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("SOURCE-BENCH "))
                    .and_then(|j| serde_json::from_str(j).ok())
                    .with_context(|| format!("{}: no result: {stdout}{stderr}", c.label()))?;
                (
                    result["docs"].as_u64().unwrap_or(0),
                    result["elapsed"].as_f64().unwrap_or(0.0),
                )
            }
        };
        Ok(Measured {
            docs,
            elapsed,
            cpu: v["cpu"].as_f64().unwrap_or(0.0),
            rss_kib: v["rss_kib"].as_u64().unwrap_or(0),
        })
    }

    fn write_markdown(&self, table: &Table, checks: &[(bool, String)]) -> Result<()> {
        let mut md = String::from("# Source benchmark\n\n");
        let _ = writeln!(
            md,
            "Measured {} on {}, with `cargo xtask bench source`, against the test server at \
             `ES_URL` ({}).\n",
            util::today_utc(),
            super::machine(),
            self.server()
        );
        let _ = writeln!(
            md,
            "Each contender reads the same index of {} small documents (~170 bytes of \
             `_source`) with pages of {PAGE}, as a child process. **docs/s** is the \
             contender's own read-loop time (start-up and the first connection excluded). \
             **CPU s / 1M docs** is the child's user+system CPU (wait4) minus that of the same \
             contender reading an empty index (its start-up), scaled to a million documents. \
             **Peak RSS** is the child's `VmHWM`, whole process. Best of {ROUNDS} rounds \
             (by docs/s).\n",
            table.docs
        );
        md.push_str(
            "- **es-connector**: `es-connector run --once --no-progress` with a file output \
             (JSON lines, fsynced per batch) and a file state saved after every batch; \
             `pagination = \"cursor\"` (`search_after` on `[@timestamp, id]`, no point in \
             time).\n\
             - **raw**: the floor, `crates/connector/benches/source_scan.rs raw`: the same \
             request bodies (built by `es-query` like the connector's), one keep-alive \
             connection, only the last hit's sort values read, nothing written.\n\
             - **helpers.scan**: opensearch-py 3.2.0 `helpers.scan` (scroll, `size` = page; \
             elasticsearch-py 9 is refused by the test server with 406), \
             `bench/source/scan.py`.\n\n",
        );
        md.push_str(&table.markdown());
        md.push_str(
            "\nhelpers.scan is not a like-for-like peer: it scrolls in index order with no sort, \
             which the test server serves far more cheaply than a sorted `search_after` page \
             (the sort over the whole index dominates each page there), and it cannot resume \
             after a restart. The target compares es-connector with the raw loop, which sends \
             the same sorted requests.\n",
        );
        md.push_str("\n## Targets\n\n");
        for (ok, text) in checks {
            let _ = writeln!(md, "- {} {text}", if *ok { "OK:" } else { "**missed**:" });
        }
        let path = util::root()
            .join("docs")
            .join("benchmarks")
            .join("source.md");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
        step!("wrote {}", path.display());
        Ok(())
    }

    fn server(&self) -> &'static str {
        if std::env::var(crate::services::EXTERNAL_VAR).is_ok_and(|v| v == "1") {
            "external services, XTASK_EXTERNAL_SERVICES=1"
        } else {
            "osmem-server 0.1.6, in-memory, OpenSearch 3 REST API"
        }
    }
}

struct Table {
    rows: Vec<(Contender, Measured, f64)>,
    raw: f64,
    docs: u64,
    small_docs: u64,
    rss_small: u64,
    rss_big: u64,
}

const HEADER: [&str; 6] = [
    "contender",
    "docs",
    "docs/s",
    "vs raw",
    "CPU s / 1M docs",
    "peak RSS MiB",
];

impl Table {
    fn cells(&self) -> Vec<[String; 6]> {
        self.rows
            .iter()
            .map(|(c, m, startup)| {
                let cpu = (m.cpu - startup).max(0.0) / m.docs.max(1) as f64 * 1e6;
                [
                    c.label().to_string(),
                    m.docs.to_string(),
                    format!("{:.0}", m.docs_per_sec()),
                    if self.raw > 0.0 {
                        format!("{:.0}%", 100.0 * m.docs_per_sec() / self.raw)
                    } else {
                        "-".into()
                    },
                    format!("{cpu:.1}"),
                    format!("{:.1}", m.rss_kib as f64 / 1024.0),
                ]
            })
            .collect()
    }

    fn text(&self) -> String {
        util::aligned_table(HEADER, &self.cells())
    }

    fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", HEADER.join(" | "));
        out.push_str(&format!("|{}\n", "---|".repeat(HEADER.len())));
        for row in self.cells() {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }

    fn checks(&self) -> Vec<(bool, String)> {
        let mut checks = Vec::new();
        if let Some((_, m, _)) = self.rows.iter().find(|(c, ..)| *c == Contender::Connector)
            && self.raw > 0.0
        {
            let share = m.docs_per_sec() / self.raw;
            checks.push((
                share >= TARGET,
                format!(
                    "es-connector reads at {:.0}% of the raw loop's docs/s (target: at least {:.0}%)",
                    100.0 * share,
                    100.0 * TARGET
                ),
            ));
        }
        // Bounded by the batch: 4x the documents may not cost more than 25% more memory.
        let grown = self.rss_big as f64 / self.rss_small.max(1) as f64;
        checks.push((
            grown <= 1.25,
            format!(
                "es-connector peak RSS: {:.1} MiB reading {} documents, {:.1} MiB reading {} \
                 (x{grown:.2}; memory is bounded by the batch, not the index, if at most x1.25)",
                self.rss_small as f64 / 1024.0,
                self.small_docs,
                self.rss_big as f64 / 1024.0,
                self.docs
            ),
        ));
        checks
    }
}

/// `done: N documents in B batches, X.Xs, R docs/s, ...` → (N, N / R).
fn connector_summary(stderr: &str) -> Option<(u64, f64)> {
    let line = stderr.lines().rev().find(|l| l.starts_with("done: "))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let docs: u64 = words.get(1)?.parse().ok()?;
    let rate: f64 = words.get(7)?.parse().ok()?;
    let secs: f64 = words
        .get(6)?
        .trim_end_matches(",")
        .trim_end_matches('s')
        .parse()
        .ok()?;
    Some((docs, if rate > 0.0 { docs as f64 / rate } else { secs }))
}

fn script() -> PathBuf {
    util::root().join("bench").join("source").join("scan.py")
}

fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `es-connector` (release) and the `source_scan` helper (bench profile).
fn build() -> Result<(PathBuf, PathBuf)> {
    let connector = util::release_binary("connector", &[], "es-connector")?;
    let helper = util::bench_executable("connector", "source_scan")?;
    Ok((connector, helper))
}

/// The opensearch-py venv of `bench bulk` (same place, same pin): its python.
fn prepare_python() -> std::result::Result<PathBuf, String> {
    super::bulk::prepare_python().map(|(python, _)| python)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_connector_summary() {
        let stderr = "some log\ndone: 20000 documents in 20 batches, 1.3s, 15000 docs/s, 0 errors retried, cursor [1]\n";
        let (docs, secs) = connector_summary(stderr).unwrap_or_default();
        assert_eq!(docs, 20000);
        assert!((secs - 20000.0 / 15000.0).abs() < 1e-9);
        assert_eq!(connector_summary("error: boom"), None);
    }
}
