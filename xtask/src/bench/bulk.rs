//! `cargo xtask bench bulk`: bulk clients side by side, each in its own
//! process, on the same documents with the same batch size and concurrency,
//! against a null `_bulk` server (the client's own cost) and the test server.
//!
//! Contenders: this crate's `BulkProcessor` and the raw replay floor (the
//! `bulk_client` bench of crates/bulk), olivere/elastic v5's `BulkProcessor`
//! (bench/bulk/go, built offline from Debian's packages) and opensearch-py's
//! `streaming_bulk` and `parallel_bulk` (bench/bulk/py, in a cached venv).
//!
//! Each contender prints `BULK-BENCH-READY` once set up and waits for a line on
//! stdin; we read its CPU time from `/proc/<pid>/stat`, say go, and when it
//! prints `BULK-BENCH-RESULT {json}` it waits for stdin to close while we read
//! its CPU time again and its peak RSS (`VmHWM`). So CPU seconds cover exactly
//! the timed run (no interpreter start-up, no pre-serialising for the floor),
//! and the peak RSS covers the whole process.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::services::{Session, UpOptions};
use crate::{net, step, util};

/// The Python client (pinned) of the `streaming_bulk`/`parallel_bulk` contenders.
const OPENSEARCH_PY: &str = "opensearch-py==3.2.0";
/// Debian packages of the Go contender.
const APT_PACKAGES: [&str; 2] = ["golang-go", "golang-gopkg-olivere-elastic.v5-dev"];
const OLIVERE_PACKAGE: &str = "golang-gopkg-olivere-elastic.v5-dev";
const GOPATH: &str = "/usr/share/gocode";
const OLIVERE_SRC: &str = "/usr/share/gocode/src/gopkg.in/olivere/elastic.v5";

/// Same for every contender.
const WORKERS: usize = 2;
const BATCH: usize = 1000;
const BULK_SIZE: usize = 5 << 20;
/// Rounds per contender and workload (`--rounds N`); the table keeps the best.
const ROUNDS: usize = 4;
/// A contender run taking longer than this is killed (and its row says so).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Targets: ours vs olivere in docs per CPU-second on the null server, and
/// ours vs the raw replay in docs/s on the test server.
const MIN_CPU_ADVANTAGE: f64 = 3.0;
const MAX_SLOWDOWN: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Null,
    Test,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Null => "null server",
            Target::Test => "test server",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Small,
    Large,
}

impl Size {
    fn arg(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Size::Small => "200 B",
            Size::Large => "2 KiB",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Ours,
    Raw,
    Olivere,
    PyStreaming,
    PyParallel,
}

const CONTENDERS: [Contender; 5] = [
    Contender::Ours,
    Contender::Raw,
    Contender::Olivere,
    Contender::PyStreaming,
    Contender::PyParallel,
];

impl Contender {
    fn key(self) -> &'static str {
        match self {
            Contender::Ours => "bulk",
            Contender::Raw => "raw",
            Contender::Olivere => "olivere",
            Contender::PyStreaming => "py-streaming",
            Contender::PyParallel => "py-parallel",
        }
    }

    /// A remark that always belongs to this contender's rows.
    fn remark(self) -> &'static str {
        match self {
            Contender::Raw => "floor: bodies built before the clock (in its RSS)",
            Contender::PyStreaming => "one request at a time (no concurrency in streaming_bulk)",
            _ => "",
        }
    }
}

/// The sizes of one run of the whole benchmark.
#[derive(Debug, Clone, Copy)]
struct Plan {
    null_small: u64,
    null_large: u64,
    test_small: u64,
    test_large: u64,
}

const FULL: Plan = Plan {
    null_small: 1_000_000,
    null_large: 100_000,
    test_small: 40_000,
    test_large: 10_000,
};

impl Plan {
    fn docs(&self, target: Target, size: Size) -> u64 {
        match (target, size) {
            (Target::Null, Size::Small) => self.null_small,
            (Target::Null, Size::Large) => self.null_large,
            (Target::Test, Size::Small) => self.test_small,
            (Target::Test, Size::Large) => self.test_large,
        }
    }

    fn scaled(self, divisor: u64) -> Plan {
        Plan {
            null_small: self.null_small / divisor,
            null_large: self.null_large / divisor,
            test_small: self.test_small / divisor,
            test_large: self.test_large / divisor,
        }
    }
}

/// How to start a contender: a program and the arguments before ours.
#[derive(Debug, Clone)]
struct Launcher {
    program: PathBuf,
    args: Vec<String>,
    /// Shown in the table, versions included.
    label: String,
}

impl Launcher {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(util::root());
        cmd
    }
}

