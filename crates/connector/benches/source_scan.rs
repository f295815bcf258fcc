//! Helper of `cargo xtask bench source` (not a Criterion bench):
//!
//! - `seed --url U --index I --docs N [--shards S]`: creates index `I` with `S`
//!   primary shards (default 1) and no replica, indexes `N` small documents (`id`
//!   keyword, `@timestamp` date, `n` long, a short message) and refreshes it.
//! - `raw --url U --index I --page P [--mode M]`: the floor. A plain read loop on
//!   `[@timestamp, id]` building each request with the same `es-query` builder as
//!   the connector, sent over one keep-alive connection, reading only what the
//!   next request needs (the last hit's sort values, the newest point in time or
//!   scroll id) and counting hits without parsing them. `M`: `search_after` (no
//!   point in time, as `pagination = "cursor"`), `pit` (`search_after` inside a
//!   point in time, as `pagination = "search_after"`), `scroll` (as
//!   `pagination = "scroll"`) or `backfill` (as `backfill = true`: the point in
//!   time's last document, then pages in `_shard_doc` order up to it). Prints `SOURCE-BENCH {"docs":N,"elapsed":S}`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use es_query::{Cursor, Flavor, Method, PitId, QueryConfig, QuerySpec, Request, ScrollId};
use serde_json::{Value, json};

fn arg(args: &[String], name: &str) -> Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("missing {name}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`: nothing to do without a mode.
    match args.first().map(String::as_str) {
        Some("seed") => {
            seed(
                &arg(&args, "--url")?,
                &arg(&args, "--index")?,
                arg(&args, "--docs")?.parse()?,
                arg(&args, "--shards").map_or(Ok(1), |s| s.parse())?,
            )
            .await
        }
        Some("raw") => {
            raw(
                &arg(&args, "--url")?,
                &arg(&args, "--index")?,
                arg(&args, "--page")?.parse()?,
                Mode::parse(&arg(&args, "--mode").unwrap_or_else(|_| "search_after".into()))?,
            )
            .await
        }
        _ => {
            eprintln!("source_scan: run by `cargo xtask bench source` (modes: seed, raw)");
            Ok(())
        }
    }
}

async fn seed(url: &str, index: &str, docs: u64, shards: u32) -> Result<()> {
    let http = reqwest::Client::new();
    let _ = http.delete(format!("{url}/{index}")).send().await?;
    let r = http
        .put(format!("{url}/{index}"))
        .json(
            &json!({"settings": {"number_of_shards": shards, "number_of_replicas": 0},
            "mappings": {"properties": {
            "id": {"type": "keyword"}, "@timestamp": {"type": "date"}, "n": {"type": "long"},
            "level": {"type": "keyword"}, "message": {"type": "text"}}}}),
        )
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("create {index}: {}", r.text().await?);
    }
    let mut i = 0u64;
    while i < docs {
        let mut body = String::new();
        for n in i..(i + 5000).min(docs) {
            body.push_str(
                &json!({"index": {"_index": index, "_id": format!("d{n:08}")}}).to_string(),
            );
            body.push('\n');
            let level = ["INFO", "WARN", "ERROR", "DEBUG"][(n % 4) as usize];
            let doc = json!({
                "id": format!("d{n:08}"),
                "@timestamp": 1_700_000_000_000u64 + n * 1000,
                "n": n,
                "level": level,
                "message": format!("request {n} handled by worker {} in {} ms", n % 16, n % 997),
            });
            body.push_str(&doc.to_string());
            body.push('\n');
        }
        let r = http
            .post(format!("{url}/_bulk"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?;
        let answer: Value = r.json().await?;
        if answer["errors"] != json!(false) {
            bail!(
                "bulk errors: {}",
                answer.to_string().chars().take(500).collect::<String>()
            );
        }
        i = (i + 5000).min(docs);
    }
    let r = http.post(format!("{url}/{index}/_refresh")).send().await?;
    if !r.status().is_success() {
        bail!("refresh {index}: {}", r.text().await?);
    }
    Ok(())
}

/// The sort values of the last hit: the last `"sort":[...]` array of the body.
fn last_sort(body: &[u8]) -> Option<Vec<Value>> {
    const KEY: &[u8] = b"\"sort\":";
    let at = body.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let rest = &body[at..];
    let end = rest.iter().position(|b| *b == b']')? + 1;
    serde_json::from_slice(&rest[..end]).ok()
}

/// How the raw loop pages through the index.
#[derive(Debug, Clone, Copy)]
enum Mode {
    SearchAfter,
    Pit,
    Scroll,
    /// `backfill = true`: index order inside a point in time, up to its last document.
    Backfill,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "search_after" => Mode::SearchAfter,
            "pit" => Mode::Pit,
            "scroll" => Mode::Scroll,
            "backfill" => Mode::Backfill,
            other => bail!("--mode {other}: expected search_after, pit, scroll or backfill"),
        })
    }
}

