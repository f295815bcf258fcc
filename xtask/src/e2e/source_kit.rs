//! What the source demo and the source e2e scenarios share: log-like test
//! documents, a keep-alive `_bulk` loader, connector configs with an
//! `[output]`, a running `es-connector` whose output is watched, and reading
//! its JSON-lines output back.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::connector::Connector;
use crate::net::{self, Url};
use crate::util;

/// One HTTP/1.1 keep-alive connection for requests with a body (bulk loads).
#[derive(Debug)]
pub struct Http {
    url: Url,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    pub fn new(base: &str) -> Result<Http> {
        let url = Url::parse(base)?;
        ensure!(url.scheme == "http", "plain http only: `{base}`");
        Ok(Http { url, conn: None })
    }

    fn connect(&self) -> Result<BufReader<TcpStream>> {
        let addr = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()?
            .next()
            .with_context(|| format!("cannot resolve {}", self.url.host))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("cannot connect to {}:{}", self.url.host, self.url.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.set_write_timeout(Some(Duration::from_secs(120)))?;
        stream.set_nodelay(true)?;
        Ok(BufReader::new(stream))
    }

    /// Sends one request; returns status and body. A stale kept-alive
    /// connection is replaced once.
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, String)> {
        match self.try_request(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.conn = None;
                self.try_request(method, path, body)
            }
        }
    }

    fn try_request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, String)> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let content_type = if path.contains("_bulk") {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: {content_type}\r\n\
             Accept: application/json\r\nContent-Length: {}\r\n\r\n",
            self.url.path.trim_end_matches('/'),
            self.url.host,
            self.url.port,
            body.len()
        );
        let stream = conn.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP response: `{}`", line.trim()))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("bad chunk size `{}`", line.trim()))?;
                let mut chunk = vec![0; size + 2];
                conn.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            conn.read_exact(&mut body)?;
        } else {
            conn.read_to_end(&mut body)?;
            close = true;
        }
        if !close {
            self.conn = Some(conn);
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A request that must answer 2xx; returns the body as JSON.
    pub fn json(&mut self, method: &str, path: &str, body: &str) -> Result<Value> {
        let (status, text) = self.request(method, path, body.as_bytes())?;
        ensure!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {}",
            text.chars().take(500).collect::<String>()
        );
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: body is not JSON"))
    }
}

/// The mapping of the log documents: keyword fields sort, `event_id` breaks ties.
pub const LOGS_MAPPING: &str = r#"{"mappings":{"properties":{
  "@timestamp":{"type":"date"},"event_id":{"type":"keyword"},"level":{"type":"keyword"},
  "service":{"type":"keyword"},"host":{"type":"keyword"},"trace_id":{"type":"keyword"},
  "duration_ms":{"type":"long"},"message":{"type":"text"},
  "http":{"properties":{"method":{"type":"keyword"},"path":{"type":"keyword"},"status":{"type":"integer"}}}}}}"#;

/// Creates `index` with [`LOGS_MAPPING`].
pub fn create_logs_index(http: &mut Http, index: &str) -> Result<()> {
    http.json("PUT", &format!("/{index}"), LOGS_MAPPING)
        .map(|_| ())
        .with_context(|| format!("cannot create index {index}"))
}

/// A small deterministic generator (splitmix64): reproducible data, no crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// `second` seconds after 2024-05-01T10:00:00Z, as RFC 3339 (second granularity).
/// Epoch milliseconds of second 0 of [`timestamp`] (2024-05-01T10:00:00Z).
pub const SECOND_ZERO_MS: u64 = 1_714_557_600_000;

pub fn timestamp(second: u64) -> String {
    let (h, m, s) = (10 + second / 3600, (second / 60) % 60, second % 60);
    format!("2024-05-01T{h:02}:{m:02}:{s:02}Z")
}

/// The unique tiebreaker of document number `n`.
pub fn event_id(n: u64) -> String {
    format!("evt-{n:08}")
}

