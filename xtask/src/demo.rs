//! `cargo xtask demo`: the README's one-command tour of the main job. The
//! source: 100k log documents sharing timestamps read out of Elasticsearch
//! into a JSON-lines file, counted (none lost, none twice), then an
//! incremental second run. `cargo xtask demo state` is the state CLI tour:
//! import the documented state, show it, move it between backends, count it.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail, ensure};

use crate::connector::{Connector, Storage, write_config};
use crate::e2e::source_kit::{
    self, Http, Output, Running, SourceConfig, create_logs_index, line_count, load_logs,
    read_output,
};
use crate::native;
use crate::net;
use crate::services::{Kind, Session, UpOptions, env_file};
use crate::util::{self, Captured};

/// Documents of the first load, and how many seconds their timestamps span.
const DOCS: u64 = 100_000;
const SPAN_SECS: u64 = 1_000;
/// Documents indexed before the incremental second run.
const MORE: u64 = 1_000;

pub fn cmd(args: &crate::cli::DemoArgs) -> Result<()> {
    let opts = UpOptions {
        docker: args.docker,
        ..UpOptions::default()
    };
    let keep = args.keep_services;
    let state_tour = args.which == crate::cli::DemoKind::State;
    let services = Services::start(opts, state_tour)?;
    let mut connector = Connector::build()?;
    // The demo prints each command line itself, on stdout.
    connector.echo = false;
    let result = if state_tour {
        match &services {
            Services::Session(session) => run(session, &connector),
            Services::EsOnly { .. } => bail!("demo state: the services did not start"),
        }
    } else {
        run_source(services.es_url(), &connector, keep)
    };
    services.finish(keep)?;
    result
}

/// The services of a demo: the usual session (Elasticsearch and Redis) or,
/// when that cannot start (no redis-server) and only Elasticsearch is
/// needed, our own native Elasticsearch alone.
#[derive(Debug)]
enum Services {
    Session(Session),
    EsOnly { url: String, started: bool },
}

