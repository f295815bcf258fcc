//! `cargo xtask fuzz`: builds the cargo-fuzz targets of `fuzz/` (libFuzzer) and
//! runs each for a bounded time, then prints one table.
//!
//! Each target runs on a working corpus under `target/xtask/fuzz/corpus/<target>`
//! (kept between runs, so later runs start where earlier ones got to) plus the
//! committed seeds in `fuzz/corpus/<target>`, which the run only reads. Crash
//! inputs land in `target/xtask/fuzz/artifacts/<target>/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cli::FuzzArgs;
use crate::{step, util};

/// The cargo-fuzz release `cargo xtask fuzz` installs when none is there.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Per-input bounds: the longest input tried, the memory a run may use, and how
/// long one input may take before it counts as a hang.
const MAX_LEN: usize = 32 * 1024;
const RSS_LIMIT_MB: u32 = 2048;
const INPUT_TIMEOUT_SECS: u32 = 10;

pub fn cmd(args: &FuzzArgs) -> Result<()> {
    let fuzz_dir = util::root().join("fuzz");
    let all = targets(&fuzz_dir)?;
    let chosen: Vec<String> = if args.targets.is_empty() {
        all.clone()
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                bail!("no fuzz target `{t}`; the targets are: {}", all.join(", "));
            }
        }
        args.targets.clone()
    };
    check_nightly()?;
    ensure_cargo_fuzz()?;
    let build_dir = util::target_dir().join("fuzz");
    let started = Instant::now();
    let mut build = nightly_cargo();
    build
        .current_dir(util::root())
        .args([
            "fuzz",
            "build",
            "--sanitizer",
            "none",
            "--debug-assertions",
            "--fuzz-dir",
        ])
        .arg(&fuzz_dir)
        .arg("--target-dir")
        .arg(&build_dir);
    if args.targets.len() == 1 {
        build.arg(&args.targets[0]);
    }
    util::run(&mut build)?;
    step!(
        "fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let bins = build_dir.join(host_triple()?).join("release");
    let work = util::xtask_dir().join("fuzz");
    let mut rows = Vec::new();
    let mut crashed = Vec::new();
    for target in &chosen {
        let result = run_target(&bins.join(target), target, &fuzz_dir, &work, args)?;
        if !result.crashes.is_empty() {
            crashed.push((target.clone(), result.crashes.clone(), result.log.clone()));
        }
        rows.push(result.row(target));
    }
    println!(
        "{}",
        util::aligned_table(
            [
                "target",
                "seconds",
                "executions",
                "exec/s",
                "coverage",
                "features",
                "corpus",
                "crashes",
            ],
            &rows
        )
    );
    if crashed.is_empty() {
        return Ok(());
    }
    for (target, crashes, log) in &crashed {
        for crash in crashes {
            step!(
                "{target}: crash input {} (log {}); reproduce with `cargo +nightly fuzz run -s none {target} {}`",
                crash.display(),
                log.display(),
                crash.display()
            );
        }
    }
    bail!(
        "{} of {} fuzz targets crashed: {}",
        crashed.len(),
        chosen.len(),
        crashed
            .iter()
            .map(|(t, ..)| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The targets: one file each in `fuzz/fuzz_targets/`.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_owned))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no fuzz targets in {}", dir.display());
    }
    Ok(names)
}

/// `cargo +nightly`, in the environment of a plain shell.
fn nightly_cargo() -> Command {
    let mut cmd = plain_cargo();
    cmd.arg("+nightly");
    cmd
}

/// `cargo` without what `cargo run` set for xtask itself (its package's
/// variables, the toolchain, the library path): build scripts see those, so a
/// build from here would otherwise rebuild, from `ring` on, what a `cargo fuzz
/// build` typed in a shell built, and the other way round.
fn plain_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                key,
                "CARGO"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "LD_LIBRARY_PATH"
                    | "RUSTUP_TOOLCHAIN"
                    | "RUST_RECURSION_COUNT"
            )
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn check_nightly() -> Result<()> {
    let out = nightly_cargo()
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            step!("{}", String::from_utf8_lossy(&out.stdout).trim());
            Ok(())
        }
        Ok(out) => bail!(
            "cargo xtask fuzz needs a nightly Rust toolchain (libFuzzer's instrumentation uses \
             unstable compiler flags), and `cargo +nightly` failed: {}. Install one with \
             `rustup toolchain install nightly`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => bail!(
            "cargo xtask fuzz needs a nightly Rust toolchain through rustup (`cargo +nightly`), \
             which could not be started ({e}). Install rustup, then `rustup toolchain install nightly`"
        ),
    }
}