/// What one contender run measured.
#[derive(Debug, Clone)]
struct Measured {
    ok: u64,
    elapsed: f64,
    cpu: f64,
    rss_kib: u64,
    error: String,
    /// `_count` of the index afterwards (test server only).
    count: Option<u64>,
}

#[derive(Debug, Clone)]
struct Row {
    target: Target,
    size: Size,
    contender: Contender,
    label: String,
    docs: u64,
    /// docs/s of each round, in round order (0 for a failed round).
    round_rates: Vec<f64>,
    outcome: std::result::Result<Measured, String>,
}

impl Row {
    fn measured(&self) -> Option<&Measured> {
        self.outcome.as_ref().ok()
    }

    /// Whether every document made it (acknowledged, and counted when we could count).
    fn complete(&self) -> bool {
        self.measured()
            .is_some_and(|m| m.ok == self.docs && m.count.is_none_or(|c| c == self.docs))
    }

    fn docs_per_sec(&self) -> Option<f64> {
        self.measured()
            .filter(|m| m.elapsed > 0.0)
            .map(|m| self.docs as f64 / m.elapsed)
    }

    fn docs_per_cpu_sec(&self) -> Option<f64> {
        self.measured()
            .filter(|m| m.cpu > 0.0)
            .map(|m| self.docs as f64 / m.cpu)
    }

    fn note(&self) -> String {
        let mut notes = Vec::new();
        match &self.outcome {
            Err(why) => notes.push(format!("not run: {why}")),
            Ok(m) => {
                if m.ok < self.docs {
                    notes.push(format!(
                        "LOST DOCUMENTS: {} of {} acknowledged",
                        m.ok, self.docs
                    ));
                }
                match m.count {
                    Some(c) if c == self.docs => notes.push(format!("_count {c} ✓")),
                    Some(c) => notes.push(format!("LOST DOCUMENTS: _count {c} of {}", self.docs)),
                    None => {}
                }
                if !m.error.is_empty() {
                    notes.push(format!("error: {}", one_line(&m.error, 160)));
                }
                if !self.contender.remark().is_empty() {
                    notes.push(self.contender.remark().into());
                }
            }
        }
        notes.join("; ")
    }

    fn cells(&self) -> [String; 9] {
        let dash = || "-".to_string();
        let m = self.measured();
        [
            self.target.label().into(),
            self.size.label().into(),
            self.label.clone(),
            if m.is_some() {
                self.docs.to_string()
            } else {
                dash()
            },
            self.docs_per_sec().map_or_else(dash, |v| format!("{v:.0}")),
            m.map_or_else(dash, |m| {
                format!("{:.2}", m.cpu * 1_000_000.0 / self.docs.max(1) as f64)
            }),
            self.docs_per_cpu_sec()
                .map_or_else(dash, |v| format!("{v:.0}")),
            m.map_or_else(dash, |m| format!("{:.1}", m.rss_kib as f64 / 1024.0)),
            self.note(),
        ]
    }
}

const HEADER: [&str; 9] = [
    "target",
    "doc size",
    "contender",
    "docs",
    "docs/s",
    "CPU s per 1M docs",
    "docs per CPU-second",
    "peak RSS MiB",
    "note",
];

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

