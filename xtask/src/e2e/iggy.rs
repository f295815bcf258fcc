//! Iggy scenarios of `cargo xtask e2e`, against a real Iggy server
//! (`IGGY_TCP_ADDRESS`, started natively from `IGGY_SERVER_BIN` or by `--docker`).
//! Without one they print that they were not run and why.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::e2e::Cx;
use crate::e2e::source_kit::{self, Http, Running, create_logs_index, last, load_logs, wait_until};
use crate::{native, net, step, util};

const ECHO: Option<&str> = Some("    | ");
const DOCS: u64 = 50_000;
const BATCH: u64 = 1_000;

/// The Iggy server to use, or `None` after saying why the scenario is not run.
fn iggy(cx: &Cx) -> Option<(String, String, String)> {
    match &cx.iggy {
        Some(server) => Some(server.clone()),
        None => {
            cx.not_run(
                "IGGY_TCP_ADDRESS is unset (no Iggy server is installable from the registries; \
                 set IGGY_SERVER_BIN to an iggy-server binary, or use --docker)",
            );
            None
        }
    }
}

/// A source config sending `index` into `stream/docs` of the Iggy server.
#[allow(clippy::too_many_arguments)]
pub(super) fn source_config(
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
         timestamp_field = \"@timestamp\"\n{tiebreaker}\n\
         [plugin_config.state]\nenabled = true\nstorage_type = \"file\"\nstate_id = \"{name}\"\n\n\
         [plugin_config.state.storage_config]\nbase_path = {base}\n\n\
         [output]\nkind = \"iggy\"\naddress = {address}\nusername = {user}\npassword = {password}\n\
         partitioning = {partitioning}\npartitions = {partitions}\n",
        stream = q(stream),
        // `_shard_doc` where the server has it; elsewhere a source needs a field.
        tiebreaker = if crate::search_server::has_shard_doc(&cx.es_url)? {
            ""
        } else {
            "tiebreaker_field = \"event_id\"\n"
        },
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
         consumer = \"xtask-sink\"\npoll_interval = \"200ms\"\n\n\
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

/// The second (of [`source_kit::timestamp`]) of the state's committed cursor.
fn cursor_second(state_file: &Path) -> Option<u64> {
    let v: Value = serde_json::from_slice(&std::fs::read(state_file).ok()?).ok()?;
    let ms = v["data"]["cursor"]["sort"][0].as_u64()?;
    Some(ms.saturating_sub(source_kit::SECOND_ZERO_MS) / 1000)
}

/// Documents indexed into the in-flight range after each kill of the
/// single-partition run.
const LATE: u64 = 50;

/// `es-connector topic-check`: what the topic holds.
pub(super) fn census(cx: &Cx, cfg: &str) -> Result<Value> {
    let lines = source_kit::run_to_end(&cx.connector, &["topic-check", "--config", cfg], None)?;
    let line = lines
        .iter()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("topic-check printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}

/// `es-connector <args>` to completion, exit 0 required, its lines echoed.
fn run_to_end(cx: &Cx, args: &[&str]) -> Result<Vec<String>> {
    source_kit::run_to_end(&cx.connector, args, ECHO)
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

/// `es-connector sink` into a cluster with security on (`url`): for each
/// `(name, access)` (`access`: the `[output]` keys `api_key` or
/// `username`/`password`, and `ca_file`), a topic of `docs` messages is indexed
/// into `xtask-secure-copy-<name>`: `count` (of the secured cluster) finds every
/// one, and no secret is printed.
pub(super) fn secured_sink(
    cx: &mut Cx,
    url: &str,
    cases: &[(&str, String)],
    secrets: &[&str],
    count: impl Fn(&str) -> Result<u64>,
) -> Result<()> {
    let Some(server) = iggy(cx) else {
        return Ok(());
    };
    const SINK_DOCS: u64 = 300;
    let stream = format!("xtask-{}-secure-sink", cx.run_id);
    cx.step(
        &format!("load {SINK_DOCS} documents and send them into the Iggy topic {stream}/docs"),
        |cx| {
            let index = load(cx, "secure-sink-src", SINK_DOCS)?;
            let (cfg, _) = source_config(
                cx,
                "secure-sink-src",
                &index,
                &server,
                &stream,
                "partition:0",
                1,
            )?;
            run_to_end(cx, &["run", "--config", &cfg, "--once"])?;
            Ok(())
        },
    )?;
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    for (name, access) in cases {
        let index = format!("xtask-secure-copy-{name}");
        cx.step(
            &format!(
                "{name}: `sink --once` over HTTPS indexes all {SINK_DOCS} messages into {index}"
            ),
            |cx| {
                let (cfg, _) = sink_config(cx, name, &server, &stream, &index)?;
                let text = std::fs::read_to_string(&cfg)?
                    .replace(
                        &format!("url = {}\n", q(&cx.es_url)),
                        &format!("url = {}\n{access}", q(url)),
                    )
                    .replace(
                        "consumer = \"xtask-sink\"",
                        &format!("consumer = \"xtask-{name}\""),
                    );
                std::fs::write(&cfg, text)?;
                let lines = run_to_end(cx, &["sink", "--config", &cfg, "--once"])?;
                let all = lines.join("\n");
                if let Some(secret) = secrets.iter().find(|s| all.contains(**s)) {
                    bail!("the sink printed a secret ({} characters)", secret.len());
                }
                let indexed = count(&index)?;
                ensure!(
                    indexed == SINK_DOCS,
                    "{index} holds {indexed} documents, not {SINK_DOCS}"
                );
                step!("  {indexed} documents indexed, no secret printed");
                Ok(())
            },
        )?;
    }
    Ok(())
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
    // Documents in the index: DOCS, and LATE more after each single-partition kill.
    let mut total = DOCS;
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
                    if partitions == 1 {
                        // Into the range that was in flight: one second after
                        // the committed cursor, where the re-read begins. The
                        // restart then meets them before the rest of what it
                        // had sent, and must still not send that again.
                        let second = cursor_second(&state).context("no cursor in the state")? + 1;
                        let mut http = Http::new(&cx.es_url)?;
                        load_logs(&mut http, &index, total, LATE, LATE, |_| second, |_| {})?;
                        total += LATE;
                        step!("  indexed {LATE} documents at second {second}, inside the in-flight range");
                    }
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
                    documents == total,
                    "{documents} distinct documents in the topic, expected {total}"
                );
                if partitions == 1 {
                    ensure!(
                        messages == total,
                        "{messages} messages for {total} documents: duplicates after {kills} kills"
                    );
                } else {
                    ensure!(
                        messages <= total + kills * BATCH,
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
/// partition's offset was stored).
pub fn sink_sigkill(cx: &mut Cx) -> Result<()> {
    let Some(server) = iggy(cx) else {
        return Ok(());
    };
    let stream = format!("xtask-{}-single", cx.run_id);
    let index = format!("xtask-e2e-{}-iggy-sink", cx.run_id).to_lowercase();
    cx.track_index(&index);
    let (cfg, dead) = sink_config(cx, "iggy-sink", &server, &stream, &index)?;
    if census(cx, &cfg).is_err() {
        // Run without iggy-source-sigkill: make its single-partition topic.
        cx.step(
            "the topic of iggy-source-sigkill is not there: fill it with 50000 documents",
            |cx| {
                let source = load(cx, "iggy-sink-src", DOCS)?;
                let (src_cfg, _) = source_config(
                    cx,
                    "iggy-sink-src",
                    &source,
                    &server,
                    &stream,
                    "partition:0",
                    1,
                )?;
                run_to_end(cx, &["run", "--config", &src_cfg, "--once"]).map(|_| ())
            },
        )?;
    }
    // What iggy-source-sigkill left there (50000 and the late documents).
    let expected = census(cx, &cfg)?["messages"].as_u64().unwrap_or(DOCS);
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
        &format!(
            "`sink --once` to completion: _count {expected}, nothing dead-lettered; again: 0 \
             messages"
        ),
        |cx| {
            let lines = run_to_end(cx, &["sink", "--config", &cfg, "--once"])?;
            step!("  {}", lines.last().map_or("", String::as_str));
            let n = source_kit::count(&es_url, &index)?;
            ensure!(n == expected, "_count {n}, expected {expected}");
            ensure!(
                source_kit::line_count(&dead) == 0,
                "documents were dead-lettered: see {}",
                dead.display()
            );
            let again = run_to_end(cx, &["sink", "--config", &cfg, "--once"])?;
            // `done: …`, then one `partition N: consumed up to …` line each.
            let done = again
                .iter()
                .rev()
                .find(|l| l.starts_with("done:"))
                .cloned()
                .unwrap_or_default();
            step!("  {done}");
            ensure!(
                done.starts_with("done: 0 messages"),
                "the partition's offset was not stored: a second run read again: {done}"
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
    let bin = private_server_bin();
    let Some(bin) = bin else {
        cx.not_run("needs IGGY_SERVER_BIN to start a private iggy-server it can stop");
        return Ok(());
    };
    const N: u64 = 10_000;
    let index = cx.step("load 10000 documents", |cx| load(cx, "iggy-restart", N))?;
    let private = PrivateIggy::new(bin, cx.dir.join("iggy-private"), Vec::new())?;
    let address = private.address.clone();
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
            let mut iggy_server = private.start()?;
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
            let mut iggy_server = private.start()?;
            step!("  iggy-server started again, pid {}", iggy_server.id());
            let done = wait_until(
                "acknowledged",
                N,
                Duration::from_secs(300),
                &mut running,
                |_| fetched(&state),
            )?;
            step!("  {done} acknowledged");
            running.stop()?;
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

/// `IGGY_SERVER_BIN`, else the binary of the natively started iggy-server.
fn private_server_bin() -> Option<PathBuf> {
    native::iggy_server_bin().or_else(|| {
        native::running(crate::services::Kind::Iggy)
            .and_then(|(pid, _)| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
    })
}

/// An iggy-server of one scenario: its own data directory and loopback ports.
struct PrivateIggy {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    address: String,
    other_ports: [u16; 3],
    env: Vec<(String, String)>,
}

impl PrivateIggy {
    fn new(bin: PathBuf, data: PathBuf, env: Vec<(String, String)>) -> Result<PrivateIggy> {
        let port = net::free_port()?;
        Ok(PrivateIggy {
            bin,
            data,
            port,
            address: format!("127.0.0.1:{port}"),
            other_ports: [net::free_port()?, net::free_port()?, net::free_port()?],
            env,
        })
    }

    /// Starts it (on the same data each time) and waits until its port answers.
    fn start(&self) -> Result<Child> {
        let log = std::fs::File::create(self.data.with_extension("log"))?;
        let [http, quic, ws] = self.other_ports;
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(self.data.parent().unwrap_or(&self.data))
            .env("IGGY_SYSTEM_PATH", &self.data)
            .env("IGGY_TCP_ADDRESS", &self.address)
            .env("IGGY_HTTP_ADDRESS", format!("127.0.0.1:{http}"))
            .env("IGGY_QUIC_ADDRESS", format!("127.0.0.1:{quic}"))
            .env("IGGY_WEBSOCKET_ADDRESS", format!("127.0.0.1:{ws}"))
            .env("IGGY_ROOT_USERNAME", "iggy")
            .env("IGGY_ROOT_PASSWORD", "iggy")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("cannot start iggy-server")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !net::tcp_answers("127.0.0.1", self.port) {
            ensure!(
                Instant::now() < deadline,
                "the private iggy-server did not answer on {}",
                self.address
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(child)
    }
}

/// A CA and a `localhost` certificate it signed, made with the openssl CLI.
pub(crate) fn make_certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let (ca_key, ca, key, csr, cert, ext) = (
        dir.join("ca.key"),
        dir.join("ca.pem"),
        dir.join("key.pem"),
        dir.join("leaf.csr"),
        dir.join("cert.pem"),
        dir.join("ext.cnf"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )?;
    let openssl = |args: &[&std::ffi::OsStr]| {
        util::capture(Command::new("openssl").args(args), Duration::from_secs(60)).and_then(|out| {
            ensure!(out.status.success(), "openssl failed: {}", out.all());
            Ok(())
        })
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    openssl(&[
        &os("req"),
        &os("-x509"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-keyout"),
        ca_key.as_os_str(),
        &os("-out"),
        ca.as_os_str(),
        &os("-days"),
        &os("2"),
        &os("-subj"),
        &os("/CN=xtask-e2e-ca"),
    ])?;
    openssl(&[
        &os("req"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-keyout"),
        key.as_os_str(),
        &os("-out"),
        csr.as_os_str(),
        &os("-subj"),
        &os("/CN=localhost"),
    ])?;
    openssl(&[
        &os("x509"),
        &os("-req"),
        &os("-in"),
        csr.as_os_str(),
        &os("-CA"),
        ca.as_os_str(),
        &os("-CAkey"),
        ca_key.as_os_str(),
        &os("-CAcreateserial"),
        &os("-out"),
        cert.as_os_str(),
        &os("-days"),
        &os("2"),
        &os("-extfile"),
        ext.as_os_str(),
    ])?;
    Ok((ca, cert, key))
}

/// A private iggy-server with TLS on TCP, its certificate signed by a test CA:
/// the output with `tls_ca_file` delivers every document; with the wrong CA
/// nothing connects.
pub fn tls(cx: &mut Cx) -> Result<()> {
    if iggy(cx).is_none() {
        return Ok(());
    }
    let Some(bin) = private_server_bin() else {
        cx.not_run("needs IGGY_SERVER_BIN to start a private iggy-server with TLS");
        return Ok(());
    };
    if util::which("openssl").is_none() {
        cx.not_run("needs the openssl CLI to make the test certificates");
        return Ok(());
    }
    const N: u64 = 2_000;
    let index = cx.step("load 2000 documents", |cx| load(cx, "iggy-tls", N))?;
    let certs = cx.dir.join("iggy-tls-certs");
    let (ca, cert, key) = make_certificates(&certs)?;
    let env = vec![
        ("IGGY_TCP_TLS_ENABLED".to_owned(), "true".to_owned()),
        ("IGGY_TCP_TLS_SELF_SIGNED".to_owned(), "false".to_owned()),
        (
            "IGGY_TCP_TLS_CERT_FILE".to_owned(),
            cert.display().to_string(),
        ),
        (
            "IGGY_TCP_TLS_KEY_FILE".to_owned(),
            key.display().to_string(),
        ),
    ];
    let private = PrivateIggy::new(bin, cx.dir.join("iggy-tls-data"), env)?;
    let server = (
        private.address.clone(),
        "iggy".to_owned(),
        "iggy".to_owned(),
    );
    let stream = format!("xtask-{}-tls", cx.run_id);
    let (cfg, _) = source_config(cx, "iggy-tls", &index, &server, &stream, "balanced", 1)?;
    let tls_lines = |ca: &Path| {
        format!(
            "tls = true\ntls_ca_file = {}\ntls_domain = \"localhost\"\n",
            serde_json::to_string(&ca.to_string_lossy()).unwrap_or_default()
        )
    };
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(&cfg, format!("{text}{}", tls_lines(&ca)))?;
    cx.step(
        "TLS on TCP: `run --once` with tls_ca_file = the test CA writes every document; \
         topic-check with a certificate that is not the CA cannot connect",
        |cx| {
            let mut server_process = private.start()?;
            step!(
                "  iggy-server (TLS) pid {} on {}",
                server_process.id(),
                private.address
            );
            let outcome = (|| {
                let lines = run_to_end(cx, &["run", "--config", &cfg, "--once"])?;
                step!(
                    "  {}",
                    lines
                        .iter()
                        .rev()
                        .find(|l| l.starts_with("done:"))
                        .map_or("", String::as_str)
                );
                let c = census(cx, &cfg)?;
                step!("  topic: {c}");
                ensure!(
                    c["messages"].as_u64() == Some(N)
                        && c["distinct_documents"].as_u64() == Some(N),
                    "expected {N} messages and documents over TLS: {c}"
                );
                let wrong = cx.dir.join("iggy-tls-wrong-ca.toml");
                std::fs::write(&wrong, format!("{text}{}", tls_lines(&cert)))?;
                let running = Running::spawn(
                    &cx.connector,
                    &["topic-check", "--config", &wrong.display().to_string()],
                    None,
                )?;
                let (status, lines) = running.wait(Duration::from_secs(120))?;
                ensure!(
                    !status.success(),
                    "a certificate that is not the CA was accepted"
                );
                step!("  with the wrong CA: {}", last(&lines, 1));
                Ok(())
            })();
            let _ = server_process.kill();
            let _ = server_process.wait();
            outcome
        },
    )?;
    Ok(())
}
