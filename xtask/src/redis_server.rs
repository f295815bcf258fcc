//! `redis-server`: from `REDIS_SERVER_BIN` or PATH, installed with apt-get when
//! missing and we are root.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::native::Launch;
use crate::services::state_dir;
use crate::{step, util};

/// How to start it on `port`: no persistence, files in the state dir.
pub fn launch(port: u16) -> Result<Launch> {
    let mut cmd = Command::new(bin()?);
    cmd.args(["--bind", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(state_dir());
    Ok(Launch {
        cmd,
        url: format!("redis://127.0.0.1:{port}"),
        ready_timeout: Duration::from_secs(60),
    })
}

/// `REDIS_SERVER_BIN` or `redis-server` on PATH, without installing anything.
pub fn on_path() -> Option<PathBuf> {
    match std::env::var_os("REDIS_SERVER_BIN") {
        Some(bin) if !bin.is_empty() => Some(PathBuf::from(bin)),
        _ => util::which("redis-server"),
    }
}

/// `redis-server`; installed with apt-get when missing and we are root.
fn bin() -> Result<PathBuf> {
    if let Some(bin) = on_path() {
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
