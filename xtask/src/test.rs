//! `cargo xtask test`: services up, the whole test suite against them, the
//! end-to-end scenarios, services down — whatever fails along the way.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::connector::Connector;
use crate::services::{Session, UpOptions, env_file};
use crate::{e2e, step, util};

pub fn cmd(args: &[String]) -> Result<()> {
    let mut opts = UpOptions::default();
    let mut run_e2e = true;
    let mut extra = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--docker" => opts.docker = true,
            "--no-e2e" => run_e2e = false,
            "--" => extra.extend(it.by_ref().cloned()),
            other => bail!(
                "test: unknown option `{other}`; arguments for cargo test go after `--` \
                 (e.g. `cargo xtask test -- --nocapture`)"
            ),
        }
    }
    let started = Instant::now();
    let session = Session::start(opts, true)?;
    step!(
        "services: {} (from {})",
        session
            .vars
            .iter()
            .filter(|(k, _)| k.ends_with("_URL") || k == "IGGY_TCP_ADDRESS")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        env_file().display()
    );

    let iggy = session.get("IGGY_TCP_ADDRESS").is_some();
    if !iggy {
        step!(
            "Iggy tests will NOT run: IGGY_TCP_ADDRESS is unset (no Iggy server is installable \
             from the registries; set IGGY_SERVER_BIN to an iggy-server binary, or use --docker)"
        );
    }
    let mut cargo_test = util::cargo();
    cargo_test
        .args(["test", "--workspace", "--all-features"])
        .args(&extra)
        .envs(session.vars.iter().map(|(k, v)| (k, v)))
        // Tests needing a service fail instead of skipping when its variable is missing.
        .env("XTASK_REQUIRE_SERVICES", "1");
    let tests = match util::status(&mut cargo_test) {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("cargo test failed ({status})")),
        Err(e) => Err(format!("{e:#}")),
    };

    let e2e = if run_e2e {
        match Connector::build().and_then(|c| e2e::run(&session, &c, &[])) {
            Ok(s) if s.failed == 0 => Ok(format!("e2e {} passed", s.passed)),
            Ok(s) => Err(format!("e2e {} passed, {} failed", s.passed, s.failed)),
            Err(e) => Err(format!("e2e could not run: {e:#}")),
        }
    } else {
        Ok("e2e skipped (--no-e2e)".to_string())
    };

    let down = session.finish();
    let secs = started.elapsed().as_secs();
    let mut parts = vec![match &tests {
        Ok(()) => "cargo test passed".to_string(),
        Err(e) => e.clone(),
    }];
    parts.push(match &e2e {
        Ok(s) | Err(s) => s.clone(),
    });
    if !iggy {
        parts.push("Iggy tests not run (IGGY_TCP_ADDRESS unset)".into());
    }
    if let Err(e) = &down {
        parts.push(format!("stopping services failed: {e:#}"));
    }
    let ok = tests.is_ok() && e2e.is_ok() && down.is_ok();
    let verdict = if ok { "ok" } else { "FAILED" };
    println!("xtask test: {verdict}: {} ({secs}s)", parts.join("; "));
    if !ok {
        bail!("xtask test failed");
    }
    Ok(())
}
