//! `cargo xtask bench adaptive`: the bulk processor with fixed workers against
//! the same processor with adaptive concurrency, on a private Elasticsearch
//! whose write pool is one thread with a small queue
//! (`thread_pool.write.size=1`, `thread_pool.write.queue_size=Q`), under a
//! producer that adds documents as fast as the processor takes them: the
//! cluster pushes back with 429 and each mode copes in its own way.
//!
//! The client is the `adaptive` bench of crates/bulk, one process per run; it
//! prints `ADAPTIVE-BENCH-RESULT {json}`. Rounds alternate which mode goes
//! first; every run writes its own index, counted (`_count`) and deleted after.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::cli::AdaptiveBenchArgs;
use crate::search_server::{self, Line, PrivateNode};
use crate::{net, step, util};

/// The server line whose zip the private node runs.
const LINE: &str = "es8";
const DOCS: u64 = 200_000;
const QUICK_DOCS: u64 = 20_000;
const ROUNDS: u32 = 4;
const BATCH: usize = 500;
/// A run taking longer is killed (and its row says so).
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fixed,
    Adaptive,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Fixed => "fixed",
            Mode::Adaptive => "adaptive",
        }
    }

    fn label(self, max: usize) -> String {
        match self {
            Mode::Fixed => format!("fixed, {max} workers"),
            Mode::Adaptive => format!("adaptive, 1..={max}"),
        }
    }
}

/// What the client reported for one run, and the index's `_count` after it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Run {
    ok: u64,
    failed: u64,
    elapsed: f64,
    cpu: f64,
    rss_kib: u64,
    bulk_calls: u64,
    calls_429: u64,
    items_429: u64,
    retried: u64,
    limit_final: u64,
    limit_min: u64,
    limit_max: u64,
    decreases: u64,
    increases: u64,
    error: String,
    count: Option<u64>,
}

impl Run {
    /// Parses the client's result line.
    fn parse(line: &str) -> Option<Run> {
        let json = line.strip_prefix("ADAPTIVE-BENCH-RESULT ")?;
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let n = |k: &str| v[k].as_u64();
        Some(Run {
            ok: n("ok")?,
            failed: n("failed")?,
            elapsed: v["elapsed"].as_f64()?,
            cpu: v["cpu"].as_f64().unwrap_or(0.0),
            rss_kib: n("rss_kib").unwrap_or(0),
            bulk_calls: n("bulk_calls")?,
            calls_429: n("calls_429")?,
            items_429: n("items_429")?,
            retried: n("retried")?,
            limit_final: n("limit_final")?,
            limit_min: n("limit_min")?,
            limit_max: n("limit_max")?,
            decreases: n("decreases").unwrap_or(0),
            increases: n("increases").unwrap_or(0),
            error: v["error"].as_str().unwrap_or_default().to_owned(),
            count: None,
        })
    }
}

/// One mode's runs, summed into a table row.
#[derive(Debug, Clone)]
struct Row {
    mode: Mode,
    docs: u64,
    runs: Vec<std::result::Result<Run, String>>,
}

