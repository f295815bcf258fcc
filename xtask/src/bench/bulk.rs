//! `cargo xtask bench bulk`: bulk clients side by side, each in its own
//! process, on the same documents with the same batch size and concurrency,
//! against a null `_bulk` server (the client's own cost) and a real
//! Elasticsearch and OpenSearch (end to end).
//!
//! Contenders: this crate's `BulkProcessor` and the raw replay floor (the
//! `bulk_client` bench of crates/bulk), and peers installed from their
//! registries by this command (`peers.rs`): go-elasticsearch's
//! `esutil.BulkIndexer` and olivere/elastic v7's `BulkProcessor` (bench/bulk/go),
//! elasticsearch-java's `BulkIngester` (bench/bulk/java), and the
//! `streaming_bulk`/`parallel_bulk` helpers of elasticsearch-py and
//! opensearch-py (bench/bulk/py).
//!
//! Each contender prints `BULK-BENCH-READY` once set up and waits for a line on
//! stdin; we read its CPU time from `/proc/<pid>/stat`, say go, and when it
//! prints `BULK-BENCH-RESULT {json}` it waits for stdin to close while we read
//! its CPU time again and its peak RSS (`VmHWM`). So CPU seconds cover exactly
//! the timed run (no interpreter or JVM start-up, no pre-serialising for the
//! floor), and the peak RSS covers the whole process.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::search_server::Line;
use crate::services::{Session, UpOptions};
use crate::{step, util};

mod checks;
mod measure;
mod peers;

use checks::checks;
use measure::{NullServer, Run};
use peers::Launcher;

/// Same for every contender.
const WORKERS: usize = 2;
const BATCH: usize = 1000;
const BULK_SIZE: usize = 5 << 20;
/// Rounds per contender and workload (`--rounds N`); the table keeps the best.
const ROUNDS: usize = 4;
/// A contender run taking longer than this is killed (and its row says so).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// The real servers of the end-to-end runs (lines of `search_server::LINES`).
const ES_LINE: &str = "es9";
const OS_LINE: &str = "os3";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Null,
    Elasticsearch,
    OpenSearch,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Null => "null server",
            Target::Elasticsearch => "Elasticsearch",
            Target::OpenSearch => "OpenSearch",
        }
    }

    /// The stem of its chart's file name.
    fn key(self) -> &'static str {
        match self {
            Target::Null => "null",
            Target::Elasticsearch => "elasticsearch",
            Target::OpenSearch => "opensearch",
        }
    }

    /// A real server: its documents are counted afterwards.
    fn is_real(self) -> bool {
        self != Target::Null
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
    GoElasticsearch,
    Olivere,
    ElasticsearchJava,
    EsPyStreaming,
    EsPyParallel,
    OsPyStreaming,
    OsPyParallel,
}

const CONTENDERS: [Contender; 9] = [
    Contender::Ours,
    Contender::Raw,
    Contender::GoElasticsearch,
    Contender::Olivere,
    Contender::ElasticsearchJava,
    Contender::EsPyStreaming,
    Contender::EsPyParallel,
    Contender::OsPyStreaming,
    Contender::OsPyParallel,
];

/// Why the official Elasticsearch clients do not run against OpenSearch.
const PRODUCT_CHECK: &str = "product check: the official Elasticsearch clients refuse a \
                             server that does not answer `X-Elastic-Product: Elasticsearch` \
                             (OpenSearch does not)";

/// Whether a contender runs against a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plays {
    Yes,
    /// A row saying "not run" and why.
    Refused(&'static str),
    /// No row: another contender covers it (the Python helpers on the null server).
    Skipped,
}

