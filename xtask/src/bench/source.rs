//! `cargo xtask bench source`: reading a whole index, every contender side by
//! side in one run, against real Elasticsearch and OpenSearch servers (the default
//! test lines, es9 and os3), same index, same page size:
//!
//! - `es-connector run --once` (file output, file state), per mode:
//!   `pagination = "search_after"` (inside a point in time), `"scroll"` and
//!   `backfill = true` (index order inside a point in time), and with `slices` = 2
//!   and 4 beside 1 (point in time, sorted and backfill);
//! - the floor per mode: the `source_scan raw` helper of the connector crate,
//!   sending the same request bodies (es-query's) over one keep-alive connection
//!   and reading only what the next request needs;
//! - the official Python client (elasticsearch-py of the server's major version,
//!   or opensearch-py), installed from PyPI into a cached venv: its
//!   `helpers.scan` (scroll), and a point in time + `search_after` loop written
//!   with it (bench/source/scan.py).
//!
//! Each contender is a child process, launched by `bench/source/scan.py measure`,
//! which reports its CPU time (wait4) and peak RSS (VmHWM). docs/s is the
//! contender's own read-loop time. The contenders take turns over an even number
//! of rounds, in reverse order every other round; ratios are the geometric mean
//! of the rounds' ratios (`stats::paired_ratio`). The index has several primary
//! shards, so that sliced reads have something to spread over.

mod python;
mod report;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use self::report::{Mode, Peer, Row, Server};
use crate::search_server::{self, Product};
use crate::services::{Session, UpOptions};
use crate::{net, step, util};

