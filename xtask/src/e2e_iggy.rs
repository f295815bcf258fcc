//! Iggy scenarios of `cargo xtask e2e`, against a real Iggy server
//! (`IGGY_TCP_ADDRESS`, started natively from `IGGY_SERVER_BIN` or by `--docker`).
//! Without one they print that they were not run and why.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::e2e::Cx;
use crate::e2e::source_kit::{self, Http, Running, create_logs_index, last, load_logs};
use crate::{native, net, step, util};

const ECHO: Option<&str> = Some("    | ");
const DOCS: u64 = 50_000;
const BATCH: u64 = 1_000;

/// The Iggy server to use, or `None` after saying why the scenario is not run.
fn iggy(cx: &Cx) -> Option<(String, String, String)> {
    match &cx.iggy {
        Some(server) => Some(server.clone()),
        None => {
            step!(
                "  NOT RUN: IGGY_TCP_ADDRESS is unset (no Iggy server is installable from the \
                 registries; set IGGY_SERVER_BIN to an iggy-server binary, or use --docker)"
            );
            None
        }
    }
}

/// A source config sending `index` into `stream/docs` of the Iggy server.
#[allow(clippy::too_many_arguments)]
fn source_config(
    cx: &Cx,
    name: &str,
    index: &str,
    (address, user, password): &(String, String, String),
    stream: &str,
    partitioning: &str,
    partitions: u32,
) -> Result<(String, PathBuf)> {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let states = cx.dir.join(format!("{name}-states"));
    let text = format!(
        "# Written by cargo xtask.\n\
         [[streams]]\nstream = {stream}\ntopic = \"docs\"\nschema = \"json\"\nbatch_length = 500\nlinger_time = \"5ms\"\n\n\
         [plugin_config]\nurl = {url}\nindex = {index}\nbatch_size = {BATCH}\npolling_interval = \"300ms\"\n\
         timestamp_field = \"@timestamp\"\n\n\
         [plugin_config.state]\nenabled = true\nstorage_type = \"file\"\nstate_id = \"{name}\"\n\n\
         [plugin_config.state.storage_config]\nbase_path = {base}\n\n\
         [output]\nkind = \"iggy\"\naddress = {address}\nusername = {user}\npassword = {password}\n\
         partitioning = {partitioning}\npartitions = {partitions}\n",
        stream = q(stream),
        url = q(&cx.es_url),
        index = q(index),
        base = q(&states.to_string_lossy()),
        address = q(address),
        user = q(user),
        password = q(password),
        partitioning = q(partitioning),
    );
    let path = cx.dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok((
        path.display().to_string(),
        states.join(format!("{name}.json")),
    ))
}

/// A sink config reading `stream/docs` into `index`.
fn sink_config(
    cx: &Cx,
    name: &str,
    (address, user, password): &(String, String, String),
    stream: &str,
    index: &str,
) -> Result<(String, PathBuf)> {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let dead = cx.dir.join(format!("{name}-dead.jsonl"));
    let text = format!(
        "# Written by cargo xtask.\n\
         [[streams]]\nstream = {stream}\ntopic = \"docs\"\nbatch_length = {BATCH}\n\n\
         [input]\nkind = \"iggy\"\naddress = {address}\nusername = {user}\npassword = {password}\n\
         consumer_group = \"xtask-sink\"\npoll_interval = \"200ms\"\n\n\
         [output]\nkind = \"elasticsearch\"\nurl = {url}\nindex = {index}\n\n\
         [dead_letter]\npath = {dead}\n",
        stream = q(stream),
        address = q(address),
        user = q(user),
        password = q(password),
        url = q(&cx.es_url),
        index = q(index),
        dead = q(&dead.to_string_lossy()),
    );
    let path = cx.dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok((path.display().to_string(), dead))
}