impl Services {
    fn start(opts: UpOptions, need_redis: bool) -> Result<Services> {
        match Session::start(opts.clone(), true) {
            Ok(session) => Ok(Services::Session(session)),
            Err(e) if !need_redis && !opts.docker => {
                crate::step!(
                    "{e:#}\n  the source demo needs only Elasticsearch: starting it alone"
                );
                match native::running(demo_es()) {
                    Some((_, url)) => Ok(Services::EsOnly {
                        url,
                        started: false,
                    }),
                    None => Ok(Services::EsOnly {
                        url: native::start(demo_es())?,
                        started: true,
                    }),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn es_url(&self) -> &str {
        match self {
            Services::Session(s) => s.get("ES_URL").unwrap_or_default(),
            Services::EsOnly { url, .. } => url,
        }
    }

    fn finish(self, keep: bool) -> Result<()> {
        if keep {
            println!(
                "\nThe services are still running: `. {}` for their URLs, `cargo xtask services \
                 down` to stop them.",
                env_file().display()
            );
        }
        match self {
            Services::Session(mut session) => {
                if keep {
                    session.keep();
                }
                session.finish()
            }
            Services::EsOnly { started, .. } => {
                if started && !keep {
                    native::stop(demo_es())?;
                }
                Ok(())
            }
        }
    }
}

/// The Elasticsearch the demo starts alone: the first default line.
fn demo_es() -> Kind {
    Kind::Search(crate::search_server::default_set()[0])
}

/// The source tour.
fn run_source(es_url: &str, connector: &Connector, keep: bool) -> Result<()> {
    let t0 = Instant::now();
    let run_id = util::run_id();
    let demo_dir = util::xtask_dir().join("demo");
    // Only the latest run's files are kept (the output is ~50 MB).
    if let Ok(entries) = std::fs::read_dir(&demo_dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = demo_dir.join(&run_id);
    std::fs::create_dir_all(&dir)?;
    let rel = |p: &Path| {
        p.strip_prefix(util::root())
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let index = format!("demo-logs-{run_id}");
    let out = dir.join("out.jsonl");
    let cfg_path = dir.join("connector.toml");
    let config = SourceConfig {
        es_url: es_url.into(),
        index: index.clone(),
        batch_size: 1_000,
        pagination: "search_after".into(),
        tiebreaker: Some("event_id".into()),
        state_dir: dir.join("connector_states"),
        state_id: "demo-logs".into(),
        output: Output::File(out.clone()),
    };
    let cfg = config.write(&cfg_path)?;
    let cfg_rel = rel(&cfg_path);

    println!(
        "es-connector demo: {DOCS} log documents out of Elasticsearch into a JSON-lines file, \
         none lost, none twice.\n"
    );
    println!(
        "Elasticsearch: {es_url}   index: {index}   files: {}/\n",
        rel(&dir)
    );

    println!(
        "1. Index {DOCS} log documents. Their @timestamp has 1-second granularity over \
         {SPAN_SECS} s (16m40s),\n   so ~{} documents share each timestamp; `event_id` is \
         unique per document (the tiebreaker).",
        DOCS / SPAN_SECS
    );
    let mut http = Http::new(es_url)?;
    create_logs_index(&mut http, &index)?;
    let load_started = Instant::now();
    load_logs(
        &mut http,
        &index,
        0,
        DOCS,
        5_000,
        |n| n * SPAN_SECS / DOCS,
        |done| {
            if done % 20_000 == 0 {
                let secs = load_started.elapsed().as_secs_f64();
                println!(
                    "   indexed {done:>6}/{DOCS}  ({:.0} docs/s, {secs:.1}s)",
                    done as f64 / secs.max(0.001)
                );
            }
        },
    )?;
    let load_secs = load_started.elapsed().as_secs_f64();
    let sample = http.json(
        "POST",
        &format!("/{index}/_search"),
        r#"{"size":1,"sort":[{"@timestamp":"asc"},{"event_id":"asc"}]}"#,
    )?;
    println!("   one of them:");
    println!(
        "   {}",
        serde_json::to_string(&sample["hits"]["hits"][0]["_source"]).unwrap_or_default()
    );
    println!(
        "   _count: {} documents",
        source_kit::count(es_url, &index)?
    );

    println!("\n2. The connector configuration ({cfg_rel}):");
    let text = std::fs::read_to_string(&cfg_path)?;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        println!("   {line}");
    }

    println!("\n3. Read everything: es-connector run --config {cfg_rel} --once");
    let first = timed_run(connector, &cfg)?;
    let lines = line_count(&out);

    println!("\n4. Check the output file {}:", rel(&out));
    let stats = read_output(&out)?;
    println!("   lines:               {:>7}", stats.lines);
    println!("   distinct ids:        {:>7}", stats.ids);
    println!("   distinct event_ids:  {:>7}", stats.events.len());
    ensure!(
        stats.lines as u64 == DOCS && stats.ids as u64 == DOCS && stats.events.len() as u64 == DOCS,
        "expected {DOCS} lines, ids and event_ids"
    );
    println!(
        "   = {DOCS}: every document once, although ~{} share each timestamp and every page \
         of 1000 ends inside one.",
        DOCS / SPAN_SECS
    );

    println!("\n5. The stored state: es-connector state show --config {cfg_rel}");
    let state = connector.state_ok(&["show", "--config", &cfg])?;
    for line in state.stdout.trim_end().lines() {
        println!("   {line}");
    }

    println!("\n6. Incremental: index {MORE} newer documents and run again; only they are read.");
    load_logs(
        &mut http,
        &index,
        DOCS,
        MORE,
        MORE,
        |n| SPAN_SECS + (n - DOCS) / 10,
        |_| {},
    )?;
    println!(
        "   indexed {MORE} more (_count {})",
        source_kit::count(es_url, &index)?
    );
    let second = timed_run(connector, &cfg)?;
    let after = line_count(&out);
    let stats = read_output(&out)?;
    println!(
        "   output: {lines} -> {after} lines (+{}), {} distinct ids",
        after - lines,
        stats.ids
    );
    ensure!(
        after - lines == MORE as usize && stats.ids as u64 == DOCS + MORE,
        "the second run should add exactly {MORE} new lines"
    );

    println!(
        "\nWhat happened: `run --once` read the index in pages of 1000 with search_after on \
         [@timestamp, event_id]\n(inside a point in time), appended each page to the output \
         file and fsynced it, and only then\nadvanced the state's cursor (file storage: \
         {}).\nThe second run started from that cursor and read only the {MORE} new documents. \
         Kill it at any moment\nand the next run re-sends at most the one unacknowledged \
         page; message ids are deterministic, so\ndownstream can drop such a repeat. \
         `cargo xtask e2e` checks that (SIGKILL, a server restart, scroll,\nElasticsearch as \
         the output).",
        rel(&dir.join("connector_states"))
    );
    println!(
        "\nTimings: indexing {load_secs:.1}s, first run {first:.1}s, second run {second:.1}s, \
         demo total {:.1}s. Files kept in {}/ (the state tour: `cargo xtask demo state`).",
        t0.elapsed().as_secs_f64(),
        rel(&dir)
    );
    if !keep {
        let _ = net::http("DELETE", es_url, &format!("/{index}"));
    }
    Ok(())
}

/// `run --config cfg --once`, its lines shown as they come; returns seconds.
fn timed_run(connector: &Connector, cfg: &str) -> Result<f64> {
    let started = Instant::now();
    let running = Running::spawn(
        connector,
        &["run", "--config", cfg, "--once"],
        Some("   | "),
    )?;
    let (status, lines) = running.wait(std::time::Duration::from_secs(900))?;
    ensure!(
        status.success(),
        "`es-connector run` failed ({status}):\n{}",
        source_kit::last(&lines, 15)
    );
    if lines.is_empty() {
        println!("   (es-connector printed no summary)");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The state CLI tour (`cargo xtask demo state`).
fn run(session: &Session, connector: &Connector) -> Result<()> {
    let es_url = session.get("ES_URL").unwrap_or_default().to_string();
    let redis_url = session.get("REDIS_URL").unwrap_or_default().to_string();
    let run_id = util::run_id();
    let rel_dir = format!("target/xtask/demo/{run_id}");
    let dir = util::root().join(&rel_dir);
    std::fs::create_dir_all(&dir)?;
    let fixture = "crates/state-core/tests/fixtures/documented_state.json";

    let stores = [
        (
            "file",
            Storage::File {
                base_path: dir.join("connector_states"),
            },
        ),
        (
            "redis",
            Storage::Redis {
                url: redis_url.clone(),
                key_prefix: format!("demo:{run_id}:connector_states:"),
            },
        ),
        (
            "elasticsearch",
            Storage::Elasticsearch {
                url: es_url.clone(),
                index: format!("demo-connector-states-{run_id}"),
            },
        ),
    ];
    let mut configs = Vec::new();
    for (name, storage) in &stores {
        write_config(&dir.join(format!("{name}.toml")), &es_url, storage, "")?;
        configs.push(format!("{rel_dir}/{name}.toml"));
    }
    let [file_cfg, redis_cfg, es_cfg] = &configs[..] else {
        bail!("demo: expected three configs");
    };

    println!("es-state demo: one connector state, three storage backends.\n");
    println!("Elasticsearch: {es_url}   Redis: {redis_url}   configs: {rel_dir}/*.toml\n");
    println!("1. Import the documented state into file storage:");
    shown(connector, &["import", fixture, "--config", file_cfg])?;
    println!("\n2. Show it:");
    shown(connector, &["show", "--config", file_cfg])?;
    println!("\n3. Migrate it to Redis and to Elasticsearch:");
    shown(
        connector,
        &["migrate", "--to", redis_cfg, "--config", file_cfg],
    )?;
    shown(
        connector,
        &["migrate", "--to", es_cfg, "--config", file_cfg],
    )?;
    println!("\n4. Statistics of each storage:");
    for cfg in &configs {
        shown(connector, &["stats", "--config", cfg])?;
    }
    println!(
        "\nWhat happened: `state import` validated the documented JSON and stored it under its \
         id `elasticsearch_logs_connector`\nas {rel_dir}/connector_states/<id>.json. \
         `state migrate` read it back and wrote it, unchanged, to Redis (key\nprefix \
         demo:{run_id}:connector_states:) and to the Elasticsearch index \
         demo-connector-states-{run_id}, checking each copy.\n`state stats` then counts one \
         state in each. A connector configured with any of these three files resumes from \
         the\nsame cursor; `cargo xtask e2e` checks the same round trip through sled too."
    );

    // Leave no demo data in services that outlive the demo.
    if let (_, Storage::Redis { key_prefix, .. }) = &stores[1] {
        let _ = net::redis_delete_prefix(&redis_url, key_prefix);
    }
    if let (_, Storage::Elasticsearch { index, .. }) = &stores[2] {
        let _ = net::http("DELETE", &es_url, &format!("/{index}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs a state command, printing the command line and its output.
fn shown(connector: &Connector, args: &[&str]) -> Result<Captured> {
    println!("$ es-connector state {}", args.join(" "));
    let out = connector.state_ok(args)?;
    for text in [&out.stdout, &out.stderr] {
        if !text.trim().is_empty() {
            println!("{}", text.trim_end());
        }
    }
    Ok(out)
}
