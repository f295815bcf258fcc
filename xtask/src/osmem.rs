//! `osmem-server` (PyPI), an in-memory emulator of the OpenSearch REST API, in a
//! cached venv: the `osmem` server line.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::native::Launch;
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
    let python = util::python_venv(&venv, &[OSMEM_PACKAGE]).context(
        "osmem-server: set OSMEM_SERVER_BIN to an osmem-server binary, or use `--docker` for a \
         real Elasticsearch",
    )?;
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
