//! Helper of `cargo xtask bench source` (not a Criterion bench):
//!
//! - `seed --url U --index I --docs N`: creates index `I` and indexes `N` small
//!   documents (`id` keyword, `@timestamp` date, `n` long, a short message).
//! - `raw --url U --index I --page P`: the floor. A plain `search_after` loop on
//!   `[@timestamp, id]` building each request with the same `es-query` builder as
//!   the connector (same bodies as `pagination = "cursor"`), sent over one
//!   keep-alive connection, reading only the sort values of the last hit.
//!   Prints `SOURCE-BENCH {"docs":N,"elapsed":S}`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use anyhow::{Context, Result, bail};
use es_query::{Cursor, Flavor, Method, QueryConfig, Request};
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
            )
            .await
        }
        Some("raw") => {
            raw(
                &arg(&args, "--url")?,
                &arg(&args, "--index")?,
                arg(&args, "--page")?.parse()?,
            )
            .await
        }
        _ => {
            eprintln!("source_scan: run by `cargo xtask bench source` (modes: seed, raw)");
            Ok(())
        }
    }
}

async fn seed(url: &str, index: &str, docs: u64) -> Result<()> {
    let http = reqwest::Client::new();
    let _ = http.delete(format!("{url}/{index}")).send().await?;
    let r = http
        .put(format!("{url}/{index}"))
        .json(&json!({"mappings": {"properties": {
            "id": {"type": "keyword"}, "@timestamp": {"type": "date"}, "n": {"type": "long"},
            "level": {"type": "keyword"}, "message": {"type": "text"}}}}))
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
    http.post(format!("{url}/{index}/_refresh")).send().await?;
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

async fn raw(url: &str, index: &str, page: usize) -> Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let send = |request: &Request| {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = http.request(method, format!("{url}{}", request.path_and_query()));
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        builder.send()
    };
    let root = http.get(url).send().await?.bytes().await?;
    let flavor = Flavor::from_root_response(&root)?;
    let spec = QueryConfig::new(index)
        .with_timestamp_field("@timestamp")
        .with_tiebreaker_field("id")
        .with_batch_size(page)
        .build(flavor)?;
    let started = Instant::now();
    let mut cursor: Option<Cursor> = None;
    let mut docs = 0u64;
    loop {
        let request = spec.search_after_page(cursor.as_ref(), None)?;
        let response = send(&request).await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!("search: HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        let Some(sort) = last_sort(&body) else { break };
        // Counting hits without parsing them: one `"_id":` per hit.
        docs += body.windows(6).filter(|w| w == b"\"_id\":").count() as u64;
        cursor = Some(Cursor::new(sort));
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("SOURCE-BENCH {}", json!({"docs": docs, "elapsed": elapsed}));
    Ok(())
}
