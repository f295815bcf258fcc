//! The native test services: `osmem-server` (an in-memory server speaking the
//! OpenSearch REST API, from PyPI, in a cached venv) and `redis-server`, run as
//! detached background processes with pid, url and log files in the state dir.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::services::{Kind, state_dir, wait_answers};
use crate::util::{self, capture};
use crate::{net, step};

/// The PyPI package (and pinned version) of the Elasticsearch-compatible test server.
pub const OSMEM_PACKAGE: &str = "osmem-server==0.1.6";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

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
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether `pid` is alive and still runs our service's binary (not a reused pid).
fn pid_is(kind: Kind, pid: u32) -> bool {
    let needle = match kind {
        Kind::Es => "osmem",
        Kind::Redis => "redis-server",
        Kind::Iggy => "iggy-server",
    };
    pid_alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
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
    let port = net::free_port()?;
    let (mut cmd, url) = match kind {
        Kind::Es => {
            let mut cmd = Command::new(osmem_binary()?);
            cmd.arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .args(["--no-stdin-watch", "--no-ja"]);
            (cmd, format!("http://127.0.0.1:{port}"))
        }
        Kind::Redis => {
            let mut cmd = Command::new(redis_server_bin()?);
            cmd.args(["--bind", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(state_dir());
            (cmd, format!("redis://127.0.0.1:{port}"))
        }
        Kind::Iggy => {
            let bin = iggy_server_bin().context("IGGY_SERVER_BIN is not set")?;
            let data = state_dir().join("iggy-data");
            // A fresh server each time: no streams left from earlier runs.
            let _ = std::fs::remove_dir_all(&data);
            let mut cmd = Command::new(bin);
            cmd.current_dir(state_dir())
                .env("IGGY_SYSTEM_PATH", &data)
                .env("IGGY_TCP_ADDRESS", format!("127.0.0.1:{port}"))
                .env("IGGY_ROOT_USERNAME", "iggy")
                .env("IGGY_ROOT_PASSWORD", "iggy");
            cmd.env(
                "IGGY_HTTP_ADDRESS",
                format!("127.0.0.1:{}", net::free_port()?),
            )
            .env(
                "IGGY_QUIC_ADDRESS",
                format!("127.0.0.1:{}", net::free_port()?),
            )
            .env(
                "IGGY_WEBSOCKET_ADDRESS",
                format!("127.0.0.1:{}", net::free_port()?),
            );
            (cmd, format!("127.0.0.1:{port}"))
        }
    };
    let log_path = log_file(kind);
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    step!("{}: starting {}", kind.name(), util::display(&cmd));
    // Own process group: a Ctrl-C in the terminal does not reach it; it
    // outlives this command until `services down`.
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start {}", util::display(&cmd)))?;
    std::fs::write(pid_file(kind), child.id().to_string())?;
    std::fs::write(url_file(kind), &url)?;
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "exited ({status}) before answering; log {}:\n{}",
                log_path.display(),
                util::tail(&log_path, 15)
            );
        }
        if wait_answers(kind.var(), &url, Duration::ZERO) {
            step!("{}: up at {url} (pid {})", kind.name(), child.id());
            return Ok(url);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "did not answer at {url} within {}s; log {}:\n{}",
                READY_TIMEOUT.as_secs(),
                log_path.display(),
                util::tail(&log_path, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops our instance of `kind` (SIGTERM, then SIGKILL after 10 s) and
/// removes its pid and url files. Returns whether one was running.
pub fn stop(kind: Kind) -> Result<bool> {
    let Some(pid) = read_pid(kind) else {
        return Ok(false);
    };
    let was_running = pid_is(kind, pid);
    if was_running {
        step!("{}: stopping pid {pid}", kind.name());
        signal(pid, "TERM")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if pid_alive(pid) {
            signal(pid, "KILL")?;
        }
    }
    let _ = std::fs::remove_file(pid_file(kind));
    let _ = std::fs::remove_file(url_file(kind));
    Ok(was_running)
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    // `kill(1)` rather than libc, to keep this crate free of unsafe code.
    let out = capture(
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string()),
        Duration::from_secs(5),
    )?;
    if !out.status.success() && pid_alive(pid) {
        bail!("kill -{sig} {pid} failed: {}", out.all().trim());
    }
    Ok(())
}

/// `IGGY_SERVER_BIN`: an `iggy-server` binary (built from apache/iggy by the
/// user; nothing here builds or downloads one).
pub fn iggy_server_bin() -> Option<PathBuf> {
    match std::env::var_os("IGGY_SERVER_BIN") {
        Some(bin) if !bin.is_empty() => Some(PathBuf::from(bin)),
        _ => None,
    }
}

/// `REDIS_SERVER_BIN` or `redis-server` on PATH, without installing anything.
pub fn redis_server_on_path() -> Option<PathBuf> {
    match std::env::var_os("REDIS_SERVER_BIN") {
        Some(bin) if !bin.is_empty() => Some(PathBuf::from(bin)),
        _ => util::which("redis-server"),
    }
}

/// `redis-server`; installed with apt-get when missing and we are root.
fn redis_server_bin() -> Result<PathBuf> {
    if let Some(bin) = redis_server_on_path() {
        return Ok(bin);
    }
    if util::is_root() && util::which("apt-get").is_some() {
        step!("redis-server not found; installing it with apt-get (running as root)");
        util::run(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        util::run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "redis-server"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        if let Some(bin) = util::which("redis-server") {
            return Ok(bin);
        }
    }
    bail!(
        "redis-server is not installed. Install it (Debian/Ubuntu: `sudo apt-get install -y \
         redis-server`; macOS: `brew install redis`), or set REDIS_SERVER_BIN to its path, or use \
         `--docker`"
    )
}

/// Where the osmem-server venv lives: `XTASK_OSMEM_VENV`, else a per-user cache
/// (`$XDG_CACHE_HOME` or `~/.cache`)`/es-state/osmem-server-0.1.6`, else under target/.
fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XTASK_OSMEM_VENV").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let version = OSMEM_PACKAGE.replace("==", "-");
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    match cache {
        Some(cache) => cache.join("es-state").join(version),
        None => util::xtask_dir().join("venv").join(version),
    }
}

/// The osmem-server binary: `OSMEM_SERVER_BIN`, or from the cached venv
/// (created with `python3 -m venv` + `pip install osmem-server==0.1.6` when missing).
fn osmem_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("OSMEM_SERVER_BIN").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let ready = venv.join(".xtask-ready");
    if !ready.exists() {
        create_venv(&venv)?;
        std::fs::write(&ready, OSMEM_PACKAGE)?;
    }
    let out = capture(
        Command::new(&python).args([
            "-c",
            "import osmem_server; print(osmem_server.resolve_binary())",
        ]),
        Duration::from_secs(60),
    )?;
    if !out.status.success() {
        bail!(
            "the venv {} has no working osmem_server ({}). Delete that directory and retry",
            venv.display(),
            out.stderr.trim()
        );
    }
    Ok(PathBuf::from(out.stdout.trim()))
}

fn create_venv(venv: &PathBuf) -> Result<()> {
    let python = std::env::var("XTASK_PYTHON").unwrap_or_else(|_| "python3".into());
    step!(
        "elasticsearch: installing {OSMEM_PACKAGE} into {} (once)",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(venv);
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let venv_status = util::status(Command::new(&python).arg("-m").arg("venv").arg(venv));
    if !venv_status.as_ref().is_ok_and(|s| s.success()) {
        bail!(
            "`{python} -m venv` failed. Install Python 3 with venv support (Debian/Ubuntu: \
             `apt-get install -y python3-venv`), set XTASK_PYTHON to a python3, or set \
             OSMEM_SERVER_BIN to an osmem-server binary"
        );
    }
    let pip = util::status(
        Command::new(venv.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
            ])
            .arg(OSMEM_PACKAGE),
    );
    if !pip.as_ref().is_ok_and(|s| s.success()) {
        bail!(
            "`pip install {OSMEM_PACKAGE}` failed (is PyPI reachable? a proxy may need \
             PIP_INDEX_URL). Or use `--docker` for a real Elasticsearch"
        );
    }
    Ok(())
}
