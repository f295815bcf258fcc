//! The native test services as detached background processes: one seam for every
//! kind (its module describes a [`Launch`]: install, command, endpoint), then the
//! same start (own process group), readiness poll, pid/url/log files in the state
//! dir, and stop (the whole process group, so no java child outlives it).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use crate::iggy_server::bin as iggy_server_bin;
pub use crate::redis_server::on_path as redis_server_on_path;
use crate::services::{Kind, state_dir, wait_answers};
use crate::util;
use crate::{iggy_server, net, redis_server, search_server, step};

/// How one kind of service starts, as its module describes it.
#[derive(Debug)]
pub struct Launch {
    /// The command (installed already); stdout and stderr go to its log file.
    pub cmd: Command,
    /// Its endpoint, the value of its variable.
    pub url: String,
    /// How long it may take to answer.
    pub ready_timeout: Duration,
}

fn launch(kind: Kind, port: u16) -> Result<Launch> {
    match kind {
        Kind::Search(line) => search_server::launch(line, port),
        Kind::Redis => redis_server::launch(port),
        Kind::Iggy => iggy_server::launch(port),
    }
}

fn pid_file(kind: Kind) -> PathBuf {
    state_dir().join(format!("{}.pid", kind.stem()))
}

fn url_file(kind: Kind) -> PathBuf {
    state_dir().join(format!("{}.url", kind.stem()))
}

pub fn log_file(kind: Kind) -> PathBuf {
    state_dir().join(format!("{}.log", kind.stem()))
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// The fields of `/proc/PID/stat` after the parenthesised command name
/// (state, ppid, pgrp, ...).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Live processes of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid).is_some_and(|f| {
                f.first().is_some_and(|s| s != "Z" && s != "X")
                    && f.get(2).is_some_and(|g| *g == pgid.to_string())
            })
        })
        .collect()
}

/// Whether `pid` is alive and still runs our service (not a reused pid).
fn pid_is(kind: Kind, pid: u32) -> bool {
    let needle = kind.needle();
    pid_alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
}

fn read_pid(kind: Kind) -> Option<u32> {
    std::fs::read_to_string(pid_file(kind))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pid and URL recorded for our instance of `kind`, running or not.
pub fn recorded(kind: Kind) -> Option<(u32, String)> {
    let url = std::fs::read_to_string(url_file(kind)).ok()?;
    Some((read_pid(kind)?, url.trim().to_string()))
}

/// The pid and URL of our running, answering instance of `kind`.
pub fn running(kind: Kind) -> Option<(u32, String)> {
    let (pid, url) = recorded(kind)?;
    (pid_is(kind, pid) && wait_answers(kind.var(), &url, Duration::from_secs(2)))
        .then_some((pid, url))
}

/// Starts `kind` on a free loopback port and waits until it answers; returns its URL.
pub fn start(kind: Kind) -> Result<String> {
    // Stop a half-dead instance of ours first (alive but not answering).
    stop(kind)?;
    let mut last_err = None;
    // A free port can be taken between our probe and the server's bind: retry.
    for _ in 0..3 {
        match start_once(kind) {
            Ok(url) => return Ok(url),
            Err(e) => {
                step!("{}: {e:#}", kind.name());
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("could not start {}", kind.name())))
}

fn start_once(kind: Kind) -> Result<String> {
    let Launch {
        mut cmd,
        url,
        ready_timeout,
    } = launch(kind, net::free_port()?)?;
    let log_path = log_file(kind);
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    step!("{}: starting {}", kind.name(), util::display(&cmd));
    // Own process group: a Ctrl-C in the terminal does not reach it, it outlives
    // this command until `services down`, and `stop` ends the whole group.
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start {}", util::display(&cmd)))?;
    std::fs::write(pid_file(kind), child.id().to_string())?;
    std::fs::write(url_file(kind), &url)?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            stop_group(child.id())?;
            bail!(
                "exited ({status}) before answering; log {}:\n{}",
                log_path.display(),
                util::tail(&log_path, 15)
            );
        }
        if wait_answers(kind.var(), &url, Duration::ZERO) {
            step!(
                "{}: up at {url} (pid {}, {}s)",
                kind.name(),
                child.id(),
                started.elapsed().as_secs()
            );
            return Ok(url);
        }
        if started.elapsed() > ready_timeout {
            stop_group(child.id())?;
            let _ = child.wait();
            bail!(
                "did not answer at {url} within {}s; log {}:\n{}",
                ready_timeout.as_secs(),
                log_path.display(),
                util::tail(&log_path, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Stops our instance of `kind` (its process group: SIGTERM, then SIGKILL after
/// 30 s) and removes its pid and url files. Returns whether one was running.
pub fn stop(kind: Kind) -> Result<bool> {
    let Some(pid) = read_pid(kind) else {
        return Ok(false);
    };
    let was_running = pid_is(kind, pid) || !group_members(pid).is_empty();
    if was_running {
        step!("{}: stopping pid {pid} and its process group", kind.name());
        stop_group(pid)?;
    }
    let _ = std::fs::remove_file(pid_file(kind));
    let _ = std::fs::remove_file(url_file(kind));
    Ok(was_running)
}

/// SIGTERM to process group `pgid`, SIGKILL to what is left after 30 s; returns
/// once no member is alive.
pub fn stop_group(pgid: u32) -> Result<()> {
    if group_members(pgid).is_empty() {
        return Ok(());
    }
    signal_group(pgid, "TERM")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !group_members(pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !group_members(pgid).is_empty() {
        step!("process group {pgid} ignored SIGTERM for 30s; SIGKILL");
        signal_group(pgid, "KILL")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !group_members(pgid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let left = group_members(pgid);
    if !left.is_empty() {
        bail!("processes {left:?} of group {pgid} survived SIGKILL");
    }
    Ok(())
}

fn signal_group(pgid: u32, sig: &str) -> Result<()> {
    use rustix::process::{Pid, Signal, kill_process_group};
    let signal = match sig {
        "TERM" => Signal::TERM,
        "KILL" => Signal::KILL,
        other => bail!("signal_group: unsupported signal {other}"),
    };
    // A process group id is a positive pid; 0 or a negative number would
    // address our own group or every process.
    let pid = i32::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .and_then(Pid::from_raw)
        .with_context(|| format!("{pgid} is not a process group id"))?;
    match kill_process_group(pid, signal) {
        Ok(()) => Ok(()),
        Err(_) if group_members(pgid).is_empty() => Ok(()),
        Err(e) => bail!("SIG{sig} to process group {pgid}: {e}"),
    }
}