pub fn cmd(args: &crate::cli::BulkBenchArgs) -> Result<()> {
    let opts = UpOptions {
        docker: args.docker,
        ..UpOptions::default()
    };
    let (plan, mut rounds) = if args.quick {
        (FULL.scaled(10), 1)
    } else {
        (FULL, ROUNDS)
    };
    if let Some(n) = args.rounds {
        rounds = n as usize;
    }
    let mut command = String::from("cargo xtask bench bulk");
    if args.docker {
        command.push_str(" --docker");
    }
    if args.quick {
        command.push_str(" --quick");
    }
    if let Some(n) = args.rounds {
        command.push_str(&format!(" --rounds {n}"));
    }
    if rounds > 1 && rounds % 2 == 1 {
        rounds += 1;
        step!(
            "bench bulk: {rounds} rounds: an even number, so that each contender runs first \
             in a round as often as second"
        );
    }
    let started = Instant::now();

    step!("bench bulk: building this crate's contenders (release)");
    let (null_server_bin, bench_bin) = build_rust()?;
    let ours = Launcher {
        program: bench_bin.clone(),
        args: vec!["--mode".into(), "processor".into()],
        label: "bulk BulkProcessor (this crate)".into(),
    };
    let raw = Launcher {
        program: bench_bin,
        args: vec!["--mode".into(), "raw".into()],
        label: "raw NDJSON replay, reqwest (floor)".into(),
    };
    step!("bench bulk: preparing olivere/elastic (Go)");
    let olivere = prepare_go();
    step!("bench bulk: preparing opensearch-py (Python)");
    let python = prepare_python();
    let launcher = |c: Contender| -> std::result::Result<Launcher, String> {
        match c {
            Contender::Ours => Ok(ours.clone()),
            Contender::Raw => Ok(raw.clone()),
            Contender::Olivere => olivere.clone(),
            Contender::PyStreaming | Contender::PyParallel => {
                let (py, version) = python.clone()?;
                let mode = if c == Contender::PyStreaming {
                    "streaming"
                } else {
                    "parallel"
                };
                Ok(Launcher {
                    program: py,
                    args: vec![
                        util::root()
                            .join("bench/bulk/py/bench.py")
                            .display()
                            .to_string(),
                        "--mode".into(),
                        mode.into(),
                    ],
                    label: format!("{OPENSEARCH_PY} helpers.{mode}_bulk ({version})")
                        .replace("==", " "),
                })
            }
        }
    };

    // Same documents everywhere: every contender's generator must agree.
    let reference = checksum(&ours)?;
    let mut launchers = Vec::new();
    for c in CONTENDERS {
        let l = launcher(c).and_then(|l| match checksum(&l) {
            Ok(sum) if sum == reference => Ok(l),
            Ok(sum) => Err(format!(
                "its documents differ from the Rust generator's ({sum} vs {reference})"
            )),
            Err(e) => Err(format!("its --checksum failed: {e:#}")),
        });
        launchers.push((c, l));
    }
    step!("bench bulk: every contender generates the same documents ({reference})");

    let clk_tck = clock_ticks();
    let null_server = NullServer::start(&null_server_bin)?;
    let session = Session::start(opts, true)?;
    let es_url = session
        .get("ES_URL")
        .context("the services session has no ES_URL")?
        .to_string();
    let run_id = util::run_id();

    let targets = [
        (Target::Null, null_server.url.clone()),
        (Target::Test, es_url),
    ];
    let total = targets.len() * 2 * rounds * launchers.iter().filter(|(_, l)| l.is_ok()).count();
    let mut done = 0;
    let mut rows = Vec::new();
    for (target, url) in &targets {
        for size in [Size::Small, Size::Large] {
            let docs = plan.docs(*target, size);
            // Rounds go through all contenders in turn, so that a noisy
            // neighbour on a shared machine hits every contender alike.
            let mut runs: Vec<Vec<std::result::Result<Measured, String>>> =
                vec![Vec::new(); launchers.len()];
            for round in 1..=rounds {
                // Every other round in reverse order: neither of two neighbours
                // (ours and the floor) always goes first.
                let mut order: Vec<usize> = (0..launchers.len()).collect();
                if round % 2 == 0 {
                    order.reverse();
                }
                for i in order {
                    let (contender, launcher) = &launchers[i];
                    let runs = &mut runs[i];
                    let Ok(l) = launcher else { continue };
                    done += 1;
                    let n = format!("[{done}/{total}]");
                    step!(
                        "{n} {} {}, round {round}/{rounds}: {}: {docs} docs...",
                        target.label(),
                        size.label(),
                        l.label
                    );
                    let index = format!(
                        "bench-bulk-{run_id}-{}-{}-{round}",
                        contender.key(),
                        size.arg()
                    );
                    let run = Run {
                        url,
                        docs,
                        size,
                        index: &index,
                        clk_tck,
                    };
                    let outcome = run.measure(l, *target == Target::Test);
                    match &outcome {
                        Ok(m) => step!(
                            "{n}   {:.0} docs/s, {:.2} CPU s, peak RSS {:.1} MiB{}",
                            docs as f64 / m.elapsed.max(1e-9),
                            m.cpu,
                            m.rss_kib as f64 / 1024.0,
                            m.count.map(|c| format!(", _count {c}")).unwrap_or_default()
                        ),
                        Err(e) => step!("{n}   failed: {e}"),
                    }
                    runs.push(outcome);
                }
            }
            for ((contender, launcher), runs) in launchers.iter().zip(runs) {
                rows.push(Row {
                    target: *target,
                    size,
                    contender: *contender,
                    label: launcher
                        .as_ref()
                        .map_or_else(|_| default_label(*contender), |l| l.label.clone()),
                    docs,
                    round_rates: runs
                        .iter()
                        .map(|r| {
                            r.as_ref()
                                .map_or(0.0, |m| docs as f64 / m.elapsed.max(1e-9))
                        })
                        .collect(),
                    outcome: match launcher {
                        Err(why) => Err(why.clone()),
                        Ok(_) => best_of(runs),
                    },
                });
            }
        }
    }
    drop(null_server);
    session.finish()?;

    let checks = checks(&rows);
    println!("{}", text_table(&rows));
    println!();
    for (ok, line) in &checks {
        println!("{} {line}", if *ok { "OK    " } else { "MISSED" });
    }
    let took = started.elapsed();
    write_markdown(&rows, &checks, (&plan, rounds), &command, took)?;
    step!("bench bulk: done in {:.1} min", took.as_secs_f64() / 60.0);
    Ok(())
}

