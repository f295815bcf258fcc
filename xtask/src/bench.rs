//! `cargo xtask bench <target>`: runs benchmark binaries against the test
//! services and gathers their rows into one table (stdout + docs/benchmarks/).

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};

use crate::cli::{BenchCommand, DocsArgs};
use crate::services::{Session, UpOptions};
use crate::{step, util};

mod adaptive;
mod bulk;
mod late;
mod micro;
mod other_work;
mod plot;
mod source;
mod stats;

const STATE_CRATES: [&str; 4] = ["state-file", "state-sled", "state-redis", "state-es"];
/// A store within this factor of its floor's throughput is marked OK.
const RATIO_OK: f64 = 1.3;

pub fn cmd(target: &BenchCommand) -> Result<()> {
    match target {
        BenchCommand::State(args) => bench_state(args.docker),
        BenchCommand::Bulk(args) => bulk::cmd(args),
        BenchCommand::Adaptive(args) => adaptive::cmd(args),
        BenchCommand::Source(args) => source::cmd(args),
        BenchCommand::LateWindow(args) => late::cmd(args),
        BenchCommand::Micro(args) => micro::cmd(args),
    }
}

/// The services options and document count of a bench target reading `--docs N`
/// documents (`default` without it).
pub fn docs_options(args: &DocsArgs, default: u64) -> (UpOptions, u64) {
    let opts = UpOptions {
        docker: args.docker,
        ..UpOptions::default()
    };
    (opts, args.docs.unwrap_or(default))
}

/// One `STATE-BENCH` line (see `state_core::bench::Comparison::row`).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub backend: String,
    pub op: String,
    pub ops: f64,
    pub p50: f64,
    pub p99: f64,
    pub floor_ops: f64,
    pub floor_p50: f64,
    pub floor_p99: f64,
    pub floor_desc: String,
}

impl Row {
    pub fn parse(line: &str) -> Option<Row> {
        let rest = line.strip_prefix("STATE-BENCH\t")?;
        let f: Vec<&str> = rest.splitn(9, '\t').collect();
        let [
            backend,
            op,
            ops,
            p50,
            p99,
            floor_ops,
            floor_p50,
            floor_p99,
            desc,
        ] = f[..]
        else {
            return None;
        };
        Some(Row {
            backend: backend.into(),
            op: op.into(),
            ops: ops.trim().parse().ok()?,
            p50: p50.trim().parse().ok()?,
            p99: p99.trim().parse().ok()?,
            floor_ops: floor_ops.trim().parse().ok()?,
            floor_p50: floor_p50.trim().parse().ok()?,
            floor_p99: floor_p99.trim().parse().ok()?,
            floor_desc: desc.trim().into(),
        })
    }

    /// Floor ops/s ÷ store ops/s: 1.0 means the store costs nothing over the floor.
    pub fn ratio(&self) -> f64 {
        self.floor_ops / self.ops
    }

    fn cells(&self) -> [String; 10] {
        let ratio = self.ratio();
        let mark = if ratio <= RATIO_OK { "OK" } else { "over" };
        [
            self.backend.clone(),
            self.op.clone(),
            format!("{:.0}", self.ops),
            format!("{:.1}", self.p50),
            format!("{:.1}", self.p99),
            format!("{:.0}", self.floor_ops),
            format!("{:.1}", self.floor_p50),
            format!("{:.1}", self.floor_p99),
            format!("{ratio:.2} {mark}"),
            self.floor_desc.clone(),
        ]
    }
}

const HEADER: [&str; 10] = [
    "backend",
    "op",
    "ops/s",
    "p50 µs",
    "p99 µs",
    "floor ops/s",
    "floor p50 µs",
    "floor p99 µs",
    "floor/store",
    "floor",
];

/// The rows as an aligned plain-text table.
pub fn text_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 10]> = rows.iter().map(Row::cells).collect();
    util::aligned_table(HEADER, &cells)
}

/// The rows as a markdown table.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", HEADER.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(HEADER.len())));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.cells().join(" | ")));
    }
    out
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs ({model}), {}", std::env::consts::OS)
}

fn bench_state(docker: bool) -> Result<()> {
    let opts = UpOptions {
        docker,
        ..UpOptions::default()
    };
    let session = Session::start(opts.clone(), true)?;
    let servers = if opts.docker {
        "docker compose images (docker/compose.yml)"
    } else if std::env::var(crate::services::EXTERNAL_VAR).is_ok_and(|v| v == "1") {
        "external services (XTASK_EXTERNAL_SERVICES=1)"
    } else {
        "native test servers: osmem-server 0.1.6 (in-memory, OpenSearch REST API) and redis-server"
    };
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for krate in STATE_CRATES {
        let mut cmd = util::cargo();
        cmd.args(["bench", "-p", krate, "--bench", "state"])
            .envs(session.vars.iter().map(|(k, v)| (k, v)));
        let before = rows.len();
        match util::stream(&mut cmd, |line| rows.extend(Row::parse(line))) {
            Ok(status) if status.success() && rows.len() > before => {}
            Ok(status) if status.success() => {
                failed.push(format!("{krate}: printed no STATE-BENCH rows"))
            }
            Ok(status) => failed.push(format!("{krate}: cargo bench failed ({status})")),
            Err(e) => failed.push(format!("{krate}: {e:#}")),
        }
    }
    session.finish()?;

    if !rows.is_empty() {
        println!("{}", text_table(&rows));
        write_markdown(&rows, servers, &failed)?;
    }
    if !failed.is_empty() {
        bail!("bench state: {}", failed.join("; "));
    }
    Ok(())
}