/// One realistic log document (JSON) with number `n` at `second`.
pub fn log_doc(rng: &mut Rng, n: u64, second: u64) -> String {
    const SERVICES: [&str; 6] = [
        "checkout", "payments", "search", "auth", "catalog", "gateway",
    ];
    const PATHS: [&str; 6] = [
        "/api/cart",
        "/api/pay",
        "/api/search",
        "/login",
        "/api/items",
        "/health",
    ];
    const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
    let roll = rng.next() % 100;
    let (level, status) = match roll {
        0..=1 => ("ERROR", 500),
        2..=4 => ("WARN", 429),
        5..=9 => ("INFO", 404),
        10..=14 => ("DEBUG", 201),
        _ => ("INFO", 200),
    };
    let service = rng.pick(&SERVICES);
    let path = rng.pick(&PATHS);
    let method = rng.pick(&METHODS);
    let host = format!("{service}-{}", rng.next() % 4 + 1);
    let duration = rng.next() % 900 + 3;
    let trace = format!("{:016x}{:016x}", rng.next(), rng.next());
    serde_json::json!({
        "@timestamp": timestamp(second),
        "event_id": event_id(n),
        "level": level,
        "service": service,
        "host": host,
        "trace_id": trace,
        "duration_ms": duration,
        "http": {"method": method, "path": path, "status": status},
        "message": format!("{method} {path} -> {status} in {duration}ms"),
    })
    .to_string()
}

/// Bulk-loads documents `first..first+count` into `index` in requests of
/// `per_request` documents over one keep-alive connection; document `n` gets
/// `_id` = its `event_id` and the timestamp `second_of(n)`. `progress` is
/// called after each request with the number loaded so far.
pub fn load_logs(
    http: &mut Http,
    index: &str,
    first: u64,
    count: u64,
    per_request: u64,
    second_of: impl Fn(u64) -> u64,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let mut rng = Rng::new(first ^ 0x5eed);
    let mut n = first;
    let end = first + count;
    while n < end {
        let stop = (n + per_request).min(end);
        let mut body = String::with_capacity(((stop - n) * 400) as usize);
        for i in n..stop {
            body.push_str(&format!(
                "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{}\"}}}}\n",
                event_id(i)
            ));
            body.push_str(&log_doc(&mut rng, i, second_of(i)));
            body.push('\n');
        }
        let answer = http.json("POST", "/_bulk", &body)?;
        if answer["errors"] == true {
            let first_error = answer["items"]
                .as_array()
                .and_then(|items| items.iter().find(|i| i["index"]["error"].is_object()))
                .map(|i| i["index"]["error"].to_string())
                .unwrap_or_default();
            bail!("_bulk into {index} reported errors, e.g. {first_error}");
        }
        n = stop;
        progress(n - first);
    }
    // A real server shows new documents to searches only after a refresh.
    http.json("POST", &format!("/{index}/_refresh"), "")
        .with_context(|| format!("cannot refresh {index}"))?;
    Ok(())
}

/// `_count` of `index` (0 when it does not exist).
pub fn count(es_url: &str, index: &str) -> Result<u64> {
    // Count what was indexed, not only what the last periodic refresh shows.
    let (status, body) = net::http("POST", es_url, &format!("/{index}/_refresh"))?;
    ensure!(
        matches!(status, 200 | 404),
        "_refresh of {index} answered {status}: {body}"
    );
    let (status, body) = net::http("GET", es_url, &format!("/{index}/_count"))?;
    if status == 404 {
        return Ok(0);
    }
    ensure!(status == 200, "_count of {index} answered {status}: {body}");
    let v: Value = serde_json::from_str(&body)?;
    v["count"]
        .as_u64()
        .with_context(|| format!("no count in {body}"))
}

/// Where `es-connector run` sends its messages.
#[derive(Debug, Clone)]
pub enum Output {
    File(PathBuf),
    Elasticsearch { url: String, index: String },
}

/// What a source config holds.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub es_url: String,
    pub index: String,
    pub batch_size: u32,
    /// `search_after`, `scroll` or `cursor`.
    pub pagination: String,
    /// `tiebreaker_field`; `None` for the default (`_shard_doc` in a point in time).
    pub tiebreaker: Option<String>,
    pub state_dir: PathBuf,
    pub state_id: String,
    pub output: Output,
}