fn default_label(c: Contender) -> String {
    match c {
        Contender::Ours => "bulk BulkProcessor (this crate)".into(),
        Contender::Raw => "raw NDJSON replay (floor)".into(),
        Contender::Olivere => "olivere/elastic v5 BulkProcessor (Go)".into(),
        Contender::PyStreaming => format!("{OPENSEARCH_PY} helpers.streaming_bulk"),
        Contender::PyParallel => format!("{OPENSEARCH_PY} helpers.parallel_bulk"),
    }
}

/// The rounds of one contender combined: its best throughput and least CPU
/// (noise on a shared machine only ever makes a run slower), its largest peak
/// RSS, and the worst of its document counts. A failed round fails the row.
fn best_of(
    runs: Vec<std::result::Result<Measured, String>>,
) -> std::result::Result<Measured, String> {
    let mut best: Option<Measured> = None;
    for run in runs {
        let m = run?;
        best = Some(match best {
            None => m,
            Some(b) => Measured {
                ok: b.ok.min(m.ok),
                elapsed: b.elapsed.min(m.elapsed),
                cpu: b.cpu.min(m.cpu),
                rss_kib: b.rss_kib.max(m.rss_kib),
                error: if b.error.is_empty() { m.error } else { b.error },
                count: match (b.count, m.count) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                },
            },
        });
    }
    best.ok_or_else(|| "no round ran".to_string())
}

/// One contender run against one server.
struct Run<'a> {
    url: &'a str,
    docs: u64,
    size: Size,
    index: &'a str,
    clk_tck: f64,
}

impl Run<'_> {
    /// Runs the contender; on the test server, counts and deletes its index after.
    fn measure(&self, launcher: &Launcher, count: bool) -> std::result::Result<Measured, String> {
        let mut cmd = launcher.command();
        cmd.args([
            "--url",
            self.url,
            "--doc-size",
            self.size.arg(),
            "--index",
            self.index,
        ])
        .arg("--docs")
        .arg(self.docs.to_string())
        .arg("--workers")
        .arg(WORKERS.to_string())
        .arg("--batch")
        .arg(BATCH.to_string())
        .arg("--bulk-size")
        .arg(BULK_SIZE.to_string())
        .arg("--handshake");
        let measured = measure_process(&mut cmd, self.clk_tck);
        if !count {
            return measured.map_err(|e| format!("{e:#}"));
        }
        let counted = count_docs(self.url, self.index);
        if let Err(e) = net::http("DELETE", self.url, &format!("/{}", self.index)) {
            step!("warning: could not delete index {}: {e:#}", self.index);
        }
        let mut m = measured.map_err(|e| format!("{e:#}"))?;
        match counted {
            Ok(c) => m.count = Some(c),
            Err(e) => {
                m.count = Some(0);
                if m.error.is_empty() {
                    m.error = format!("_count failed: {e:#}");
                }
            }
        }
        Ok(m)
    }
}

fn count_docs(url: &str, index: &str) -> Result<u64> {
    let _ = net::http("POST", url, &format!("/{index}/_refresh"))?;
    let (status, body) = net::http("GET", url, &format!("/{index}/_count"))?;
    if status != 200 {
        bail!(
            "GET /{index}/_count: HTTP {status}: {}",
            one_line(&body, 200)
        );
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    v["count"]
        .as_u64()
        .with_context(|| format!("no count in {}", one_line(&body, 200)))
}

/// Runs a contender through the READY/go/RESULT handshake and measures it.
fn measure_process(cmd: &mut Command, clk_tck: f64) -> Result<Measured> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("could not start `{}`", util::display(cmd)))?;
    let result = handshake(&mut child, clk_tck);
    if result.is_err() {
        let _ = child.kill();
    }
    drop(child.stdin.take());
    let status = child.wait()?;
    let m = result?;
    if !status.success() {
        bail!("exited with {status} after its result");
    }
    Ok(m)
}

