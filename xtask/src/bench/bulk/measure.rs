//! Running one contender process and measuring it: the READY/go/RESULT
//! handshake, CPU seconds from `/proc/<pid>/stat`, peak RSS (`VmHWM`), the
//! `_count` check on a real server; and the null bulk server child.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::peers::Launcher;
use super::{BATCH, BULK_SIZE, Measured, RUN_TIMEOUT, Size, WORKERS, one_line};
use crate::{net, step, util};

/// One contender run against one server.
pub(super) struct Run<'a> {
    pub url: &'a str,
    pub docs: u64,
    pub size: Size,
    pub index: &'a str,
    pub clk_tck: f64,
    /// Arguments this target adds for this contender (`--fake-product-header`).
    pub extra: &'a [&'a str],
}

impl Run<'_> {
    /// Runs the contender; on the test server, counts and deletes its index after.
    pub fn measure(
        &self,
        launcher: &Launcher,
        count: bool,
    ) -> std::result::Result<Measured, String> {
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
        .arg("--handshake")
        .args(self.extra);
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
            // Unknown, not lost: the documents may all be there.
            Err(e) => {
                if m.error.is_empty() {
                    m.error = format!("_count failed, the count is unknown: {e:#}");
                }
            }
        }
        Ok(m)
    }
}

/// The index's document count after a refresh. A server pushing back (429: a
/// full queue, or its circuit breaker after a heavy run) is asked again, for
/// about 15 s at most.
fn count_docs(url: &str, index: &str) -> Result<u64> {
    let mut wait = Duration::from_millis(250);
    let (status, body) = loop {
        let _ = net::http("POST", url, &format!("/{index}/_refresh"))?;
        let (status, body) = net::http("GET", url, &format!("/{index}/_count"))?;
        if status != 429 || wait > Duration::from_secs(8) {
            break (status, body);
        }
        std::thread::sleep(wait);
        wait *= 2;
    };
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
    let times = super::super::other_work::parse_stat(&stat)
        .with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))?;
    Ok(times.own / clk_tck)
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

/// The contender's CRC-32 line of the first 10k documents of each size.
pub(super) fn checksum(launcher: &Launcher) -> Result<String> {
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

/// The `bulk-null-server` child; killed on drop.
pub(super) struct NullServer {
    child: Child,
    pub url: String,
}

impl NullServer {
    pub fn start(bin: &Path) -> Result<NullServer> {
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