impl Contender {
    fn key(self) -> &'static str {
        match self {
            Contender::Ours => "bulk",
            Contender::Raw => "raw",
            Contender::GoElasticsearch => "goes",
            Contender::Olivere => "olivere",
            Contender::ElasticsearchJava => "esjava",
            Contender::EsPyStreaming => "espy-streaming",
            Contender::EsPyParallel => "espy-parallel",
            Contender::OsPyStreaming => "ospy-streaming",
            Contender::OsPyParallel => "ospy-parallel",
        }
    }

    /// A peer: not ours and not the floor.
    fn is_peer(self) -> bool {
        !matches!(self, Contender::Ours | Contender::Raw)
    }

    /// An official Elasticsearch client (product check on every server).
    fn is_official_es(self) -> bool {
        matches!(
            self,
            Contender::GoElasticsearch
                | Contender::ElasticsearchJava
                | Contender::EsPyStreaming
                | Contender::EsPyParallel
        )
    }

    fn plays(self, target: Target) -> Plays {
        match (self, target) {
            (c, Target::OpenSearch) if c.is_official_es() => Plays::Refused(PRODUCT_CHECK),
            // One Python client measures the helpers' own cost on the null
            // server: opensearch-py, since the null server says it is OpenSearch.
            (Contender::EsPyStreaming | Contender::EsPyParallel, Target::Null) => Plays::Skipped,
            // The OpenSearch client against OpenSearch only (and the null server).
            (Contender::OsPyStreaming | Contender::OsPyParallel, Target::Elasticsearch) => {
                Plays::Skipped
            }
            _ => Plays::Yes,
        }
    }

    /// Arguments a target adds: the null server does not say it is
    /// Elasticsearch, so the official clients that check on every answer
    /// (Go, Java) are told to add the header to its answers.
    fn extra_args(self, target: Target) -> &'static [&'static str] {
        match (self, target) {
            (Contender::GoElasticsearch | Contender::ElasticsearchJava, Target::Null) => {
                &["--fake-product-header"]
            }
            _ => &[],
        }
    }

    /// A remark that always belongs to this contender's rows.
    fn remark(self) -> &'static str {
        match self {
            Contender::Raw => "floor: bodies built before the clock (in its RSS)",
            Contender::EsPyStreaming | Contender::OsPyStreaming => {
                "one request at a time (no concurrency in streaming_bulk)"
            }
            Contender::GoElasticsearch => {
                "cuts batches by bytes only: FlushBytes set to 1000 documents' worth"
            }
            Contender::ElasticsearchJava => {
                "sends a request as chunked transfer, one small chunk per NDJSON line"
            }
            _ => "",
        }
    }

    /// The row label when the contender could not be prepared.
    fn default_label(self) -> &'static str {
        match self {
            Contender::Ours => "bulk BulkProcessor (this crate)",
            Contender::Raw => "raw NDJSON replay (floor)",
            Contender::GoElasticsearch => "go-elasticsearch esutil.BulkIndexer (Go)",
            Contender::Olivere => "olivere/elastic v7 BulkProcessor (Go)",
            Contender::ElasticsearchJava => "elasticsearch-java BulkIngester (Java)",
            Contender::EsPyStreaming => "elasticsearch-py helpers.streaming_bulk",
            Contender::EsPyParallel => "elasticsearch-py helpers.parallel_bulk",
            Contender::OsPyStreaming => "opensearch-py helpers.streaming_bulk",
            Contender::OsPyParallel => "opensearch-py helpers.parallel_bulk",
        }
    }

    /// The name on a chart's legend.
    fn short(self) -> &'static str {
        match self {
            Contender::Ours => "bulk (ours)",
            Contender::Raw => "raw replay (floor)",
            Contender::GoElasticsearch => "go-elasticsearch",
            Contender::Olivere => "olivere/elastic v7",
            Contender::ElasticsearchJava => "elasticsearch-java",
            Contender::EsPyStreaming => "elasticsearch-py streaming_bulk",
            Contender::EsPyParallel => "elasticsearch-py parallel_bulk",
            Contender::OsPyStreaming => "opensearch-py streaming_bulk",
            Contender::OsPyParallel => "opensearch-py parallel_bulk",
        }
    }
}

/// The sizes of one run of the whole benchmark.
#[derive(Debug, Clone, Copy)]
struct Plan {
    null_small: u64,
    null_large: u64,
    real_small: u64,
    real_large: u64,
}

/// Sized so that a full run (4 rounds, 7 contenders on the null server and on
/// Elasticsearch, 5 on OpenSearch) takes about 20 minutes on 2 idle cores. The
/// real servers index 10,000 to 30,000 documents per second there: a run of
/// this crate's processor then lasts a few seconds, long enough for a refresh
/// or a merge not to decide a round (at 20,000 documents, 0.7 s, rounds of the
/// same pair differed by 2x).
const FULL: Plan = Plan {
    null_small: 1_000_000,
    null_large: 100_000,
    real_small: 100_000,
    real_large: 25_000,
};

impl Plan {
    fn docs(&self, target: Target, size: Size) -> u64 {
        match (target.is_real(), size) {
            (false, Size::Small) => self.null_small,
            (false, Size::Large) => self.null_large,
            (true, Size::Small) => self.real_small,
            (true, Size::Large) => self.real_large,
        }
    }

