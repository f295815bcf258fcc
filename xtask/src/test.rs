//! `cargo xtask test`: services up, the whole test suite against them, the
//! end-to-end scenarios, services down — whatever fails along the way.
//!
//! With several Elasticsearch-flavoured servers (by default Elasticsearch 8 and
//! OpenSearch 3), the suite runs once per server with `ES_URL` pointing at it: the
//! first pass runs every test, later passes only the packages whose tests read
//! `ES_URL`, and the e2e scenarios run in every pass (those with a server of
//! their own, `e2e::OWN_SERVER`, in the first only).

use std::time::Instant;

use anyhow::{Result, bail};

use crate::connector::Connector;
use crate::search_server::server_version;
use crate::services::{Session, env_file};
use crate::{compat, e2e, step, util};

/// The packages whose tests read `ES_URL` (the later passes run only these).
const ES_PACKAGES: [&str; 3] = ["bulk", "connector", "state-es"];

pub fn cmd(args: &crate::cli::TestArgs) -> Result<()> {
    let opts = args.up_options();
    let run_e2e = !args.no_e2e;
    let extra = args.cargo_test.clone();
    let started = Instant::now();
    let matrix = opts.matrix;
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
    let connector = if run_e2e {
        Some(Connector::build())
    } else {
        None
    };
    let mut parts = Vec::new();
    let mut columns = Vec::new();
    let mut ok = true;
    for (pass, (name, url)) in session.search_servers().into_iter().enumerate() {
        let version = server_version(&url);
        let server = match &version {
            Some((product, version)) => format!("{product} {version}"),
            None => "a server that does not say its version".to_owned(),
        };
        step!("tests against {server} ({name}, ES_URL={url})");
        let pass_started = Instant::now();
        let view = session.with_es_url(&url);
        let mut cargo_test = util::cargo();
        cargo_test.arg("test");
        if pass == 0 {
            cargo_test.arg("--workspace");
        } else {
            for package in ES_PACKAGES {
                cargo_test.args(["-p", package]);
            }
        }
        cargo_test
            .args(["--all-features", "--no-fail-fast"])
            .args(&extra)
            .envs(view.vars.iter().map(|(k, v)| (k, v)))
            // Tests needing a service fail instead of skipping when its variable is missing.
            .env("XTASK_REQUIRE_SERVICES", "1");
        let tests = match util::status(&mut cargo_test) {
            Ok(status) if status.success() => Ok("cargo test passed".to_string()),
            Ok(status) => Err(format!("cargo test failed ({status})")),
            Err(e) => Err(format!("{e:#}")),
        };
        let select = if pass == 0 {
            e2e::Select::Named(&[])
        } else {
            e2e::Select::UsingEsUrl
        };
        let summary = match &connector {
            None => None,
            Some(Err(e)) => Some(Err(format!("e2e could not run: {e:#}"))),
            Some(Ok(c)) => {
                Some(e2e::run(&view, c, select).map_err(|e| format!("e2e could not run: {e:#}")))
            }
        };
        let e2e = match &summary {
            None => Ok("e2e skipped (--no-e2e)".to_string()),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(s)) if s.failed == 0 => Ok(format!("e2e {} passed", s.passed)),
            Some(Ok(s)) => Err(format!("e2e {} passed, {} failed", s.passed, s.failed)),
        };
        if matrix {
            let summary = summary.as_ref().and_then(|s| s.as_ref().ok());
            // The emulator answers with the OpenSearch version it imitates.
            let shown = if name == "osmem" {
                format!("osmem-server (emulating {server})")
            } else {
                server.clone()
            };
            let column = compat::column(&view, &name, &shown, version.clone(), summary);
            ok &= column.passed();
            columns.push(column);
        }
        ok &= tests.is_ok() && e2e.is_ok();
        let outcome = [tests, e2e].map(|r| r.unwrap_or_else(|e| e)).join(", ");
        let secs = pass_started.elapsed().as_secs();
        step!("{server}: {outcome} ({secs}s)");
        parts.push(format!("{server}: {outcome}"));
    }
    if parts.is_empty() {
        ok = false;
        parts.push("no Elasticsearch-flavoured server to test against".to_owned());
    }

    if matrix {
        let date = util::capture(
            std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]),
            std::time::Duration::from_secs(5),
        )
        .map(|o| o.stdout.trim().to_owned())
        .unwrap_or_default();
        if let Err(e) = compat::write(&columns, &date) {
            ok = false;
            parts.push(format!("docs/compatibility.md not written: {e:#}"));
        }
    }

    let down = session.finish();
    let secs = started.elapsed().as_secs();
    if !iggy {
        parts.push("Iggy tests not run (IGGY_TCP_ADDRESS unset)".into());
    }
    if let Err(e) = &down {
        ok = false;
        parts.push(format!("stopping services failed: {e:#}"));
    }
    let verdict = if ok { "ok" } else { "FAILED" };
    println!("xtask test: {verdict}: {} ({secs}s)", parts.join("; "));
    if !ok {
        bail!("xtask test failed");
    }
    Ok(())
}
