//! `iggy-server`: only from `IGGY_SERVER_BIN` (built from apache/iggy by the user;
//! nothing here builds or downloads one).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::native::Launch;
use crate::net;
use crate::services::state_dir;

/// `IGGY_SERVER_BIN`, when set.
pub fn bin() -> Option<PathBuf> {
    match std::env::var_os("IGGY_SERVER_BIN") {
        Some(bin) if !bin.is_empty() => Some(PathBuf::from(bin)),
        _ => None,
    }
}

/// How to start a fresh server (no streams left from earlier runs) on `port`.
pub fn launch(port: u16) -> Result<Launch> {
    let bin = bin().context("IGGY_SERVER_BIN is not set")?;
    let data = state_dir().join("iggy-data");
    let _ = std::fs::remove_dir_all(&data);
    let mut cmd = Command::new(bin);
    cmd.current_dir(state_dir())
        .env("IGGY_SYSTEM_PATH", &data)
        .env("IGGY_TCP_ADDRESS", format!("127.0.0.1:{port}"))
        .env("IGGY_ROOT_USERNAME", "iggy")
        .env("IGGY_ROOT_PASSWORD", "iggy")
        .env(
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
    Ok(Launch {
        cmd,
        url: format!("127.0.0.1:{port}"),
        ready_timeout: Duration::from_secs(60),
    })
}