    fn scaled(self, divisor: u64) -> Plan {
        Plan {
            null_small: self.null_small / divisor,
            null_large: self.null_large / divisor,
            real_small: self.real_small / divisor,
            real_large: self.real_large / divisor,
        }
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
    /// `_count` of the index afterwards (real servers only).
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
                if !self.contender.extra_args(self.target).is_empty() {
                    notes.push("adds `X-Elastic-Product` to the null server's answers".into());
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

/// A target of this run: where it listens (or why there is none) and what it is.
struct Server {
    target: Target,
    url: std::result::Result<String, String>,
    description: String,
}

pub fn cmd(args: &crate::cli::BulkBenchArgs) -> Result<()> {
    let lines: Vec<&'static Line> = [ES_LINE, OS_LINE]
        .iter()
        .filter_map(|name| Line::find(name))
        .collect();
    let opts = UpOptions {
        docker: args.docker,
        servers: lines,
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
    for (on, flag) in [
        (args.docker, " --docker"),
        (args.quick, " --quick"),
        (args.plot, " --plot"),
    ] {
        if on {
            command.push_str(flag);
        }
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
    let (null_server_bin, bench_bin) = peers::build_rust()?;
    let ours = Launcher::new(
        bench_bin.clone(),
        vec!["--mode".into(), "processor".into()],
        "bulk BulkProcessor (this crate)".into(),
    );
    let raw = Launcher::new(
        bench_bin,
        vec!["--mode".into(), "raw".into()],
        "raw NDJSON replay, reqwest (floor)".into(),
    );
    step!("bench bulk: building the Go contenders (go-elasticsearch, olivere/elastic v7)");
    let go = peers::prepare_go();
    step!("bench bulk: building the Java contender (elasticsearch-java)");
    let java = peers::prepare_java();
    step!("bench bulk: preparing the Python contenders (elasticsearch-py, opensearch-py)");
    let python = peers::prepare_python();
    let py = |client: &str, mode: &str| {
        python
            .as_ref()
            .map(|p| peers::python_launcher(p, client, mode))
            .map_err(Clone::clone)
    };
    let launcher = |c: Contender| -> std::result::Result<Launcher, String> {
        match c {
            Contender::Ours => Ok(ours.clone()),
            Contender::Raw => Ok(raw.clone()),
            Contender::GoElasticsearch => go.as_ref().map(|g| g.0.clone()).map_err(Clone::clone),
            Contender::Olivere => go.as_ref().map(|g| g.1.clone()).map_err(Clone::clone),
            Contender::ElasticsearchJava => java.clone(),
            Contender::EsPyStreaming => py("elasticsearch", "streaming"),
            Contender::EsPyParallel => py("elasticsearch", "parallel"),
            Contender::OsPyStreaming => py("opensearch", "streaming"),
            Contender::OsPyParallel => py("opensearch", "parallel"),
        }
    };

    // Same documents everywhere: every contender's generator must agree.
    let reference = measure::checksum(&ours)?;
    let mut launchers = Vec::new();
    for c in CONTENDERS {
        let l = launcher(c).and_then(|l| match measure::checksum(&l) {
            Ok(sum) if sum == reference => Ok(l),
            Ok(sum) => Err(format!(
                "its documents differ from the Rust generator's ({sum} vs {reference})"
            )),
            Err(e) => Err(format!("its --checksum failed: {e:#}")),
        });
        if let Err(why) = &l {
            step!("bench bulk: {}: not run: {why}", c.default_label());
        }
        launchers.push((c, l));
    }
    step!("bench bulk: every contender generates the same documents ({reference})");

    let clk_tck = super::other_work::clock_ticks();
    let null_server = NullServer::start(&null_server_bin)?;
    let session = Session::start(opts, true)?;
    let other = super::other_work::OtherWork::start();
    let servers = [
        Server {
            target: Target::Null,
            url: Ok(null_server.url.clone()),
            description: "`bulk-null-server` (`bulk::testkit::NullBulkServer`) on loopback".into(),
        },
        real_server(&session, Target::Elasticsearch, "ES_URL"),
        real_server(&session, Target::OpenSearch, "OPENSEARCH_URL"),
    ];
    let run_id = util::run_id();

    let plays = |c: Contender, t: Target| c.plays(t) == Plays::Yes;
    let total: usize = servers
        .iter()
        .filter(|s| s.url.is_ok())
        .map(|s| {
            launchers
                .iter()
                .filter(|(c, l)| l.is_ok() && plays(*c, s.target))
                .count()
        })
        .sum::<usize>()
        * 2
        * rounds;
    let mut done = 0;
    let mut rows = Vec::new();
    for server in &servers {
        let target = server.target;
        for size in [Size::Small, Size::Large] {
            let docs = plan.docs(target, size);
            // Rounds go through all contenders in turn, so that a noisy
            // neighbour on a shared machine hits every contender alike.
            let mut runs: Vec<Vec<std::result::Result<Measured, String>>> =
                vec![Vec::new(); launchers.len()];
            // The first run on a real server pays for its warm-up (a fresh
            // JVM's JIT, the first index of its kind): a floor run nobody is
            // measured against takes it, so that it does not land on whoever
            // goes first in round 1.
            if let (true, Ok(url)) = (target.is_real(), &server.url) {
                step!(
                    "{} {}: warm-up run (not measured)",
                    target.label(),
                    size.label()
                );
                let index = format!("bench-bulk-{run_id}-warmup-{}", size.arg());
                let warm_up = Run {
                    url,
                    docs,
                    size,
                    index: &index,
                    clk_tck,
                    extra: &[],
                };
                if let Err(e) = warm_up.measure(&raw, true) {
                    step!("warning: the warm-up run failed: {e}");
                }
            }
            for round in 1..=rounds {
                // Every other round in reverse order: of any two contenders,
                // neither always goes first.
                let mut order: Vec<usize> = (0..launchers.len()).collect();
                if round % 2 == 0 {
                    order.reverse();
                }
                for i in order {
                    let (contender, launcher) = &launchers[i];
                    let (Ok(l), Ok(url)) = (launcher, &server.url) else {
                        continue;
                    };
                    if !plays(*contender, target) {
                        continue;
                    }
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
                        extra: contender.extra_args(target),
                    };
                    let outcome = run.measure(l, target.is_real());
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
                    runs[i].push(outcome);
                }
            }
            for ((contender, launcher), runs) in launchers.iter().zip(runs) {
                let outcome = match (contender.plays(target), launcher, &server.url) {
                    (Plays::Skipped, _, _) => continue,
                    (Plays::Refused(why), _, _) => Err(why.to_string()),
                    (Plays::Yes, Err(why), _) | (Plays::Yes, _, Err(why)) => Err(why.clone()),
                    (Plays::Yes, Ok(_), Ok(_)) => best_of(runs.clone()),
                };
                rows.push(Row {
                    target,
                    size,
                    contender: *contender,
                    label: launcher
                        .as_ref()
                        .map_or_else(|_| contender.default_label().into(), |l| l.label.clone()),
                    docs,
                    round_rates: runs
                        .iter()
                        .map(|r| {
                            r.as_ref()
                                .map_or(0.0, |m| docs as f64 / m.elapsed.max(1e-9))
                        })
                        .collect(),
                    outcome,
                });
            }
        }
    }
    // Before the servers stop: their processes must still be there to be counted as ours.
    let other_cpus = other.and_then(|o| o.cpus());
    drop(null_server);
    session.finish()?;

    let checks = checks(&rows);
    println!("{}", text_table(&rows));
    println!();
    for (ok, line) in &checks {
        println!("{} {line}", if *ok { "OK    " } else { "MISSED" });
    }
    let charts = if args.plot {
        write_charts(&rows)?
    } else {
        Vec::new()
    };
    let took = started.elapsed();
    let report = Report {
        rows: &rows,
        checks: &checks,
        servers: &servers,
        plan: &plan,
        rounds,
        command: &command,
        took,
        other_cpus,
        charts: &charts,
    };
    write_markdown(&report)?;
    step!("bench bulk: done in {:.1} min", took.as_secs_f64() / 60.0);
    Ok(())
}

/// The session's server for `target` (in `var`) and what it says it is.
fn real_server(session: &Session, target: Target, var: &str) -> Server {
    match session.get(var) {
        Some(url) => {
            let description = crate::search_server::server_version(url)
                .map(|(product, version)| {
                    let product = if product == "opensearch" {
                        "OpenSearch"
                    } else {
                        "Elasticsearch"
                    };
                    format!("{product} {version}")
                })
                .unwrap_or_else(|| format!("the server at {url}"));
            Server {
                target,
                url: Ok(url.to_string()),
                description,
            }
        }
        None => Server {
            target,
            url: Err(format!("no {var} in this services session")),
            description: format!("none ({var} not set)"),
        },
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

/// One SVG per target: docs/s of every contender, grouped by document size.
/// Returns the file names written (beside bulk.md).
fn write_charts(rows: &[Row]) -> Result<Vec<String>> {
    let dir = util::root().join("docs").join("benchmarks");
    std::fs::create_dir_all(&dir)?;
    let mut written = Vec::new();
    for target in [Target::Null, Target::Elasticsearch, Target::OpenSearch] {
        let sizes = [Size::Small, Size::Large];
        let contenders: Vec<Contender> = CONTENDERS
            .into_iter()
            .filter(|c| rows.iter().any(|r| r.target == target && r.contender == *c))
            .collect();
        if contenders.is_empty() {
            continue;
        }
        let groups: Vec<String> = sizes
            .iter()
            .map(|s| format!("{} documents", s.label()))
            .collect();
        let series: Vec<String> = contenders.iter().map(|c| c.short().to_string()).collect();
        let values: Vec<Vec<Option<f64>>> = contenders
            .iter()
            .map(|c| {
                sizes
                    .iter()
                    .map(|s| {
                        rows.iter()
                            .find(|r| r.target == target && r.size == *s && r.contender == *c)
                            .and_then(Row::docs_per_sec)
                    })
                    .collect()
            })
            .collect();
        let title = format!(
            "bulk indexing, {}: docs/s (higher is better)",
            target.label()
        );
        let svg = super::plot::grouped_bars(&super::plot::Chart {
            title: &title,
            unit: "docs/s",
            groups: &groups,
            series: &series,
            values: &values,
        });
        let name = format!("bulk-{}.svg", target.key());
        let path = dir.join(&name);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        step!("wrote {}", path.display());
        written.push(name);
    }
    Ok(written)
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

/// Everything docs/benchmarks/bulk.md says about one run.
struct Report<'a> {
    rows: &'a [Row],
    checks: &'a [(bool, String)],
    servers: &'a [Server],
    plan: &'a Plan,
    rounds: usize,
    command: &'a str,
    took: Duration,
    /// Other programs' share of the CPUs while the contenders ran.
    other_cpus: Option<f64>,
    charts: &'a [String],
}

fn write_markdown(r: &Report<'_>) -> Result<()> {
    let mut md = String::from("# Bulk client benchmarks\n\n");
    md.push_str(&super::other_work::caveat(r.other_cpus));
    let _ = writeln!(
        md,
        "Measured {} on {}, with `{}` (the whole command took {:.1} minutes); {}.\n",
        util::today_utc(),
        super::machine(),
        r.command,
        r.took.as_secs_f64() / 60.0,
        super::other_work::summary(r.other_cpus)
    );
    if r.command.contains("--quick") {
        md.push_str(
            "**A quick look, not a measurement** (`--quick`: a tenth of the documents, one \
             round, on whatever else the machine was doing): run `cargo xtask bench bulk` on an \
             idle machine for the figures.\n\n",
        );
    }
    let _ = writeln!(
        md,
        "Every contender indexes the same documents (document `i` is the same bytes in Rust, \
         Go, Java and Python, checked by CRC-32 before the run; see `bench/bulk/README.md`), \
         handed to it as pre-serialised JSON, with batches of {BATCH} documents (at most {} MiB) \
         and {WORKERS} concurrent `_bulk` requests (`streaming_bulk` has no concurrency: one). \
         Each runs as its own process; CPU seconds are its user + system time during the timed \
         run only (from `/proc/<pid>/stat`, so no interpreter or JVM start-up and not the \
         floor's pre-serialising), peak RSS is its `VmHWM` (the whole process). The peers are \
         installed by the command itself from their registries (Go module proxy, Maven \
         Central, PyPI); the versions in the table are the ones that run used. Before the \
         measured runs of each document size on a real server, one unmeasured floor run \
         warms the server up.\n",
        BULK_SIZE >> 20
    );
    let _ = writeln!(
        md,
        "Each contender ran {} round(s) of every workload, the contenders taking turns (every \
         other round in reverse order); a row shows its best docs/s and its least CPU time over \
         the rounds (on a shared machine, noise only ever slows a run down), its largest peak \
         RSS and its worst document count.\n",
        r.rounds
    );
    for server in r.servers {
        let what = match server.target {
            Target::Null => format!(
                "{}: it parses the NDJSON and answers every item with success, so this shows \
                 each client's own cost. {} documents of 200 B and {} of 2 KiB per contender. \
                 It does not send `X-Elastic-Product`, which the official Elasticsearch clients \
                 insist on: go-elasticsearch and elasticsearch-java add it to its answers in \
                 their HTTP layer (`--fake-product-header`), and the Python helpers are measured \
                 here with opensearch-py (the null server says it is OpenSearch); \
                 elasticsearch-py's helpers are the same code on another transport.",
                server.description, r.plan.null_small, r.plan.null_large
            ),
            _ => format!(
                "{}, started by xtask (end to end: the server's indexing is most of the cost). \
                 {} documents of 200 B and {} of 2 KiB per contender; each contender writes a \
                 fresh index, whose `_count` is checked after the run and which is deleted then.",
                server.description, r.plan.real_small, r.plan.real_large
            ),
        };
        let _ = writeln!(md, "- **{}**: {what}", server.target.label());
    }
    let _ = writeln!(
        md,
        "- The **floor** replays the NDJSON bodies of exactly those documents, built before the \
         clock starts, over {WORKERS} keep-alive connections (reqwest), checking only each \
         answer's status and `\"errors\":false`.\n"
    );
    md.push_str(&markdown_table(r.rows));
    for chart in r.charts {
        let _ = write!(md, "\n![{chart}]({chart})\n");
    }
    md.push_str("\n## Targets\n\n");
    md.push_str(
        "The client's own cost: docs per CPU-second against the null server, from each \
         contender's least CPU time over the rounds, against the best peer's. Against the real \
         servers, whose throughput drifts with whatever else the machine runs, every contender \
         runs once per round, in alternating order over an even number of rounds (whichever of \
         two runs first in a round can be measurably slower), and a check takes the geometric \
         mean of the rounds' docs/s ratios, which cancels that order effect; the best peer \
         there is the one whose ratio to ours is the least.\n\n",
    );
    for (ok, line) in r.checks {
        let _ = writeln!(md, "- **{}** {line}", if *ok { "OK" } else { "MISSED" });
    }
    super::write_result("bulk.md", md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn row(target: Target, c: Contender, docs: u64, elapsed: f64, cpu: f64) -> Row {
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
                count: target.is_real().then_some(docs),
            }),
        }
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

    #[test]
    fn official_clients_are_refused_by_opensearch_only() {
        for c in CONTENDERS {
            let on_os = c.plays(Target::OpenSearch);
            assert_eq!(
                matches!(on_os, Plays::Refused(_)),
                c.is_official_es(),
                "{c:?}"
            );
            // Ours, the floor and olivere run everywhere.
            if !c.is_peer() || c == Contender::Olivere {
                for t in [Target::Null, Target::Elasticsearch, Target::OpenSearch] {
                    assert_eq!(c.plays(t), Plays::Yes, "{c:?} on {t:?}");
                }
            }
        }
        // One Python client per server: opensearch-py on the null server.
        assert_eq!(Contender::EsPyParallel.plays(Target::Null), Plays::Skipped);
        assert_eq!(Contender::OsPyParallel.plays(Target::Null), Plays::Yes);
        assert_eq!(
            Contender::OsPyStreaming.plays(Target::Elasticsearch),
            Plays::Skipped
        );
        // Only the clients that check every answer get the header on the null server.
        assert!(
            Contender::GoElasticsearch
                .extra_args(Target::Null)
                .contains(&"--fake-product-header")
        );
        assert!(
            Contender::GoElasticsearch
                .extra_args(Target::Elasticsearch)
                .is_empty()
        );
        assert!(Contender::Olivere.extra_args(Target::Null).is_empty());
    }

    #[test]
    fn the_best_of_rounds_keeps_the_worst_count() {
        let a = row(Target::Elasticsearch, Contender::Ours, 1000, 2.0, 1.0).outcome;
        let mut b = row(Target::Elasticsearch, Contender::Ours, 1000, 1.0, 2.0).outcome;
        if let Ok(m) = &mut b {
            m.count = Some(990);
        }
        let best = best_of(vec![a.clone(), b]);
        let best = best.as_ref().ok();
        assert_eq!(
            best.map(|m| (m.elapsed, m.cpu, m.count)),
            Some((1.0, 1.0, Some(990)))
        );
        assert!(best_of(vec![a, Err("killed".into())]).is_err());
    }
}
