//! `--docker`: the real images of `docker/compose.yml` on fixed ports.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::services::state_dir;
use crate::util::{self, capture};
use crate::{native, step};

/// The endpoints the compose file publishes (documented in docker/compose.yml).
const VARS: [(&str, &str); 6] = [
    ("ES_URL", "http://127.0.0.1:9200"),
    ("OPENSEARCH_URL", "http://127.0.0.1:9201"),
    ("REDIS_URL", "redis://127.0.0.1:6379"),
    ("IGGY_TCP_ADDRESS", "127.0.0.1:8090"),
    ("IGGY_USERNAME", "iggy"),
    ("IGGY_PASSWORD", "iggy"),
];

pub fn vars() -> Vec<(String, String)> {
    VARS.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn compose_file() -> PathBuf {
    util::root().join("docker").join("compose.yml")
}

fn marker() -> PathBuf {
    state_dir().join("docker.mode")
}

/// Whether `services up --docker` brought the compose project up.
pub fn marker_exists() -> bool {
    marker().exists()
}

fn compose() -> Command {
    let mut cmd = Command::new("docker");
    cmd.arg("compose")
        .arg("-f")
        .arg(compose_file())
        .current_dir(util::root());
    cmd
}

fn require_engine() -> Result<()> {
    let out = capture(
        Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
        Duration::from_secs(20),
    );
    match out {
        Ok(out) if out.status.success() => {
            let compose = capture(
                Command::new("docker").args(["compose", "version"]),
                Duration::from_secs(20),
            )?;
            if !compose.status.success() {
                bail!(
                    "the Docker engine is up but `docker compose` is not available; install the                      Docker Compose plugin (docker-compose-plugin), or run `cargo xtask services                      up` without --docker"
                );
            }
            Ok(())
        }
        Ok(out) => bail!(
            "no Docker engine is reachable (`docker info`: {}). Start Docker, or run \
             `cargo xtask services up` without --docker to use the native test servers \
             (osmem-server + redis-server)",
            out.all().trim().lines().last().unwrap_or("failed")
        ),
        Err(e) => bail!(
            "the docker CLI is not usable ({e:#}). Install Docker, or run `cargo xtask services \
             up` without --docker to use the native test servers (osmem-server + redis-server)"
        ),
    }
}

/// `docker compose up -d --wait`; returns whether this call brought it up.
pub fn up() -> Result<bool> {
    require_engine()?;
    let was_up = marker_exists();
    for kind in crate::services::all_kinds() {
        if native::stop(kind)? {
            step!(
                "{}: stopped the native instance (docker mode uses fixed ports)",
                kind.name()
            );
        }
    }
    util::run(compose().args(["up", "-d", "--wait"]))?;
    std::fs::write(marker(), "docker compose -f docker/compose.yml\n")?;
    Ok(!was_up)
}

/// `docker compose down -v`; forgets docker mode.
pub fn down() -> Result<()> {
    require_engine()?;
    util::run(compose().args(["down", "-v"]))?;
    let _ = std::fs::remove_file(marker());
    Ok(())
}