impl Row {
    fn ok_runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter_map(|r| r.as_ref().ok())
    }

    /// Whether every run acknowledged and counted every document.
    fn nothing_lost(&self) -> bool {
        !self.runs.is_empty()
            && self.runs.iter().all(|r| {
                r.as_ref()
                    .is_ok_and(|r| r.ok == self.docs && r.failed == 0 && r.count == Some(self.docs))
            })
    }

    fn rates(&self) -> Vec<f64> {
        self.ok_runs()
            .map(|r| self.docs as f64 / r.elapsed.max(1e-9))
            .collect()
    }

    fn cells(&self, max: usize) -> [String; 12] {
        let runs: Vec<&Run> = self.ok_runs().collect();
        let sum = |f: fn(&Run) -> u64| runs.iter().map(|r| f(r)).sum::<u64>();
        let per_run = |f: fn(&Run) -> u64| {
            if runs.is_empty() {
                "-".to_string()
            } else {
                format!("{:.0}", sum(f) as f64 / runs.len() as f64)
            }
        };
        let rates = self.rates();
        let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
        let spread = match (
            rates.iter().copied().reduce(f64::min),
            rates.iter().copied().reduce(f64::max),
        ) {
            (Some(lo), Some(hi)) => format!("{mean:.0} ({lo:.0}–{hi:.0})"),
            _ => "-".into(),
        };
        let limits = match (
            runs.iter().map(|r| r.limit_min).min(),
            runs.iter().map(|r| r.limit_max).max(),
        ) {
            (Some(lo), Some(hi)) => format!(
                "{} / {lo} / {hi}",
                runs.iter()
                    .map(|r| r.limit_final.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => "-".into(),
        };
        let counted = if self.nothing_lost() {
            format!("{} ✓", self.docs)
        } else {
            let counts: Vec<String> = self
                .runs
                .iter()
                .map(|r| match r {
                    Ok(r) => format!(
                        "{} acked, {} failed, _count {}",
                        r.ok,
                        r.failed,
                        r.count.map_or("?".into(), |c| c.to_string())
                    ),
                    Err(e) => format!("not run: {e}"),
                })
                .collect();
            format!("LOST: {}", counts.join("; "))
        };
        let cpu = runs.iter().map(|r| r.cpu).sum::<f64>() / runs.len().max(1) as f64;
        let rss = runs.iter().map(|r| r.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        [
            self.mode.label(max),
            format!("{} × {}", runs.len(), self.docs),
            spread,
            per_run(|r| r.calls_429),
            per_run(|r| r.items_429),
            per_run(|r| r.retried),
            per_run(|r| r.bulk_calls),
            limits,
            format!(
                "{} / {}",
                per_run(|r| r.decreases),
                per_run(|r| r.increases)
            ),
            format!("{cpu:.2}"),
            format!("{rss:.1}"),
            counted,
        ]
    }
}

const HEADER: [&str; 12] = [
    "mode",
    "runs × docs",
    "docs/s mean (min–max)",
    "429 calls/run",
    "429 items/run",
    "retried/run",
    "_bulk calls/run",
    "limit final / min / max",
    "decreases / increases per run",
    "client CPU s/run",
    "client peak RSS MiB",
    "_count (nothing lost)",
];

/// The private node and its URL.
struct Node {
    /// Stopped (its whole process group) when dropped.
    _node: PrivateNode,
    url: String,
}

impl Node {
    /// A single-node Elasticsearch of the `es8` zip with a write pool of one
    /// thread and a queue of `queue`, its own config, data and logs.
    fn start(line: &'static Line, queue: u32) -> Result<Node> {
        let (home, java_home) = search_server::installed_zip(line)?;
        let root = util::xtask_dir().join("bench-adaptive").join("node");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        let conf = PrivateNode::copy_config(&home, &root)?;
        let settings = [
            "xpack.security.enabled=false".to_string(),
            // One write thread and a short queue: a producer faster than that meets 429s.
            "thread_pool.write.size=1".to_string(),
            format!("thread_pool.write.queue_size={queue}"),
        ];
        let mut node = PrivateNode::start(
            &home,
            &java_home,
            &root,
            &conf,
            &settings,
            "the private node",
        )?;
        let url = format!("http://127.0.0.1:{}", node.port);
        step!(
            "bench adaptive: private {} (pid {}) on {url}, write pool 1 thread, queue {queue}",
            line.label(),
            node.child.id(),
        );
        node.wait_until("the private node", || net::es_answers(&url))?;
        let node = Node { _node: node, url };
        node.check_pool(queue)?;
        Ok(node)
    }

    /// The node runs with the write pool asked for.
    fn check_pool(&self, queue: u32) -> Result<()> {
        let (status, body) = net::http(
            "GET",
            &self.url,
            "/_nodes/_local/settings?filter_path=nodes.*.settings.thread_pool",
        )?;
        ensure!(
            status == 200,
            "GET /_nodes/_local/settings: {status} {body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let pool = v["nodes"]
            .as_object()
            .and_then(|n| n.values().next())
            .map(|n| n["settings"]["thread_pool"]["write"].clone())
            .unwrap_or_default();
        ensure!(
            pool["size"] == "1"
                && pool["queue_size"].as_str().and_then(|q| q.parse().ok()) == Some(queue),
            "the private node's write pool is {pool}, not size 1 and queue {queue}"
        );
        Ok(())
    }
}

/// Runs the client once and counts its index.
fn run_once(client: &Path, url: &str, index: &str, mode: Mode, args: &Plan) -> Result<Run> {
    let (status, body) = net::http("PUT", url, &format!("/{index}"))?;
    ensure!(status == 200, "PUT /{index}: {status} {body}");
    let mut cmd = Command::new(client);
    cmd.args(["--url", url, "--index", index, "--mode", mode.arg()])
        .arg("--docs")
        .arg(args.docs.to_string())
        .arg("--max")
        .arg(args.max.to_string())
        .arg("--batch")
        .arg(BATCH.to_string());
    let out = util::capture(&mut cmd, RUN_TIMEOUT)?;
    let run = out.stdout.lines().find_map(Run::parse);
    let counted = count_docs(url, index);
    if let Err(e) = net::http("DELETE", url, &format!("/{index}")) {
        step!("warning: could not delete index {index}: {e:#}");
    }
    let mut run = run.with_context(|| {
        format!(
            "the client printed no result ({}): {}",
            out.status,
            out.all()
        )
    })?;
    run.count = Some(counted?);
    Ok(run)
}

fn count_docs(url: &str, index: &str) -> Result<u64> {
    let _ = net::http("POST", url, &format!("/{index}/_refresh"))?;
    let (status, body) = net::http("GET", url, &format!("/{index}/_count"))?;
    ensure!(status == 200, "GET /{index}/_count: {status} {body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    v["count"].as_u64().context("no count in the answer")
}

/// The sizes of one benchmark.
#[derive(Debug, Clone, Copy)]
struct Plan {
    docs: u64,
    rounds: u32,
    queue: u32,
    max: usize,
}

impl Plan {
    fn of(args: &AdaptiveBenchArgs) -> Plan {
        let docs = args
            .docs
            .unwrap_or(if args.quick { QUICK_DOCS } else { DOCS });
        let mut rounds = args.rounds.unwrap_or(if args.quick { 2 } else { ROUNDS });
        // Each mode first as often as second.
        rounds += rounds % 2;
        Plan {
            docs,
            rounds,
            queue: args.queue_size,
            max: args.max,
        }
    }

    fn command(&self, args: &AdaptiveBenchArgs) -> String {
        let mut c = String::from("cargo xtask bench adaptive");
        if args.quick {
            c.push_str(" --quick");
        }
        for (flag, value, default) in [
            ("--docs", args.docs, None),
            ("--rounds", args.rounds.map(u64::from), None),
            (
                "--queue-size",
                Some(u64::from(self.queue)),
                Some(u64::from(crate::cli::DEFAULT_ADAPTIVE_QUEUE)),
            ),
            (
                "--max",
                Some(self.max as u64),
                Some(crate::cli::DEFAULT_ADAPTIVE_MAX as u64),
            ),
        ] {
            if let Some(v) = value.filter(|v| Some(*v) != default) {
                let _ = write!(c, " {flag} {v}");
            }
        }
        c
    }
}

pub fn cmd(args: &AdaptiveBenchArgs) -> Result<()> {
    let plan = Plan::of(args);
    let command = plan.command(args);
    let line = search_server::Line::find(LINE).context("no es8 line")?;
    let started = Instant::now();
    step!("bench adaptive: building the client (release)");
    let client = util::bench_executable("bulk", "adaptive")?;
    let node = Node::start(line, plan.queue)?;
    let run_id = util::run_id();
    let modes = [Mode::Fixed, Mode::Adaptive];
    let mut rows: Vec<Row> = modes
        .iter()
        .map(|&mode| Row {
            mode,
            docs: plan.docs,
            runs: Vec::new(),
        })
        .collect();
    // The node's first run is slow (its JIT warms up): one unmeasured run, so
    // that the mode going first in round 1 is not the one that pays for it.
    step!(
        "bench adaptive: warm-up run (not measured): fixed, {} docs",
        plan.docs
    );
    if let Err(e) = run_once(
        &client,
        &node.url,
        &format!("bench-adaptive-{run_id}-warm-up"),
        Mode::Fixed,
        &plan,
    ) {
        step!("warning: the warm-up run failed: {e:#}");
    }
    let other = super::other_work::OtherWork::start();
    for round in 1..=plan.rounds {
        let mut order = [0, 1];
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let mode = modes[i];
            let index = format!("bench-adaptive-{run_id}-{}-{round}", mode.arg());
            step!(
                "bench adaptive: round {round}/{}: {}: {} docs...",
                plan.rounds,
                mode.label(plan.max),
                plan.docs
            );
            let run =
                run_once(&client, &node.url, &index, mode, &plan).map_err(|e| format!("{e:#}"));
            match &run {
                Ok(r) => step!(
                    "  {:.0} docs/s; 429: {} calls, {} items; {} retried; limit {} (min {}, max {}); _count {}",
                    plan.docs as f64 / r.elapsed.max(1e-9),
                    r.calls_429,
                    r.items_429,
                    r.retried,
                    r.limit_final,
                    r.limit_min,
                    r.limit_max,
                    r.count.unwrap_or(0)
                ),
                Err(e) => step!("  failed: {e}"),
            }
            rows[i].runs.push(run);
        }
    }
    let server = line.label();
    // Before the node stops: its processes must still be there to be counted as ours.
    let other_cpus = other.and_then(|o| o.cpus());
    drop(node);

    let cells: Vec<[String; 12]> = rows.iter().map(|r| r.cells(plan.max)).collect();
    println!("{}", util::aligned_table(HEADER, &cells));
    let report = Report {
        plan,
        command: &command,
        server: &server,
        other_cpus,
        took: started.elapsed(),
    };
    report.write(&rows, &cells)?;
    if let Some(row) = rows.iter().find(|r| !r.nothing_lost()) {
        bail!(
            "bench adaptive: {} lost documents or failed",
            row.mode.label(plan.max)
        );
    }
    Ok(())
}

struct Report<'a> {
    plan: Plan,
    command: &'a str,
    server: &'a str,
    /// Other programs' share of the CPUs during the rounds.
    other_cpus: Option<f64>,
    took: Duration,
}

impl Report<'_> {
    fn markdown(&self, rows: &[Row], cells: &[[String; 12]]) -> String {
        let p = self.plan;
        let mut md = String::from("# Adaptive concurrency under 429 pushback\n\n");
        md.push_str(&super::other_work::caveat(self.other_cpus));
        let _ = writeln!(
            md,
            "Measured {} on {}, with `{}` ({:.1} min, the client's release build included); {}.\n",
            util::today_utc(),
            super::machine(),
            self.command,
            self.took.as_secs_f64() / 60.0,
            super::other_work::summary(self.other_cpus)
        );
        let _ = writeln!(
            md,
            "A private {server} (single node, 512 MiB heap) with `thread_pool.write.size=1` \
             and `thread_pool.write.queue_size={queue}`: one write thread and {queue} queued \
             shard bulks; more and the node refuses them with 429 \
             `es_rejected_execution_exception`. The client (`crates/bulk/benches/adaptive.rs`, \
             this crate's `BulkProcessor`, {batch} documents of about 250 bytes per `_bulk` \
             call, each with an id) adds {docs} documents as fast as the processor takes them, \
             into a fresh index (1 shard) per run, with the same backoff in both modes \
             (50 ms doubling to 2 s, jitter 0.5). *Fixed*: {max} workers, always. *Adaptive*: \
             `AdaptiveConcurrency::between(1, {max})` (starts at {max}, halves on pushback, \
             +1 after a round of clean answers while the limit was reached). {rounds} \
             rounds, alternating which mode goes first, after one unmeasured run that warms the node up. After each run the index is refreshed and counted: `_count` must equal the \
             documents added (nothing lost, nothing doubled).\n",
            server = self.server,
            queue = p.queue,
            batch = BATCH,
            docs = p.docs,
            max = p.max,
            rounds = p.rounds,
        );
        let _ = writeln!(md, "| {} |", HEADER.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(HEADER.len()));
        for row in cells {
            let _ = writeln!(md, "| {} |", row.join(" | "));
        }
        md.push_str(
            "\nColumns: docs/s is documents added ÷ time from the first `add` to the end of \
             `close` (every document acknowledged), mean of the runs, with the slowest and \
             fastest; 429 calls/items are `BulkStats::calls_rejected_429` and \
             `items_rejected_429` (each retried item counts again); retried is \
             `BulkStats::retried` (requests sent again); limit is `concurrency_limit` at the end \
             of each run / the lowest and highest sampled every 5 ms over all runs (fixed: \
             always the worker count); client CPU and peak RSS are the client process's own.\n",
        );
        let rate = |m: Mode| {
            rows.iter().find(|r| r.mode == m).map(|r| {
                let rates = r.rates();
                rates.iter().sum::<f64>() / rates.len().max(1) as f64
            })
        };
        let items = |m: Mode| {
            rows.iter().find(|r| r.mode == m).map(|r| {
                let runs: Vec<&Run> = r.ok_runs().collect();
                runs.iter().map(|r| r.items_429 + r.calls_429).sum::<u64>() as f64
                    / runs.len().max(1) as f64
            })
        };
        if let (Some(f), Some(a), Some(fi), Some(ai)) = (
            rate(Mode::Fixed),
            rate(Mode::Adaptive),
            items(Mode::Fixed),
            items(Mode::Adaptive),
        ) {
            let _ = writeln!(
                md,
                "\nIn this run: adaptive {a:.0} docs/s against fixed {f:.0} ({:+.0}%), with \
                 {ai:.0} 429s per run against {fi:.0}.",
                (a / f.max(1e-9) - 1.0) * 100.0
            );
        }
        md
    }

    fn write(&self, rows: &[Row], cells: &[[String; 12]]) -> Result<()> {
        super::write_result("adaptive.md", self.markdown(rows, cells))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"ADAPTIVE-BENCH-RESULT {"mode":"adaptive","ok":100,"failed":0,"elapsed":2.0,"cpu":0.5,"rss_kib":20480,"bulk_calls":9,"calls_429":1,"items_429":300,"retried":300,"limit_final":3,"limit_min":1,"limit_max":8,"decreases":2,"increases":2,"error":""}"#;

    #[test]
    fn parses_the_clients_result() {
        let run = Run::parse(LINE).unwrap_or_default();
        assert_eq!(
            (run.ok, run.items_429, run.limit_min, run.decreases),
            (100, 300, 1, 2)
        );
        assert_eq!(Run::parse("ADAPTIVE-BENCH-RESULT {}"), None);
        assert_eq!(Run::parse("something else"), None);
    }

    #[test]
    fn a_row_says_whether_anything_was_lost() {
        let mut run = Run::parse(LINE).unwrap_or_default();
        run.count = Some(100);
        let mut row = Row {
            mode: Mode::Adaptive,
            docs: 100,
            runs: vec![Ok(run.clone()), Ok(run.clone())],
        };
        assert!(row.nothing_lost());
        let cells = row.cells(8);
        assert_eq!(cells[2], "50 (50–50)");
        assert_eq!(cells[7], "3,3 / 1 / 8");
        assert_eq!(cells[11], "100 ✓");
        run.count = Some(99);
        row.runs.push(Ok(run));
        assert!(!row.nothing_lost());
        assert!(row.cells(8)[11].starts_with("LOST"), "{:?}", row.cells(8));
        row.runs = vec![Err("no result".into())];
        assert!(!row.nothing_lost());
    }
}