fn handshake(child: &mut Child, clk_tck: f64) -> Result<Measured> {
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut stdin = child.stdin.take().context("no stdin pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut cpu_at_go = None;
    loop {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line?,
            Err(RecvTimeoutError::Timeout) => {
                bail!("no result within {} s (killed)", RUN_TIMEOUT.as_secs())
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                bail!("exited ({status}) without a result");
            }
        };
        if line == "BULK-BENCH-READY" {
            cpu_at_go = Some(cpu_seconds(pid, clk_tck)?);
            stdin.write_all(b"go\n")?;
            stdin.flush()?;
        } else if let Some(json) = line.strip_prefix("BULK-BENCH-RESULT ") {
            let cpu_at_end = cpu_seconds(pid, clk_tck)?;
            let rss_kib = peak_rss_kib(pid)?;
            child.stdin = Some(stdin);
            let v: serde_json::Value =
                serde_json::from_str(json).with_context(|| format!("bad result line `{line}`"))?;
            let start = cpu_at_go.context("a result before READY")?;
            return Ok(Measured {
                ok: v["ok"].as_u64().context("no `ok` in the result")?,
                elapsed: v["elapsed"]
                    .as_f64()
                    .context("no `elapsed` in the result")?,
                cpu: cpu_at_end - start,
                rss_kib,
                error: v["error"].as_str().unwrap_or_default().to_string(),
                count: None,
            });
        } else {
            eprintln!("    {line}");
        }
    }
}

/// utime + stime of process `pid` (all its threads, live and gone), in seconds.
fn cpu_seconds(pid: u32, clk_tck: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 of stat(5), counted after the command name (field 2).
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / clk_tck)
}

/// `VmHWM` of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmHWM in /proc/{pid}/status"))
}

fn clock_ticks() -> f64 {
    util::capture(
        Command::new("getconf").arg("CLK_TCK"),
        Duration::from_secs(5),
    )
    .ok()
    .and_then(|out| out.stdout.trim().parse().ok())
    .unwrap_or(100.0)
}

/// The contender's CRC-32 line of the first 10k documents of each size.
fn checksum(launcher: &Launcher) -> Result<String> {
    let out = util::capture(
        launcher.command().arg("--checksum"),
        Duration::from_secs(60),
    )?;
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHECKSUM "))
        .map(str::to_string);
    match line {
        Some(line) if out.status.success() => Ok(line),
        _ => bail!("{} ({})", one_line(&out.all(), 300), out.status),
    }
}

/// `bulk-null-server` and the `bulk_client` bench binary, built in release mode.
fn build_rust() -> Result<(PathBuf, PathBuf)> {
    let null_server = util::release_binary("bulk", &["testkit"], "bulk-null-server")?;
    let executable = util::bench_executable("bulk", "bulk_client")?;
    Ok((null_server, executable))
}

/// Installs Debian's Go and olivere/elastic v5 when missing (as root), and
/// builds bench/bulk/go in GOPATH mode, offline. `Err` says why it cannot run.
fn prepare_go() -> std::result::Result<Launcher, String> {
    let have = || util::which("go").is_some() && Path::new(OLIVERE_SRC).is_dir();
    if !have() {
        if !(util::is_root() && util::which("apt-get").is_some()) {
            return Err(format!(
                "needs Go and olivere/elastic v5 from Debian (`apt-get install -y {}`); not root, \
                 so not installed",
                APT_PACKAGES.join(" ")
            ));
        }
        step!(
            "installing {} with apt-get (running as root)",
            APT_PACKAGES.join(" ")
        );
        let apt = |args: &[&str]| {
            util::run(
                Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .stdout(Stdio::from(std::io::stderr())),
            )
        };
        let mut install = vec!["install", "-y", "--no-install-recommends"];
        install.extend(APT_PACKAGES);
        apt(&["update"])
            .and_then(|()| apt(&install))
            .map_err(|e| format!("apt-get install {} failed: {e:#}", APT_PACKAGES.join(" ")))?;
        if !have() {
            return Err(format!(
                "`go` or {OLIVERE_SRC} still missing after installing {}",
                APT_PACKAGES.join(" ")
            ));
        }
    }
    let dir = util::xtask_dir().join("bench-bulk");
    let out = dir.join("olivere-bulk-bench");
    let mut build = Command::new("go");
    build
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(util::root().join("bench/bulk/go"))
        .env("GOPATH", GOPATH)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOCACHE", dir.join("go-cache"))
        .stdout(Stdio::from(std::io::stderr()));
    util::run(&mut build).map_err(|e| format!("{e:#}"))?;
    let go_version = util::capture(Command::new("go").arg("version"), Duration::from_secs(30))
        .ok()
        .and_then(|o| {
            o.stdout
                .split_whitespace()
                .nth(2)
                .map(|v| v.replace("go", "Go "))
        })
        .unwrap_or_else(|| "Go".into());
    let olivere_version = util::capture(
        Command::new("dpkg-query").args(["-W", "-f=${Version}", OLIVERE_PACKAGE]),
        Duration::from_secs(30),
    )
    .ok()
    .filter(|o| o.status.success())
    .and_then(|o| o.stdout.split('-').next().map(|v| format!("v{v}")))
    .unwrap_or_else(|| "v5".into());
    Ok(Launcher {
        program: out,
        args: Vec::new(),
        label: format!("olivere/elastic {olivere_version} BulkProcessor ({go_version})"),
    })
}