/// `data.total_documents_fetched` of a file state (0 before the first save).
fn fetched(state_file: &Path) -> u64 {
    std::fs::read(state_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["data"]["total_documents_fetched"].as_u64())
        .unwrap_or(0)
}

/// Polls `probe` (every 50 ms, up to `timeout`) until it reaches `n`; an error
/// when `running` exits first.
fn wait_until(
    what: &str,
    n: u64,
    timeout: Duration,
    running: &mut Running,
    probe: impl Fn(&Running) -> u64,
) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let have = probe(running);
        if have >= n {
            return Ok(have);
        }
        ensure!(
            running.alive(),
            "es-connector exited with {what} at {have} of {n}:\n{}",
            last(&running.lines(), 15)
        );
        ensure!(
            Instant::now() < deadline,
            "{what} only {have} of {n} after {}s:\n{}",
            timeout.as_secs(),
            last(&running.lines(), 15)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `es-connector topic-check`: what the topic holds.
fn census(cx: &Cx, cfg: &str) -> Result<Value> {
    census_of(cfg, &cx.connector)
}

/// `es-connector <args>` to completion, exit 0 required.
fn run_to_end(cx: &Cx, args: &[&str]) -> Result<Vec<String>> {
    let running = Running::spawn(&cx.connector, args, ECHO)?;
    let (status, lines) = running.wait(Duration::from_secs(900))?;
    ensure!(
        status.success(),
        "`es-connector {}` failed ({status}):\n{}",
        args.join(" "),
        last(&lines, 15)
    );
    Ok(lines)
}

fn load(cx: &mut Cx, name: &str, docs: u64) -> Result<String> {
    let index = format!("xtask-e2e-{}-{name}", cx.run_id).to_lowercase();
    cx.track_index(&index);
    let mut http = Http::new(&cx.es_url)?;
    create_logs_index(&mut http, &index)?;
    let started = Instant::now();
    // Ten documents per second of timestamps: ties everywhere.
    load_logs(&mut http, &index, 0, docs, 5_000, |n| n / 10, |_| {})?;
    step!(
        "  loaded {docs} documents into {index} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(index)
}

/// 50k documents into one partition and into three balanced ones, SIGKILL
/// three times each: one message per document in the single partition (tail
/// resume), none missing with balanced partitioning.
pub fn source_sigkill(cx: &mut Cx) -> Result<()> {
    let Some(server) = iggy(cx) else {
        return Ok(());
    };
    let index = cx.step("load 50000 documents (10 per timestamp)", |cx| {
        load(cx, "iggy-src", DOCS)
    })?;
    for (label, partitioning, partitions) in
        [("single", "partition:0", 1), ("balanced", "balanced", 3)]
    {
        let stream = format!("xtask-{}-{label}", cx.run_id);
        let (cfg, state) = source_config(
            cx,
            &format!("iggy-{label}"),
            &index,
            &server,
            &stream,
            partitioning,
            partitions,
        )?;
        let mut kills = 0u64;
        for target in [12_000, 25_000, 38_000] {
            cx.step(
                &format!(
                    "{label}: start `run`, SIGKILL it once {target} documents are acknowledged"
                ),
                |cx| {
                    let mut running =
                        Running::spawn(&cx.connector, &["run", "--config", &cfg], None)?;
                    let seen = wait_until(
                        "acknowledged documents",
                        target,
                        Duration::from_secs(300),
                        &mut running,
                        |_| fetched(&state),
                    )?;
                    running.kill()?;
                    kills += 1;
                    step!("  killed at {seen} acknowledged documents");
                    Ok(())
                },
            )?;
        }
        cx.step(
            &format!("{label}: `run --once` to completion; the topic holds every document"),
            |cx| {
                let lines = run_to_end(cx, &["run", "--config", &cfg, "--once"])?;
                let summary = lines.iter().rev().find(|l| l.starts_with("done:"));
                step!("  {}", summary.map_or("", String::as_str));
                let c = census(cx, &cfg)?;
                step!("  topic: {c}");
                let messages = c["messages"].as_u64().unwrap_or(0);
                let documents = c["distinct_documents"].as_u64().unwrap_or(0);
                ensure!(
                    documents == DOCS,
                    "{documents} distinct documents in the topic, expected {DOCS}"
                );
                if partitions == 1 {
                    ensure!(
                        messages == DOCS,
                        "{messages} messages for {DOCS} documents: duplicates after {kills} kills"
                    );
                } else {
                    ensure!(
                        messages <= DOCS + kills * BATCH,
                        "{messages} messages: more duplicates than {kills} kills x batch {BATCH}"
                    );
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// The single-partition topic of 50k documents into an index: SIGKILL the
/// sink mid-way, restart: `_count` 50k, and a last run finds nothing new (the
/// consumer group's offset was stored).
pub fn sink_sigkill(cx: &mut Cx) -> Result<()> {
    let Some(server) = iggy(cx) else {
        return Ok(());
    };
    let stream = format!("xtask-{}-single", cx.run_id);
    let index = format!("xtask-e2e-{}-iggy-sink", cx.run_id).to_lowercase();
    cx.track_index(&index);
    let (cfg, dead) = sink_config(cx, "iggy-sink", &server, &stream, &index)?;
    let es_url = cx.es_url.clone();
    let count = |_: &Running| source_kit::count(&es_url, &index).unwrap_or(0);
    cx.step(
        "start `sink` on the 50k-message topic, SIGKILL it at >= 20000 indexed",
        |cx| {
            let mut running = Running::spawn(&cx.connector, &["sink", "--config", &cfg], None)?;
            let seen = wait_until(
                "indexed documents",
                20_000,
                Duration::from_secs(300),
                &mut running,
                count,
            )?;
            running.kill()?;
            step!("  killed at {seen} documents indexed");
            Ok(())
        },
    )?;
    cx.step(
        "`sink --once` to completion: _count 50000, nothing dead-lettered; again: 0 messages",
        |cx| {
            let lines = run_to_end(cx, &["sink", "--config", &cfg, "--once"])?;
            step!("  {}", lines.last().map_or("", String::as_str));
            let n = source_kit::count(&es_url, &index)?;
            ensure!(n == DOCS, "_count {n}, expected {DOCS}");
            ensure!(
                source_kit::line_count(&dead) == 0,
                "documents were dead-lettered: see {}",
                dead.display()
            );
            let again = run_to_end(cx, &["sink", "--config", &cfg, "--once"])?;
            let last_line = again.last().cloned().unwrap_or_default();
            step!("  {last_line}");
            ensure!(
                last_line.starts_with("done: 0 messages"),
                "the consumer group's offset was not stored: a second run read again: {last_line}"
            );
            Ok(())
        },
    )?;
    Ok(())
}

/// A private Iggy server is stopped under a running connector and started
/// again on the same data: the connector reconnects, nothing is lost or doubled.
pub fn server_restart(cx: &mut Cx) -> Result<()> {
    if iggy(cx).is_none() {
        return Ok(());
    }
    // IGGY_SERVER_BIN, else the binary of the natively started server.
    let bin = native::iggy_server_bin().or_else(|| {
        native::running(crate::services::Kind::Iggy)
            .and_then(|(pid, _)| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
    });
    let Some(bin) = bin else {
        step!("  NOT RUN: needs IGGY_SERVER_BIN to start a private iggy-server it can stop");
        return Ok(());
    };
    const N: u64 = 10_000;
    let index = cx.step("load 10000 documents", |cx| load(cx, "iggy-restart", N))?;
    let data = cx.dir.join("iggy-private");
    let port = net::free_port()?;
    let address = format!("127.0.0.1:{port}");
    let ports = [net::free_port()?, net::free_port()?, net::free_port()?];
    let start = |data: &Path| -> Result<Child> {
        let log = std::fs::File::create(data.with_extension("log"))?;
        let mut cmd = Command::new(&bin);
        cmd.current_dir(data.parent().unwrap_or(data))
            .env("IGGY_SYSTEM_PATH", data)
            .env("IGGY_TCP_ADDRESS", &address)
            .env("IGGY_HTTP_ADDRESS", format!("127.0.0.1:{}", ports[0]))
            .env("IGGY_QUIC_ADDRESS", format!("127.0.0.1:{}", ports[1]))
            .env("IGGY_WEBSOCKET_ADDRESS", format!("127.0.0.1:{}", ports[2]))
            .env("IGGY_ROOT_USERNAME", "iggy")
            .env("IGGY_ROOT_PASSWORD", "iggy")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("cannot start iggy-server")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !net::tcp_answers("127.0.0.1", port) {
            ensure!(
                Instant::now() < deadline,
                "the private iggy-server did not answer on {address}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(child)
    };
    let server = (address.clone(), "iggy".to_owned(), "iggy".to_owned());
    let stream = format!("xtask-{}-restart", cx.run_id);
    let (cfg, state) = source_config(
        cx,
        "iggy-restart",
        &index,
        &server,
        &stream,
        "partition:0",
        1,
    )?;
    cx.step(
        "start a private iggy-server and `run`; stop the server at >= 3000 acknowledged, \
         start it again on the same data: the connector reconnects and finishes",
        |cx| {
            let mut iggy_server = start(&data)?;
            step!("  iggy-server pid {} on {address}", iggy_server.id());
            let mut running = Running::spawn(&cx.connector, &["run", "--config", &cfg], None)?;
            wait_until(
                "acknowledged",
                3_000,
                Duration::from_secs(300),
                &mut running,
                |_| fetched(&state),
            )?;
            util::run(
                Command::new("kill")
                    .arg("-TERM")
                    .arg(iggy_server.id().to_string()),
            )?;
            iggy_server.wait()?;
            let at_stop = fetched(&state);
            step!("  iggy-server stopped at {at_stop} acknowledged");
            // The connector notices: an output error in its log.
            wait_until(
                "output errors",
                1,
                Duration::from_secs(120),
                &mut running,
                |r| {
                    r.lines()
                        .iter()
                        .filter(|l| l.contains("output failed"))
                        .count() as u64
                },
            )?;
            let mut iggy_server = start(&data)?;
            step!("  iggy-server started again, pid {}", iggy_server.id());
            let done = wait_until(
                "acknowledged",
                N,
                Duration::from_secs(300),
                &mut running,
                |_| fetched(&state),
            )?;
            step!("  {done} acknowledged");
            running.terminate()?;
            let (status, lines) = running.wait(Duration::from_secs(60))?;
            ensure!(
                status.success(),
                "SIGTERM exit {status}:\n{}",
                last(&lines, 10)
            );
            let c = census(cx, &cfg)?;
            let _ = iggy_server.kill();
            let _ = iggy_server.wait();
            step!("  topic: {c}");
            ensure!(
                c["distinct_documents"].as_u64() == Some(N),
                "{} distinct documents, expected {N}",
                c["distinct_documents"]
            );
            ensure!(
                c["messages"].as_u64().unwrap_or(u64::MAX) <= N + BATCH,
                "{} messages: more than one batch repeated",
                c["messages"]
            );
            Ok(())
        },
    )?;
    Ok(())
}

/// `es-connector topic-check --config cfg`, parsed.
fn census_of(cfg: &str, connector: &crate::connector::Connector) -> Result<Value> {
    let running = Running::spawn(connector, &["topic-check", "--config", cfg], None)?;
    let (status, lines) = running.wait(Duration::from_secs(300))?;
    ensure!(
        status.success(),
        "topic-check failed:\n{}",
        last(&lines, 10)
    );
    let line = lines
        .iter()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("topic-check printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}