fn write_markdown(rows: &[Row], servers: &str, failed: &[String]) -> Result<()> {
    let mut md = String::from("# State backend benchmarks\n\n");
    let _ = writeln!(
        md,
        "Measured {} on {}, with `cargo xtask bench state`, against {servers}.\n",
        util::today_utc(),
        machine()
    );
    md.push_str(
        "Each backend saves and loads a 2 KiB state document through its `StateStore`; the \
         *floor* is the same operation done raw with the same client in the same run (what \
         the store cannot beat). Latencies are in microseconds. `floor/store` is floor ops/s \
         divided by store ops/s: 1.00 means the store adds nothing, and it is marked OK up \
         to 1.3.\n\n",
    );
    md.push_str(&markdown_table(rows));
    md.push_str(
        "\nReading the loads: a load floor is the bare read of the stored bytes (a file read, \
         a sled `get`), while every store must also decode the 2 KiB JSON document, which \
         alone takes about 3.5 µs here. Against a 0.2 µs in-memory `get` no decoding store can \
         be within 1.3x; the network backends' floors include a round trip, which hides it. \
         Save floors already include the fsync or round trip that dominates. On a 2-core \
         machine the figures move by 20% or more between runs when anything else is running.\n",
    );
    if !failed.is_empty() {
        let _ = writeln!(md, "\nNot measured in this run: {}.", failed.join("; "));
    }
    write_result("state.md", md)?;
    Ok(())
}

/// Writes a benchmark's results, `docs/benchmarks/<name>`, and says where.
///
/// Notes written by hand below [`KEPT_NOTES`] in the previous file (profiles,
/// why a target is missed) are kept after the new results.
fn write_result(name: &str, contents: impl AsRef<str>) -> Result<std::path::PathBuf> {
    let dir = util::root().join("docs").join("benchmarks");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let contents = with_kept_notes(contents.as_ref().to_owned(), &old);
    std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    step!("wrote {}", path.display());
    Ok(path)
}

/// The line after which a results file holds notes written by hand, which a new
/// run of its benchmark keeps.
const KEPT_NOTES: &str =
    "<!-- Notes below this line are written by hand; a new run of the benchmark keeps them. -->";

/// `md`, followed by the hand-written notes of the `old` file, if it had any.
fn with_kept_notes(mut md: String, old: &str) -> String {
    if let Some(at) = old.find(KEPT_NOTES) {
        md.push('\n');
        md.push_str(&old[at..]);
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_report_keeps_the_hand_written_notes() {
        let old = format!("# old table\n\n{KEPT_NOTES}\n\n## Profile\n\nnotes\n");
        assert_eq!(
            with_kept_notes("# new table\n".into(), &old),
            format!("# new table\n\n{KEPT_NOTES}\n\n## Profile\n\nnotes\n")
        );
        assert_eq!(with_kept_notes("# new\n".into(), "# old\n"), "# new\n");
    }

    const LINE: &str =
        "STATE-BENCH\tredis\tsave\t9000\t100.5\t250.0\t10000\t90.2\t200.0\tredis SET 2 KiB";

    #[test]
    fn parses_rows() {
        let row = Row::parse(LINE);
        assert_eq!(
            row.as_ref()
                .map(|r| (r.backend.as_str(), r.p99, r.floor_desc.as_str())),
            Some(("redis", 250.0, "redis SET 2 KiB"))
        );
        assert!(row.is_some_and(|r| (r.ratio() - 10.0 / 9.0).abs() < 1e-9));
        assert_eq!(Row::parse("STATE-BENCH\tredis\tsave"), None);
        assert_eq!(Row::parse("test result: ok"), None);
    }

    #[test]
    fn tables_mark_ratios() {
        let mut slow = Row::parse(LINE).into_iter().collect::<Vec<_>>();
        let mut second = slow[0].clone();
        second.ops = 5000.0;
        slow.push(second);
        let text = text_table(&slow);
        assert!(text.contains("1.11 OK"), "{text}");
        assert!(text.contains("2.00 over"), "{text}");
        let md = markdown_table(&slow);
        assert_eq!(md.lines().count(), 4);
        assert!(md.starts_with("| backend | op |"));
    }
}