/// Where the opensearch-py venv lives: `XTASK_BENCH_PY_VENV`, else beside the
/// osmem-server venv in the per-user cache, else under target/.
fn py_venv_dir() -> PathBuf {
    util::venv_dir(
        "XTASK_BENCH_PY_VENV",
        &format!("bench-bulk-{}", OPENSEARCH_PY.replace("==", "-")),
    )
}

/// The venv's python (created with opensearch-py when missing) and its version.
pub(super) fn prepare_python() -> std::result::Result<(PathBuf, String), String> {
    let venv = py_venv_dir();
    let python = venv.join("bin").join("python");
    let ready = venv.join(".xtask-ready");
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(OPENSEARCH_PY) {
        step!("installing {OPENSEARCH_PY} into {} (once)", venv.display());
        let _ = std::fs::remove_dir_all(&venv);
        let base = std::env::var("XTASK_PYTHON").unwrap_or_else(|_| "python3".into());
        let created = util::run(
            Command::new(&base)
                .args(["-m", "venv"])
                .arg(&venv)
                .stdout(Stdio::from(std::io::stderr())),
        );
        if let Err(e) = created {
            return Err(format!(
                "`{base} -m venv` failed ({e:#}); install Python 3 with venv (Debian: python3-venv) \
                 or set XTASK_PYTHON"
            ));
        }
        util::run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                ])
                .arg(OPENSEARCH_PY)
                .stdout(Stdio::from(std::io::stderr())),
        )
        .map_err(|e| format!("`pip install {OPENSEARCH_PY}` failed ({e:#}); is PyPI reachable?"))?;
        std::fs::write(&ready, OPENSEARCH_PY).map_err(|e| e.to_string())?;
    }
    let version = util::capture(
        Command::new(&python).args(["-c", "import platform; print(platform.python_version())"]),
        Duration::from_secs(30),
    )
    .ok()
    .filter(|o| o.status.success())
    .map(|o| format!("Python {}", o.stdout.trim()))
    .unwrap_or_else(|| "Python".into());
    Ok((python, version))
}

/// The `bulk-null-server` child; killed on drop.
struct NullServer {
    child: Child,
    url: String,
}

impl NullServer {
    fn start(bin: &Path) -> Result<NullServer> {
        let mut cmd = Command::new(bin);
        cmd.args(["--addr", "127.0.0.1:0"]);
        step!("$ {}", util::display(&cmd));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("could not start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "bulk-null-server did not say where it listens (got `{}`)",
                line.trim()
            );
        };
        step!("null bulk server up at {url} (pid {})", child.id());
        Ok(NullServer {
            url: url.to_string(),
            child,
        })
    }
}

impl Drop for NullServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(rows: &[Row], t: Target, s: Size, c: Contender) -> Option<&Row> {
    rows.iter()
        .find(|r| r.target == t && r.size == s && r.contender == c)
}

/// The two targets of the issue, per document size: (met, explanation).
fn checks(rows: &[Row]) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for size in [Size::Small, Size::Large] {
        let ours = find(rows, Target::Null, size, Contender::Ours);
        let theirs = find(rows, Target::Null, size, Contender::Olivere);
        let what = format!(
            "null server, {} docs: bulk ≥ {MIN_CPU_ADVANTAGE}x olivere's docs per CPU-second",
            size.label()
        );
        out.push(match (ours, theirs) {
            (Some(o), Some(t)) => match (o.docs_per_cpu_sec(), t.docs_per_cpu_sec()) {
                (Some(a), Some(b)) => {
                    let ratio = a / b;
                    (
                        ratio >= MIN_CPU_ADVANTAGE && o.complete(),
                        format!("{what}: {a:.0} vs {b:.0} = {ratio:.2}x{}", lost_suffix(o)),
                    )
                }
                _ => (
                    false,
                    format!("{what}: not measured ({})", why_missing(o, t)),
                ),
            },
            _ => (false, format!("{what}: not measured")),
        });
        let ours = find(rows, Target::Test, size, Contender::Ours);
        let floor = find(rows, Target::Test, size, Contender::Raw);
        let what = format!(
            "test server, {} docs: bulk within {:.0}% of the raw replay's docs/s",
            size.label(),
            MAX_SLOWDOWN * 100.0
        );
        out.push(match (ours, floor) {
            (Some(o), Some(f)) => match (o.docs_per_sec(), f.docs_per_sec()) {
                (Some(a), Some(b)) => {
                    // The test server's throughput drifts with the machine's
                    // load: compare the runs that ran back to back, round by round.
                    let ratios: Vec<f64> = o
                        .round_rates
                        .iter()
                        .zip(&f.round_rates)
                        .filter(|(x, y)| **x > 0.0 && **y > 0.0)
                        .map(|(x, y)| x / y)
                        .collect();
                    // Whichever of the two runs first in a round is measurably
                    // slower on this server; the order alternates over an even
                    // number of rounds, and the geometric mean of the rounds'
                    // ratios cancels that factor.
                    let ratio = geometric_mean(&ratios).unwrap_or(a / b);
                    let rounds = ratios
                        .iter()
                        .map(|r| format!("{:.0}%", r * 100.0))
                        .collect::<Vec<_>>()
                        .join(", ");
                    (
                        ratio >= 1.0 - MAX_SLOWDOWN && o.complete(),
                        format!(
                            "{what}: geometric mean of the rounds' ratios {:.1}% of the floor (rounds: \
                             {rounds}; best runs {a:.0} vs {b:.0} docs/s){}",
                            ratio * 100.0,
                            lost_suffix(o)
                        ),
                    )
                }
                _ => (
                    false,
                    format!("{what}: not measured ({})", why_missing(o, f)),
                ),
            },
            _ => (false, format!("{what}: not measured")),
        });
    }
    out
}