/// Adds `lines` at the top of `[plugin_config]` in the configuration file at `path`.
pub fn add_plugin_lines(path: &str, lines: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let text = text.replacen("[plugin_config]\n", &format!("[plugin_config]\n{lines}"), 1);
    std::fs::write(path, text)?;
    Ok(())
}

impl SourceConfig {
    /// Writes the TOML to `path`; returns `path` as a string.
    pub fn write(&self, path: &Path) -> Result<String> {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let output = match &self.output {
            Output::File(p) => format!("kind = \"file\"\npath = {}\n", q(&p.to_string_lossy())),
            Output::Elasticsearch { url, index } => format!(
                "kind = \"elasticsearch\"\nurl = {}\nindex = {}\n",
                q(url),
                q(index)
            ),
        };
        let text = format!(
            "# Written by cargo xtask.\n\
             [plugin_config]\n\
             url = {url}\n\
             index = {index}\n\
             batch_size = {batch}\n\
             polling_interval = \"300ms\"\n\
             timestamp_field = \"@timestamp\"\n\
             {tiebreaker}\
             pagination = {pagination}\n\n\
             [plugin_config.state]\n\
             enabled = true\n\
             storage_type = \"file\"\n\
             state_id = {state_id}\n\n\
             [plugin_config.state.storage_config]\n\
             base_path = {base}\n\n\
             [output]\n\
             {output}",
            url = q(&self.es_url),
            index = q(&self.index),
            batch = self.batch_size,
            pagination = q(&self.pagination),
            tiebreaker = match &self.tiebreaker {
                Some(field) => format!("tiebreaker_field = {}\n", q(field)),
                None => String::new(),
            },
            state_id = q(&self.state_id),
            base = q(&self.state_dir.to_string_lossy()),
        );
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path.display().to_string())
    }
}