const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// The string value of the first `"key":"..."` of the body: the point in time and
/// scroll ids come before the hits, and none of our documents has such a key.
fn first_string(body: &[u8], key: &str) -> Option<String> {
    let needle = format!("\"{key}\":\"");
    let at = body
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let rest = &body[at..];
    let end = rest.iter().position(|b| *b == b'"')?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Counting hits without parsing them: one `"_id":` per hit.
fn count_hits(body: &[u8]) -> u64 {
    body.windows(6).filter(|w| w == b"\"_id\":").count() as u64
}

struct Sender {
    http: reqwest::Client,
    url: String,
}

impl Sender {
    async fn send(&self, request: &Request) -> Result<impl std::ops::Deref<Target = [u8]> + use<>> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self
            .http
            .request(method, format!("{}{}", self.url, request.path_and_query()));
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = builder.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!(
                "{} {}: HTTP {status}: {}",
                request.method.as_str(),
                request.path,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    /// `GET /`, or `GET /_nodes/_local` where a minimal distribution has no root handler.
    async fn flavor(&self) -> Result<Flavor> {
        let root = self.http.get(&self.url).send().await?;
        if root.status().is_success() {
            return Ok(Flavor::from_root_response(&root.bytes().await?)?);
        }
        let body = self.send(&Flavor::local_node_request()).await?;
        Ok(Flavor::from_local_node_response(&body)?.0)
    }
}

async fn raw(url: &str, index: &str, page: usize, mode: Mode) -> Result<()> {
    let sender = Sender {
        // The same requests as the source's: uncompressed answers.
        http: es_endpoint::uncompressed(reqwest::Client::builder())
            .pool_max_idle_per_host(1)
            .build()?,
        url: url.to_owned(),
    };
    let flavor = sender.flavor().await?;
    let spec = QueryConfig::new(index)
        .with_timestamp_field("@timestamp")
        .with_tiebreaker_field("id")
        .with_batch_size(page)
        .build(flavor)?;
    let started = Instant::now();
    let docs = match mode {
        Mode::SearchAfter => search_after(&sender, &spec, None).await?,
        Mode::Pit => {
            let opened = sender.send(&spec.open_pit(KEEP_ALIVE)?).await?;
            let pit = PitId::from_open_response(&opened)?;
            search_after(&sender, &spec, Some(pit)).await?
        }
        Mode::Scroll => scroll(&sender, &spec).await?,
        Mode::Backfill => backfill(&sender, &spec).await?,
    };
    let elapsed = started.elapsed().as_secs_f64();
    println!("SOURCE-BENCH {}", json!({"docs": docs, "elapsed": elapsed}));
    Ok(())
}

/// `search_after` pages until one comes back empty; inside `pit` when given
/// (always sending its newest id), which is closed at the end.
async fn search_after(sender: &Sender, spec: &QuerySpec, mut pit: Option<PitId>) -> Result<u64> {
    let mut cursor: Option<Cursor> = None;
    let mut docs = 0u64;
    loop {
        let request =
            spec.search_after_page(cursor.as_ref(), pit.as_ref().map(|p| (p, KEEP_ALIVE)))?;
        let body = sender.send(&request).await?;
        if pit.is_some()
            && let Some(id) = first_string(&body, "pit_id")
        {
            pit = Some(PitId::new(id));
        }
        let Some(sort) = last_sort(&body) else { break };
        docs += count_hits(&body);
        cursor = Some(Cursor::new(sort));
    }
    if let Some(pit) = pit {
        sender.send(&spec.close_pit(&pit)?).await?;
    }
    Ok(docs)
}

/// A backfill's requests: a point in time, its last document in cursor order, then
/// pages in index order up to it until one comes back empty; closed at the end.
async fn backfill(sender: &Sender, spec: &QuerySpec) -> Result<u64> {
    let opened = sender.send(&spec.open_pit(KEEP_ALIVE)?).await?;
    let mut pit = PitId::from_open_response(&opened)?;
    let last = sender.send(&spec.last_in_pit(&pit, KEEP_ALIVE)?).await?;
    let Some(upper) = last_sort(&last) else {
        sender.send(&spec.close_pit(&pit)?).await?;
        return Ok(0);
    };
    let upper = Cursor::new(upper.into_iter().take(2).collect());
    let mut after: Option<Value> = None;
    let mut docs = 0u64;
    loop {
        let request = spec.backfill_page(&upper, after.as_ref(), &pit, KEEP_ALIVE)?;
        let body = sender.send(&request).await?;
        if let Some(id) = first_string(&body, "pit_id") {
            pit = PitId::new(id);
        }
        let Some(sort) = last_sort(&body) else { break };
        docs += count_hits(&body);
        after = Some(Value::Array(sort.into_iter().take(2).collect()));
    }
    sender.send(&spec.close_pit(&pit)?).await?;
    Ok(docs)
}

/// A scroll (sorted like the connector's) until a page comes back empty, then cleared.
async fn scroll(sender: &Sender, spec: &QuerySpec) -> Result<u64> {
    let mut body = sender.send(&spec.scroll_start(None, KEEP_ALIVE)?).await?;
    let mut docs = 0u64;
    let mut id = None;
    loop {
        if let Some(newest) = first_string(&body, "_scroll_id") {
            id = Some(ScrollId::new(newest));
        }
        let hits = count_hits(&body);
        if hits == 0 {
            break;
        }
        docs += hits;
        let scroll = id.as_ref().context("a scroll page without `_scroll_id`")?;
        body = sender.send(&spec.scroll_next(scroll, KEEP_ALIVE)?).await?;
    }
    if let Some(id) = id {
        sender.send(&spec.clear_scroll(&[id])).await?;
    }
    Ok(docs)
}