/// Installs cargo-fuzz (from crates.io, `--locked`) unless `cargo fuzz` works.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = nightly_cargo()
        .args(["fuzz", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    step!("cargo-fuzz is not installed: installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io");
    let started = Instant::now();
    let mut install = plain_cargo();
    install
        .args(["install", "--locked", "cargo-fuzz", "--version"])
        .arg(CARGO_FUZZ_VERSION)
        // Its own build directory: not the workspace's target, whatever CARGO_TARGET_DIR says.
        .arg("--target-dir")
        .arg(util::target_dir().join("cargo-fuzz-install"));
    util::run(&mut install)?;
    step!(
        "cargo-fuzz installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The host's target triple (where cargo fuzz puts the binaries).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV did not say its host")
}

/// What one bounded run of a target did.
#[derive(Debug, Default, PartialEq)]
struct RunStats {
    seconds: u64,
    executions: Option<u64>,
    exec_per_sec: Option<u64>,
    coverage: Option<u64>,
    features: Option<u64>,
    corpus: Option<String>,
    crashes: Vec<PathBuf>,
    log: PathBuf,
}

impl RunStats {
    fn row(&self, target: &str) -> [String; 8] {
        let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        [
            target.to_owned(),
            self.seconds.to_string(),
            n(self.executions),
            n(self.exec_per_sec),
            n(self.coverage),
            n(self.features),
            self.corpus.clone().unwrap_or_else(|| "?".into()),
            self.crashes.len().to_string(),
        ]
    }
}

fn run_target(
    bin: &Path,
    target: &str,
    fuzz_dir: &Path,
    work: &Path,
    args: &FuzzArgs,
) -> Result<RunStats> {
    let seconds = args.seconds;
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let before = listing(&artifacts)?;
    let log = logs.join(format!("{target}.log"));
    let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1");
    if args.keep_going {
        cmd.args([
            "-fork=1",
            "-ignore_crashes=1",
            "-ignore_ooms=1",
            "-ignore_timeouts=1",
        ]);
    }
    cmd.arg(format!("-artifact_prefix={}/", artifacts.display()))
        // New inputs go to the first directory; the committed seeds are only read.
        .arg(&corpus)
        .arg(fuzz_dir.join("corpus").join(target))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let started = Instant::now();
    let status = util::status(&mut cmd)?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    let mut stats = parse_log(&text);
    stats.seconds = started.elapsed().as_secs();
    stats.log = log;
    stats.crashes = listing(&artifacts)?
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if !status.success() && stats.crashes.is_empty() {
        bail!(
            "fuzz target {target} failed ({status}) without a crash input; its log ends:\n{}",
            util::tail(&stats.log, 20)
        );
    }
    step!(
        "{target}: {} executions, {} crash inputs",
        stats.executions.unwrap_or(0),
        stats.crashes.len()
    );
    Ok(stats)
}

fn listing(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    files.sort();
    Ok(files)
}

/// The figures of a libFuzzer log: the final stats (`-print_final_stats=1`) and
/// the last status line (`#N ... cov: C ft: F corp: U/S ...`).
fn parse_log(text: &str) -> RunStats {
    let stat = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse().ok())
    };
    let status = text
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains(" cov: "));
    let field = |name: &str| -> Option<String> {
        let mut words = status?.split_whitespace();
        words.find(|w| *w == name)?;
        words.next().map(str::to_owned)
    };
    // Fork mode (`--keep-going`) prints no final stats: its last status line
    // (`#N: cov: ... exec/s: E ...`) says as much.
    let runs = || {
        status?
            .split_whitespace()
            .next()?
            .trim_start_matches('#')
            .trim_end_matches(':')
            .parse()
            .ok()
    };
    RunStats {
        executions: stat("number_of_executed_units").or_else(runs),
        exec_per_sec: stat("average_exec_per_sec")
            .or_else(|| field("exec/s:").and_then(|v| v.parse().ok())),
        coverage: field("cov:").and_then(|v| v.parse().ok()),
        features: field("ft:").and_then(|v| v.parse().ok()),
        corpus: field("corp:"),
        ..RunStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_figures_of_a_libfuzzer_log() {
        let log = "\
INFO: Seed: 1234
#2\tINITED cov: 310 ft: 500 corp: 20/12Kb exec/s: 0 rss: 40Mb
#4096\tpulse  cov: 400 ft: 700 corp: 35/20Kb lim: 4096 exec/s: 2048 rss: 60Mb
#80000\tDONE   cov: 412 ft: 733 corp: 38/22Kb lim: 4096 exec/s: 5333 rss: 61Mb
Done 80000 runs in 15 second(s)
stat::number_of_executed_units: 80000
stat::average_exec_per_sec:     5333
stat::new_units_added:          18
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              61
";
        let stats = parse_log(log);
        assert_eq!(stats.executions, Some(80_000));
        assert_eq!(stats.exec_per_sec, Some(5_333));
        assert_eq!(stats.coverage, Some(412));
        assert_eq!(stats.features, Some(733));
        assert_eq!(stats.corpus.as_deref(), Some("38/22Kb"));
        let forked = parse_log(
            "#1500000: cov: 900 ft: 2100 corp: 120 exec/s: 2500 oom/timeout/crash: 0/0/1 time: 600s job: 40 dft_time: 0\n",
        );
        assert_eq!(forked.executions, Some(1_500_000));
        assert_eq!(forked.exec_per_sec, Some(2_500));
        assert_eq!((forked.coverage, forked.features), (Some(900), Some(2_100)));
        assert_eq!(forked.corpus.as_deref(), Some("120"));
        let nothing = parse_log("==1== ERROR: libFuzzer: deadly signal\n");
        assert_eq!(nothing.executions, None);
        assert_eq!(nothing.row("t")[2], "?");
    }

    #[test]
    fn every_target_has_committed_seeds() {
        let fuzz = util::root().join("fuzz");
        let names = targets(&fuzz).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(names.len() >= 9, "{names:?}");
        for name in names {
            let seeds = fuzz.join("corpus").join(&name);
            let count = fs::read_dir(&seeds).map(Iterator::count).unwrap_or(0);
            assert!(count > 0, "{} has no seeds", seeds.display());
        }
    }
}