/// A running `es-connector` whose stdout and stderr lines are collected (and
/// echoed with a prefix when asked).
#[derive(Debug)]
pub struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn spawn(connector: &Connector, args: &[&str], echo: Option<&str>) -> Result<Running> {
        let mut cmd = Command::new(&connector.bin);
        cmd.args(args)
            .current_dir(util::root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let root = format!("{}/", util::root().display());
        crate::step!("  $ es-connector {}", args.join(" ").replace(&root, ""));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", connector.bin.display()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().context("no stdout")?);
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().context("no stderr")?);
        for pipe in [out, err] {
            let lines = Arc::clone(&lines);
            let echo = echo.map(str::to_string);
            readers.push(std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut buf = Vec::new();
                // Progress may redraw with '\r': split on it too.
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let text = String::from_utf8_lossy(&buf);
                    for part in text.split(['\r', '\n']).filter(|p| !p.trim().is_empty()) {
                        if let Some(prefix) = &echo {
                            eprintln!("{prefix}{part}");
                        }
                        if let Ok(mut l) = lines.lock() {
                            l.push(part.to_string());
                        }
                    }
                }
            }));
        }
        Ok(Running {
            child,
            lines,
            readers,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGKILL, then reap it.
    pub fn kill(mut self) -> Result<Vec<String>> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(self.join())
    }

    /// Sends SIGTERM (through `kill(1)`: this crate has no unsafe code).
    pub fn terminate(&self) -> Result<()> {
        util::run(
            Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string()),
        )
    }

    /// SIGTERM, then the exit within a minute, which must be 0 (else an error
    /// with its last lines); the lines it wrote.
    pub fn stop(self) -> Result<Vec<String>> {
        self.terminate()?;
        let (status, lines) = self.wait(Duration::from_secs(60))?;
        ensure!(
            status.success(),
            "exit {status} after SIGTERM:\n{}",
            last(&lines, 15)
        );
        Ok(lines)
    }

    /// Waits for it to exit (killing it after `timeout`); returns status and lines.
    pub fn wait(mut self, timeout: Duration) -> Result<(ExitStatus, Vec<String>)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, self.join()));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let lines = self.join();
                bail!(
                    "es-connector did not exit within {}s and was killed; last lines:\n{}",
                    timeout.as_secs(),
                    last(&lines, 15)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join(&mut self) -> Vec<String> {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.lines()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines, joined.
pub fn last(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `es-connector run --config cfg --once` to completion; an error unless it exits 0.
pub fn run_once(connector: &Connector, cfg: &str, echo: Option<&str>) -> Result<Vec<String>> {
    run_to_end(connector, &["run", "--config", cfg, "--once"], echo)
}

/// `es-connector <args>` to completion (at most 15 minutes); an error unless it
/// exits 0. Returns every line it printed.
pub fn run_to_end(connector: &Connector, args: &[&str], echo: Option<&str>) -> Result<Vec<String>> {
    let running = Running::spawn(connector, args, echo)?;
    let (status, lines) = running.wait(Duration::from_secs(900))?;
    ensure!(
        status.success(),
        "`es-connector {}` failed ({status}):\n{}",
        args.join(" "),
        last(&lines, 15)
    );
    Ok(lines)
}

/// Number of complete lines in `path` (0 when it does not exist).
pub fn line_count(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Polls (every 50 ms, up to `timeout`) until `path` has at least `n` lines.
/// An error when `running` exits first or the time is up.
pub fn wait_lines(
    path: &Path,
    n: usize,
    timeout: Duration,
    running: &mut Running,
) -> Result<usize> {
    wait_until("lines written", n as u64, timeout, running, |_| {
        line_count(path) as u64
    })
    .map(|have| have as usize)
}

/// Polls `probe` (every 50 ms, up to `timeout`) until it reaches `n`; an error
/// when `running` exits first.
pub fn wait_until(
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

/// What an output file holds.
#[derive(Debug, Default)]
pub struct OutputStats {
    pub lines: usize,
    /// Distinct message ids (`id`).
    pub ids: usize,
    /// Distinct `payload.event_id`.
    pub events: HashSet<String>,
    /// Lines that are not a complete message.
    pub bad: usize,
}

impl OutputStats {
    pub fn duplicates(&self) -> usize {
        self.lines - self.bad - self.ids
    }
}

/// Reads a JSON-lines output file.
pub fn read_output(path: &Path) -> Result<OutputStats> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut stats = OutputStats::default();
    let mut ids = HashSet::new();
    for line in text.lines() {
        stats.lines += 1;
        let parsed: Option<Value> = serde_json::from_str(line).ok();
        let id = parsed.as_ref().and_then(|v| v["id"].as_str());
        let event = parsed
            .as_ref()
            .and_then(|v| v["payload"]["event_id"].as_str());
        match (id, event) {
            (Some(id), Some(event)) => {
                ids.insert(id.to_string());
                stats.events.insert(event.to_string());
            }
            _ => stats.bad += 1,
        }
    }
    stats.ids = ids.len();
    Ok(stats)
}

/// Every `event_id` of `0..n` is in `stats`; an error naming a few missing ones.
pub fn ensure_all_events(stats: &OutputStats, n: u64) -> Result<()> {
    let missing: Vec<String> = (0..n)
        .map(event_id)
        .filter(|e| !stats.events.contains(e))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} of {n} documents missing from the output, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    Ok(())
}

/// The stored state document (`es-connector state show`).
pub fn state_show(connector: &Connector, cfg: &str) -> Result<Value> {
    let out = connector.state_ok(&["show", "--config", cfg])?;
    serde_json::from_str(out.stdout.trim()).context("`state show` did not print JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_docs() -> Result<()> {
        assert_eq!(timestamp(0), "2024-05-01T10:00:00Z");
        assert_eq!(timestamp(3_725), "2024-05-01T11:02:05Z");
        let doc: Value = serde_json::from_str(&log_doc(&mut Rng::new(1), 7, 61))?;
        assert_eq!(doc["event_id"], "evt-00000007");
        assert_eq!(doc["@timestamp"], "2024-05-01T10:01:01Z");
        Ok(())
    }
}