const PAGE: usize = 1000;
const SHARDS: u32 = 4;
const DOCS: u64 = 100_000;
const ROUNDS: usize = 4;
const QUICK_DOCS: u64 = 10_000;
const QUICK_ROUNDS: usize = 2;
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// What the contenders of one server need.
struct Bench {
    url: String,
    /// The python that runs scan.py's `measure` (standard library only).
    python: PathBuf,
    /// The official client for this server, or why there is none.
    client: std::result::Result<python::Client, String>,
    connector: PathBuf,
    helper: PathBuf,
    dir: PathBuf,
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

pub fn cmd(args: &crate::cli::SourceBenchArgs) -> Result<()> {
    let (mut docs, mut rounds) = if args.quick {
        (QUICK_DOCS, QUICK_ROUNDS)
    } else {
        (DOCS, ROUNDS)
    };
    if let Some(n) = args.docs {
        docs = n;
    }
    if let Some(n) = args.rounds {
        rounds = n as usize;
    }
    let rounds = super::stats::even_rounds(rounds);
    let mut command = String::from("cargo xtask bench source");
    for (on, flag) in [
        (args.docker, " --docker"),
        (args.quick, " --quick"),
        (args.plot, " --plot"),
    ] {
        if on {
            command.push_str(flag);
        }
    }
    if let Some(n) = args.docs {
        let _ = write!(command, " --docs {n}");
    }
    if let Some(n) = args.rounds {
        let _ = write!(command, " --rounds {n}");
    }
    let started = Instant::now();
    let (connector, helper) = build()?;
    let opts = UpOptions {
        docker: args.docker,
        ..UpOptions::default()
    };
    let session = Session::start(opts, true)?;
    let other = super::other_work::OtherWork::start();
    let dir = util::xtask_dir().join("bench-source");
    std::fs::create_dir_all(&dir)?;
    let mut servers = Vec::new();
    let mut checks = Vec::new();
    let mut failed = Vec::new();
    for (name, url) in session.search_servers() {
        let (product, version, label) = identify(&name, &url);
        step!("bench source: {label} at {url}");
        let bench = Bench {
            url,
            python: std::env::var("XTASK_PYTHON")
                .unwrap_or_else(|_| "python3".into())
                .into(),
            client: python::prepare(product, &version),
            connector: connector.clone(),
            helper: helper.clone(),
            dir: dir.clone(),
        };
        if let Err(e) = &bench.client {
            step!("warning: {label}: the Python contenders do not run: {e}");
        }
        match bench.run_server(&label, product, &version, docs, rounds) {
            Ok(server) => {
                println!("{}", server.text());
                for check in server.checks() {
                    step!("{} {}", if check.0 { "OK:" } else { "MISSED:" }, check.1);
                    checks.push(check);
                }
                servers.push(server);
            }
            Err(e) => {
                step!("bench source: {label} failed: {e:#}");
                failed.push(format!("{label}: {}", one_line(&format!("{e:#}"), 300)));
            }
        }
    }
    let other_cpus = other.and_then(|o| o.cpus());
    session.finish()?;
    if servers.is_empty() {
        bail!("bench source: no server measured: {}", failed.join("; "));
    }
    let run = Run {
        command,
        rounds,
        other_cpus,
        minutes: started.elapsed().as_secs_f64() / 60.0,
    };
    let charts = if args.plot {
        write_charts(&servers)?
    } else {
        Vec::new()
    };
    write_markdown(&servers, &charts, &checks, &run, &failed)?;
    if !failed.is_empty() {
        bail!("bench source: {}", failed.join("; "));
    }
    if checks.iter().any(|(ok, _)| !ok) {
        bail!("bench source: a target was missed (see above and docs/benchmarks/source.md)");
    }
    Ok(())
}

/// The product, version and display name of a session server (`es9`, `os3`; an
/// external `ES_URL`/`OPENSEARCH_URL` is taken for the newest major).
fn identify(name: &str, url: &str) -> (Product, String, String) {
    match search_server::LINES.iter().find(|l| l.name == name) {
        Some(line) => (line.product, line.version.to_string(), line.label()),
        None if name == "OPENSEARCH_URL" => (
            Product::OpenSearch,
            "3".into(),
            format!("OpenSearch at {url}"),
        ),
        None => (
            Product::Elasticsearch,
            "9".into(),
            format!("Elasticsearch at {url}"),
        ),
    }
}

/// Whether the server has point in time searches: Elasticsearch >= 7.10,
/// OpenSearch >= 2.4.
fn has_pit(product: Product, version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major_minor = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match product {
        Product::Elasticsearch => major_minor >= (7, 10),
        Product::OpenSearch => major_minor >= (2, 4),
    }
}

fn contenders() -> Vec<Peer> {
    let c = |mode, slices| Peer::Connector { mode, slices };
    vec![
        c(Mode::Pit, 1),
        Peer::Raw(Mode::Pit),
        Peer::PyPit,
        c(Mode::Scroll, 1),
        Peer::Raw(Mode::Scroll),
        Peer::PyScan,
        c(Mode::Backfill, 1),
        Peer::Raw(Mode::Backfill),
        c(Mode::Pit, 2),
        c(Mode::Pit, 4),
        c(Mode::Backfill, 2),
        c(Mode::Backfill, 4),
    ]
}

impl Bench {
    fn label(&self, peer: Peer) -> String {
        let client = self
            .client
            .as_ref()
            .map_or("the official Python client", |c| c.label.as_str());
        match peer {
            Peer::Connector { slices: 1, .. } => "es-connector run --once".into(),
            Peer::Connector { slices, .. } => format!("es-connector run --once, slices = {slices}"),
            Peer::Raw(_) => "raw loop (floor)".into(),
            Peer::PyScan => format!("{client} helpers.scan"),
            Peer::PyPit => format!("{client} PIT + search_after loop"),
        }
    }

    /// Why `peer` cannot run here, if it cannot.
    fn cannot_run(&self, peer: Peer, pit: bool, server: &str) -> Option<String> {
        if peer.mode() != Mode::Scroll && !pit {
            return Some(format!(
                "not run: {server} has no point in time (Elasticsearch >= 7.10, OpenSearch >= 2.4)"
            ));
        }
        match (&self.client, peer) {
            (Err(e), Peer::PyScan | Peer::PyPit) => Some(format!("not run: {e}")),
            _ => None,
        }
    }

    fn run_server(
        &self,
        label: &str,
        product: Product,
        version: &str,
        docs: u64,
        rounds: usize,
    ) -> Result<Server> {
        let run = util::run_id();
        let big = format!("bench-source-{run}-big");
        let small = format!("bench-source-{run}-small");
        let empty = format!("bench-source-{run}-empty");
        let result = self.measure_server(
            (label, product),
            has_pit(product, version),
            docs,
            rounds,
            [&big, &small, &empty],
        );
        for index in [&big, &small, &empty] {
            let _ = net::http("DELETE", &self.url, &format!("/{index}"));
        }
        result
    }

