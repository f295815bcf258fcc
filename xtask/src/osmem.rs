//! `osmem-server` (PyPI), an in-memory emulator of the OpenSearch REST API, in a
//! cached venv: the `osmem` server line.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::native::Launch;
use crate::step;
use crate::util::{self, capture};

/// The version of the pinned package.
pub const VERSION: &str = "0.1.6";
/// The PyPI package (and pinned version) of the emulator.
pub const OSMEM_PACKAGE: &str = "osmem-server==0.1.6";

/// How to start it on `port` (the venv is created once).
pub fn launch(port: u16) -> Result<Launch> {
    let mut cmd = Command::new(binary()?);
    cmd.arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--no-stdin-watch", "--no-ja"]);
    Ok(Launch {
        cmd,
        url: format!("http://127.0.0.1:{port}"),
        ready_timeout: Duration::from_secs(60),
    })
}

/// Where the osmem-server venv lives: `XTASK_OSMEM_VENV`, else a per-user cache
/// (`$XDG_CACHE_HOME` or `~/.cache`)`/es-state/osmem-server-0.1.6`, else under target/.
fn venv_dir() -> PathBuf {
    util::venv_dir("XTASK_OSMEM_VENV", &OSMEM_PACKAGE.replace("==", "-"))
}

/// The osmem-server binary: `OSMEM_SERVER_BIN`, or from the cached venv
/// (created with `python3 -m venv` + `pip install osmem-server==0.1.6` when missing).
pub fn binary() -> Result<PathBuf> {
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
        "osmem: installing {OSMEM_PACKAGE} into {} (once)",
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
    let pip = util::status(&mut util::pip_install(
        venv.join("bin").join("python"),
        OSMEM_PACKAGE,
    ));
    if !pip.as_ref().is_ok_and(|s| s.success()) {
        bail!(
            "`pip install {OSMEM_PACKAGE}` failed (is PyPI reachable? a proxy may need \
             PIP_INDEX_URL). Or use `--docker` for a real Elasticsearch"
        );
    }
    Ok(())
}
