//! `cargo xtask bench late-window [--docs N]`: the state a `late_window` keeps,
//! measured. N documents (default 1,000,000) stamped over the last 30 minutes
//! are read by `es-connector run --once` with `late_window = "1h"`, so every one
//! of them is in the window at the end; the table gives the state document's
//! size, per document and per million, beside the run's time. Results in
//! docs/benchmarks/late-window.md.

use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::connector::Connector;
use crate::e2e::source_kit::{Http, create_logs_index, event_id};
use crate::services::Session;
use crate::{step, util};

const DOCS: u64 = 1_000_000;
const PER_REQUEST: u64 = 5_000;
const SPAN_MS: u64 = 30 * 60 * 1000;

pub fn cmd(args: &crate::cli::DocsArgs) -> Result<()> {
    let (opts, docs) = super::docs_options(args, DOCS);
    let connector = Connector::build()?;
    let session = Session::start(opts, true)?;
    let url = session
        .get("ES_URL")
        .context("the services session has no ES_URL")?
        .to_string();
    let result = measure(&connector, &url, docs);
    session.finish()?;
    let row = result?;
    let table = format!(
        "| documents in the window | state document | bytes per document | per million documents | `run --once` |\n\
         |---:|---:|---:|---:|---:|\n\
         | {} | {} bytes | {:.2} | {:.1} MB | {:.0} s |\n",
        row.remembered,
        row.state_bytes,
        row.state_bytes as f64 / row.remembered.max(1) as f64,
        row.state_bytes as f64 / row.remembered.max(1) as f64,
        row.seconds
    );
    println!("{table}");
    let doc = format!(
        "# The state of a late window\n\n\
         `cargo xtask bench late-window --docs {docs}`: {docs} documents stamped over the \
         last 30 minutes, read by `es-connector run --once` (stdout output, file state, \
         `batch_size = 1000`, `late_window = \"1h\"`, so every document is in the window at \
         the end) from {}. The state document is the file state's JSON, window included.\n\n\
         {table}\n\
         Each commit writes the whole state document: inside a full window, a save of this \
         size per batch.\n",
        row.server
    );
    super::write_result("late-window.md", doc)?;
    Ok(())
}

struct Row {
    remembered: u64,
    state_bytes: u64,
    seconds: f64,
    server: String,
}

fn measure(connector: &Connector, url: &str, docs: u64) -> Result<Row> {
    let dir = util::xtask_dir().join("bench-late-window");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let index = format!("xtask-bench-late-{}", std::process::id());
    let mut http = Http::new(url)?;
    let server = http.json("GET", "/", "")?;
    let server = format!(
        "{} {}",
        server["version"]["distribution"]
            .as_str()
            .unwrap_or("elasticsearch"),
        server["version"]["number"].as_str().unwrap_or("?")
    );
    create_logs_index(&mut http, &index)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let start = now - SPAN_MS;
    let loading = Instant::now();
    let mut n = 0;
    while n < docs {
        let stop = (n + PER_REQUEST).min(docs);
        let mut body = String::new();
        for i in n..stop {
            body.push_str(&format!(
                "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{}\"}}}}\n\
                 {{\"@timestamp\":{},\"event_id\":\"{}\",\"n\":{i}}}\n",
                event_id(i),
                start + i * SPAN_MS / docs,
                event_id(i)
            ));
        }
        let answer = http.json("POST", "/_bulk", &body)?;
        ensure!(answer["errors"] == false, "_bulk reported errors");
        n = stop;
    }
    http.json("POST", &format!("/{index}/_refresh"), "")?;
    step!(
        "  loaded {docs} documents into {index} in {:.0}s",
        loading.elapsed().as_secs_f64()
    );
    let states = dir.join("states");
    let config = dir.join("late.toml");
    std::fs::write(
        &config,
        format!(
            "[plugin_config]\nurl = \"{url}\"\nindex = \"{index}\"\nbatch_size = 1000\n\
             polling_interval = \"100ms\"\nsettle = \"0s\"\nlate_window = \"1h\"\n\
             tiebreaker_field = \"event_id\"\n\
             [plugin_config.state]\nstorage_type = \"file\"\nstate_id = \"late\"\n\
             [plugin_config.state.storage_config]\nbase_path = \"{}\"\n\
             [output]\nkind = \"stdout\"\n",
            states.display()
        ),
    )?;
    let running = Instant::now();
    let status = Command::new(&connector.bin)
        .args(["run", "--once", "--no-progress", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .status()?;
    let seconds = running.elapsed().as_secs_f64();
    let _ = http.request("DELETE", &format!("/{index}"), b"");
    ensure!(status.success(), "es-connector run --once failed: {status}");
    let bytes = std::fs::read(states.join("late.json"))?;
    let state: Value = serde_json::from_slice(&bytes)?;
    let remembered: u64 = state["data"]["late_window"]["buckets"]
        .as_object()
        .map(|b| {
            b.values()
                .filter_map(Value::as_str)
                .map(|s| (s.len().saturating_sub(5) * 6 / 8 / 8) as u64)
                .sum()
        })
        .unwrap_or(0);
    step!(
        "  read in {seconds:.0}s; the state holds {remembered} documents in {} bytes",
        bytes.len()
    );
    Ok(Row {
        remembered,
        state_bytes: bytes.len() as u64,
        seconds,
        server,
    })
}