    fn measure_server(
        &self,
        (label, product): (&str, Product),
        pit: bool,
        docs: u64,
        rounds: usize,
        [big, small, empty]: [&str; 3],
    ) -> Result<Server> {
        let small_docs = docs / 4;
        for (index, n) in [(big, docs), (small, small_docs), (empty, 0)] {
            step!("{label}: indexing {n} documents into {index} ({SHARDS} shards)");
            self.seed(index, n)?;
        }
        let peers = contenders();
        let mut rows: Vec<Row> = peers
            .iter()
            .map(|&peer| Row {
                peer,
                label: self.label(peer),
                rates: Vec::new(),
                cpu_per_million: None,
                rss_kib: 0,
                note: self.cannot_run(peer, pit, label).unwrap_or_default(),
            })
            .collect();
        let runnable: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].note.is_empty())
            .collect();
        // Start-up CPU: the same contender reading an empty index.
        let mut startup = vec![None; rows.len()];
        for &i in &runnable {
            match self.measure(rows[i].peer, empty, "empty") {
                Ok(m) => startup[i] = Some(m.cpu),
                Err(e) => step!("warning: {}: start-up run failed: {e:#}", rows[i].label),
            }
        }
        let mut least_cpu = vec![f64::INFINITY; rows.len()];
        for round in 1..=rounds {
            for k in super::stats::round_order(runnable.len(), round) {
                let i = runnable[k];
                let row = &mut rows[i];
                let tag = format!("r{round}");
                let rate = match self.measure(row.peer, big, &tag) {
                    Ok(m) if m.docs == docs => {
                        least_cpu[i] = least_cpu[i].min(m.cpu);
                        row.rss_kib = row.rss_kib.max(m.rss_kib);
                        step!(
                            "{label}, round {round}/{rounds}: {} ({}): {:.0} docs/s, {:.2} CPU s, {:.1} MiB",
                            row.label,
                            row.peer.mode().label(),
                            m.docs_per_sec(),
                            m.cpu,
                            m.rss_kib as f64 / 1024.0
                        );
                        m.docs_per_sec()
                    }
                    Ok(m) => {
                        let e = format!("round {round} read {} documents of {docs}", m.docs);
                        step!("{label}: {}: {e}", row.label);
                        row.note = e;
                        0.0
                    }
                    Err(e) => {
                        step!("{label}: {}: round {round} failed: {e:#}", row.label);
                        if row.note.is_empty() {
                            row.note = format!(
                                "round {round} failed: {}",
                                one_line(&format!("{e:#}"), 200)
                            );
                        }
                        0.0
                    }
                };
                row.rates.push(rate);
            }
        }
        for &i in &runnable {
            if let Some(s) = startup[i]
                && least_cpu[i].is_finite()
            {
                rows[i].cpu_per_million =
                    Some((least_cpu[i] - s).max(0.0) / docs.max(1) as f64 * 1e6);
            }
        }
        // Memory bounded by the batch: the same reader on a quarter of the documents.
        let one = Peer::Connector {
            mode: Mode::Pit,
            slices: 1,
        };
        let mut small_rss = None;
        if pit {
            for round in 1..=2 {
                match self.measure(one, small, &format!("s{round}")) {
                    Ok(m) if m.docs == small_docs => {
                        small_rss = Some(small_rss.unwrap_or(u64::MAX).min(m.rss_kib));
                    }
                    Ok(m) => step!("{label}: small index: read {} of {small_docs}", m.docs),
                    Err(e) => step!("{label}: small index: {e:#}"),
                }
            }
        }
        Ok(Server {
            name: label.to_string(),
            product: product.name(),
            shards: SHARDS,
            docs,
            rows,
            small: small_rss.map(|kib| (small_docs, kib)),
        })
    }

    fn seed(&self, index: &str, docs: u64) -> Result<()> {
        let out = util::capture(
            Command::new(&self.helper)
                .args(["seed", "--url", &self.url, "--index", index, "--docs"])
                .arg(docs.to_string())
                .args(["--shards", &SHARDS.to_string()]),
            RUN_TIMEOUT,
        )?;
        if !out.status.success() {
            bail!("seeding {index} failed: {}", out.all().trim());
        }
        Ok(())
    }

    fn command(&self, peer: Peer, index: &str, tag: &str) -> Result<Command> {
        let page = PAGE.to_string();
        Ok(match peer {
            Peer::Connector { mode, slices } => {
                let config = self.connector_config(mode, slices, index, tag)?;
                let mut cmd = Command::new(&self.connector);
                cmd.args(["run", "--once", "--no-progress", "--config"])
                    .arg(config);
                cmd
            }
            Peer::Raw(mode) => {
                let mut cmd = Command::new(&self.helper);
                cmd.args(["raw", "--url", &self.url, "--index", index, "--page", &page])
                    .args(["--mode", raw_mode(mode)]);
                cmd
            }
            Peer::PyScan | Peer::PyPit => {
                let client = self.client.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut cmd = Command::new(&client.python);
                cmd.arg(script())
                    .arg(if peer == Peer::PyScan { "scan" } else { "pit" })
                    .args([
                        "--client",
                        client.flag,
                        "--url",
                        &self.url,
                        "--index",
                        index,
                    ])
                    .args(["--page", &page]);
                cmd
            }
        })
    }

    /// A fresh file state and output for each run.
    fn connector_config(&self, mode: Mode, slices: u32, index: &str, tag: &str) -> Result<PathBuf> {
        let run_dir = self
            .dir
            .join(format!("{index}-{}-{slices}-{tag}", raw_mode(mode)));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(run_dir.join("state"))?;
        let pagination = match mode {
            Mode::Pit => "search_after\"",
            Mode::Scroll => "scroll\"",
            Mode::Backfill => "search_after\"\nbackfill = true",
        };
        let text = format!(
            "[plugin_config]\nurl = {url}\nindex = {index}\nbatch_size = {PAGE}\n\
             pagination = \"{pagination}\nslices = {slices}\ntiebreaker_field = \"id\"\n\n\
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

    fn measure(&self, peer: Peer, index: &str, tag: &str) -> Result<Measured> {
        let contender = self.command(peer, index, tag)?;
        let mut cmd = Command::new(&self.python);
        cmd.arg(script()).args(["measure", "--"]);
        cmd.arg(contender.get_program()).args(contender.get_args());
        let out = util::capture(&mut cmd, RUN_TIMEOUT)?;
        let line = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("MEASURED "))
            .with_context(|| format!("no measurement: {}", out.all().trim()))?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        let (stdout, stderr) = (
            v["stdout"].as_str().unwrap_or_default(),
            v["stderr"].as_str().unwrap_or_default(),
        );
        if v["status"].as_i64() != Some(0) {
            bail!(
                "exit status {}: {}{}",
                v["status"],
                stdout.trim(),
                stderr.trim()
            );
        }
        let (docs, elapsed) = match peer {
            Peer::Connector { .. } => connector_summary(stderr)
                .with_context(|| format!("es-connector printed no summary: {stderr}"))?,
            _ => {
                let result: serde_json::Value = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("SOURCE-BENCH "))
                    .and_then(|j| serde_json::from_str(j).ok())
                    .with_context(|| format!("no result: {stdout}{stderr}"))?;
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
}

fn raw_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Pit => "pit",
        Mode::Scroll => "scroll",
        Mode::Backfill => "backfill",
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// How the run went, for the page's opening.
struct Run {
    command: String,
    rounds: usize,
    /// Other programs' share of the CPUs while the servers were measured.
    other_cpus: Option<f64>,
    minutes: f64,
}

/// One SVG per server beside source.md (`source-<product>.svg`): docs/s of
/// every contender, grouped by mode. Returns (server name, file name) of each.
fn write_charts(servers: &[Server]) -> Result<Vec<(String, String)>> {
    let mut written = Vec::new();
    for server in servers {
        let bars = server.bars();
        let svg = super::plot::grouped_bars(&super::plot::Chart {
            title: &bars.title,
            unit: "docs/s",
            groups: &bars.groups,
            series: &bars.series,
            values: &bars.values,
        });
        let name = format!("source-{}.svg", server.product);
        super::write_result(&name, svg)?;
        written.push((server.name.clone(), name));
    }
    Ok(written)
}

fn write_markdown(
    servers: &[Server],
    charts: &[(String, String)],
    checks: &[(bool, String)],
    run: &Run,
    failed: &[String],
) -> Result<()> {
    let mut md = String::from("# Source benchmark\n\n");
    md.push_str(&super::other_work::caveat(run.other_cpus));
    let _ = writeln!(
        md,
        "Measured {} on {}, with `{}` ({:.0} min); {}.\n",
        util::today_utc(),
        super::machine(),
        run.command,
        run.minutes,
        super::other_work::summary(run.other_cpus)
    );
    let _ = writeln!(
        md,
        "Against real servers started by xtask (the default test lines, \
         [test-servers.md](../test-servers.md)). On each, every contender reads the same index \
         (about 170 bytes of `_source` per document, {SHARDS} primary shards, refreshed before \
         reading) with pages of {PAGE}, as a child process. The contenders take turns over {} \
         rounds, in reverse order every other round; a ratio is the **geometric mean of the \
         rounds' ratios** (paired: each round's two runs ran back to back), which cancels both \
         the machine's drift and the cost of running first. **docs/s (best)** is the best \
         round, timed by the contender's own read loop (start-up and the first connection \
         excluded). **CPU s / 1M docs** is the child's user+system CPU (wait4), least over the \
         rounds, minus that of the same contender reading an empty index (its start-up), \
         scaled to a million documents. **Peak RSS** is the child's `VmHWM` (whole process), \
         the largest over the rounds.\n",
        run.rounds
    );
    md.push_str(
        "- **es-connector**: `es-connector run --once --no-progress`, file output (JSON lines, \
         fsynced per batch), file state saved after every batch, `tiebreaker_field = \"id\"`; \
         `pagination = \"search_after\"` (inside a point in time, sort `[@timestamp, id]`), \
         `\"scroll\"` (sorted the same way), or `backfill = true` (a first read in index \
         order, `_shard_doc`, inside a point in time, up to its last document; \
         [live-tail.md](../live-tail.md#backfill-reading-what-is-there-in-index-order)); \
         `slices` = 1 unless stated.\n\
         - **raw loop (floor)**: `crates/connector/benches/source_scan.rs raw --mode pit|scroll|backfill`: \
         the same request bodies as es-connector (built by `es-query`), one keep-alive \
         connection, reading only what the next request needs (the last hit's sort values, the \
         newest point in time or scroll id), hits counted, not parsed, nothing written.\n\
         - **helpers.scan**: the official Python client's `helpers.scan` (scroll, `size` = page, \
         no sort: index order), elasticsearch-py of the server's major version for \
         Elasticsearch, opensearch-py for OpenSearch, installed from PyPI into a venv by the \
         bench (`bench/source/scan.py`).\n\
         - **PIT + search_after loop**: a loop we wrote on the same official client: open a \
         point in time (elasticsearch-py `open_point_in_time`, opensearch-py `create_pit`), \
         `search` pages sorted like es-connector's with `search_after`, close it.\n\n",
    );
    for server in servers {
        md.push_str(&server.markdown());
        for (_, chart) in charts.iter().filter(|(name, _)| *name == server.name) {
            let _ = write!(md, "\n![{chart}]({chart})\n");
        }
        md.push('\n');
    }
    for failure in failed {
        let _ = writeln!(md, "Not measured in this run: {failure}.\n");
    }
    md.push_str("## Targets\n\n");
    let _ = writeln!(
        md,
        "Per mode: es-connector at least {:.1}x helpers.scan's docs/s and at least {:.0}% of the \
         raw loop's of that mode (paired ratios). Sliced reads have no target: the table shows \
         how `slices` scales on the {SHARDS}-shard index.\n",
        report::TARGET_VS_SCAN,
        report::TARGET_VS_RAW * 100.0
    );
    for (ok, text) in checks {
        let _ = writeln!(md, "- {} {text}", if *ok { "OK:" } else { "**missed**:" });
    }
    md.push_str(
        "\nhelpers.scan is not a like-for-like peer of a sorted read: it scrolls in index \
         order (`_doc`), which the server serves without sorting, and it cannot resume after a \
         restart. es-connector sorts every page on `[@timestamp, id]` in the search_after and \
         scroll modes (that is what makes its cursor durable), so there the helpers.scan \
         target compares a sorted read with an unsorted one; the raw loop of the same mode \
         shows what the sorted requests cost by themselves. `backfill = true` is the like-for-\
         like read: index order, as helpers.scan, but resumable (each slice's position is \
         saved with every commit) and handing over to the sorted cursor at its end.\n",
    );
    super::write_result("source.md", md)?;
    Ok(())
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