/// The geometric mean of positive values.
fn geometric_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| *v <= 0.0) {
        return None;
    }
    let log_sum: f64 = values.iter().map(|v| v.ln()).sum();
    Some((log_sum / values.len() as f64).exp())
}

fn lost_suffix(row: &Row) -> &'static str {
    if row.complete() {
        ""
    } else {
        " (but it lost documents)"
    }
}

fn why_missing(a: &Row, b: &Row) -> String {
    [a, b]
        .iter()
        .filter_map(|r| r.outcome.as_ref().err())
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

/// The rows as an aligned plain-text table.
fn text_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 9]> = rows.iter().map(Row::cells).collect();
    util::aligned_table(HEADER, &cells)
}

fn markdown_table(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", HEADER.join(" | "));
    let align = [
        "---", "---", "---", "--:", "--:", "--:", "--:", "--:", "---",
    ];
    out.push_str(&format!("|{}|\n", align.join("|")));
    for row in rows {
        // Escape pipes inside a cell, not the separators between cells.
        let cells: Vec<String> = row.cells().iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn write_markdown(
    rows: &[Row],
    checks: &[(bool, String)],
    (plan, rounds): (&Plan, usize),
    command: &str,
    took: Duration,
) -> Result<()> {
    let mut md = String::from("# Bulk client benchmarks\n\n");
    let _ = writeln!(
        md,
        "Measured {} on {}, with `{command}` (the whole command took {:.1} minutes).\n",
        util::today_utc(),
        super::machine(),
        took.as_secs_f64() / 60.0
    );
    let _ = writeln!(
        md,
        "Every contender indexes the same documents (document `i` is the same bytes in Rust, Go \
         and Python, checked by CRC-32 before the run; see `bench/bulk/README.md`), handed to \
         it as pre-serialised JSON, with batches of {BATCH} documents (at most {} MiB) and \
         {WORKERS} concurrent `_bulk` requests (`streaming_bulk` has no concurrency: one). Each \
         runs as its own process; CPU seconds are its user + system time during the timed run \
         only (from `/proc/<pid>/stat`, so no interpreter start-up and not the floor's \
         pre-serialising), peak RSS is its `VmHWM` (the whole process).\n",
        BULK_SIZE >> 20
    );
    let _ = writeln!(
        md,
        "Each contender ran {rounds} round(s) of every workload, the contenders taking turns; a \
         row shows its best docs/s and its least CPU time over the rounds (on a shared machine, \
         noise only ever slows a run down), its largest peak RSS and its worst document count.\n"
    );
    let _ = writeln!(
        md,
        "- **null server**: `bulk-null-server` (`bulk::testkit::NullBulkServer`) on loopback: \
         it parses the NDJSON and answers every item with success, so this shows each client's \
         own cost. {} documents of 200 B and {} of 2 KiB per contender.\n\
         - **test server**: {}. It indexes only a few thousand documents per second, so these \
         runs are **scaled down to {} documents of 200 B and {} of 2 KiB per contender**; each \
         contender writes a fresh index, whose `_count` is checked after the run and which is \
         deleted then.\n\
         - The **floor** replays the NDJSON bodies of exactly those documents, built before the \
         clock starts, over {WORKERS} keep-alive connections (reqwest), checking only each \
         answer's status and `\"errors\":false`.\n",
        plan.null_small,
        plan.null_large,
        test_server_description(),
        plan.test_small,
        plan.test_large
    );
    md.push_str(&markdown_table(rows));
    md.push_str("\n## Targets\n\n");
    md.push_str(
        "The client's own cost: docs per CPU-second against the null server, from each \
         contender's least CPU time over the rounds. Against the test server, whose throughput \
         drifts with whatever else the machine runs, ours and the floor run back to back in \
         every round (in alternating order, over an even number of rounds: whichever runs \
         first in a round is measurably slower on this server), and the check takes the \
         geometric mean of the rounds' docs/s ratios, which cancels that order effect.\n\n",
    );
    for (ok, line) in checks {
        let _ = writeln!(md, "- **{}** {line}", if *ok { "OK" } else { "MISSED" });
    }
    let path = util::root().join("docs").join("benchmarks").join("bulk.md");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    step!("wrote {}", path.display());
    Ok(())
}

fn test_server_description() -> &'static str {
    if std::env::var(crate::services::EXTERNAL_VAR).is_ok_and(|v| v == "1") {
        "the external Elasticsearch of `ES_URL` (XTASK_EXTERNAL_SERVICES=1)"
    } else {
        "osmem-server 0.1.6 (in-memory, OpenSearch 3 REST API), started by xtask"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: Target, c: Contender, docs: u64, elapsed: f64, cpu: f64) -> Row {
        Row {
            target,
            size: Size::Small,
            contender: c,
            label: c.key().into(),
            docs,
            round_rates: vec![docs as f64 / elapsed],
            outcome: Ok(Measured {
                ok: docs,
                elapsed,
                cpu,
                rss_kib: 2048,
                error: String::new(),
                count: (target == Target::Test).then_some(docs),
            }),
        }
    }

    #[test]
    fn checks_compare_cpu_on_null_and_throughput_on_test() {
        let rows = vec![
            row(Target::Null, Contender::Ours, 1000, 1.0, 1.0),
            row(Target::Null, Contender::Olivere, 1000, 1.0, 4.0),
            row(Target::Test, Contender::Ours, 1000, 1.04, 1.0),
            row(Target::Test, Contender::Raw, 1000, 1.0, 1.0),
        ];
        let checks = checks(&rows);
        assert!(checks[0].0, "{:?}", checks[0]);
        assert!(checks[0].1.contains("4.00x"), "{:?}", checks[0]);
        assert!(checks[1].0, "{:?}", checks[1]);
        // The large size was not run at all.
        assert!(!checks[2].0 && checks[2].1.contains("not measured"));
    }

    #[test]
    fn the_test_server_check_pairs_rounds() {
        let mut ours = row(Target::Test, Contender::Ours, 1000, 1.0, 1.0);
        let mut raw = row(Target::Test, Contender::Raw, 1000, 1.0, 1.0);
        // Whoever runs first is 5% slower; the order alternates: it cancels.
        ours.round_rates = vec![95.0, 210.0, 285.0, 420.0];
        raw.round_rates = vec![100.0, 200.0, 300.0, 400.0];
        let checks_ok = checks(&[ours.clone(), raw.clone()]);
        assert!(checks_ok[1].0, "{:?}", checks_ok[1]);
        assert!(
            checks_ok[1].1.contains("99.9% of the floor"),
            "{:?}",
            checks_ok[1]
        );
        // Consistently 10% slower fails.
        ours.round_rates = vec![90.0, 180.0, 270.0, 360.0];
        let slow = checks(&[ours, raw]);
        assert!(!slow[1].0, "{:?}", slow[1]);
        let g = geometric_mean(&[0.8, 1.25]).unwrap();
        assert!((g - 1.0).abs() < 1e-12, "{g}");
        assert_eq!(geometric_mean(&[]), None);
        assert_eq!(geometric_mean(&[1.0, 0.0]), None);
    }

    #[test]
    fn lost_documents_show_and_fail_the_check() {
        let mut ours = row(Target::Test, Contender::Ours, 1000, 1.0, 1.0);
        if let Ok(m) = &mut ours.outcome {
            m.count = Some(990);
        }
        assert!(ours.note().contains("LOST DOCUMENTS: _count 990 of 1000"));
        let rows = vec![ours, row(Target::Test, Contender::Raw, 1000, 1.0, 1.0)];
        assert!(!checks(&rows)[1].0);
    }

    #[test]
    fn tables_show_not_run_reasons() {
        let mut missing = row(Target::Null, Contender::Olivere, 1000, 1.0, 1.0);
        missing.outcome = Err("no Go here".into());
        let rows = vec![row(Target::Null, Contender::Ours, 1000, 0.5, 0.25), missing];
        let text = text_table(&rows);
        assert!(text.contains("not run: no Go here"), "{text}");
        assert!(text.contains("| 2000 "), "{text}");
        assert!(text.contains("| 250.00 "), "{text}");
        let md = markdown_table(&rows);
        assert_eq!(md.lines().count(), 4);
    }
}
