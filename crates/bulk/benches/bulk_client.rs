//! The Rust contenders of `cargo xtask bench bulk`: this crate's
//! [`BulkProcessor`] (`--mode processor`) and the floor (`--mode raw`): the same
//! NDJSON bodies, serialised before the clock starts, replayed over `--workers`
//! keep-alive connections with reqwest, checking only each answer's status and
//! `"errors":false`.
//!
//! It indexes the shared benchmark documents (bench/bulk/README.md: document
//! `i` is the same bytes here, in the Go and in the Python contender) and
//! prints one `BULK-BENCH-RESULT {json}` line. xtask runs it as its own process
//! and measures its CPU time and peak RSS; by hand:
//!
//! ```text
//! cargo bench -p bulk --bench bulk_client -- --url http://127.0.0.1:9200 --docs 100000
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bulk::{BulkProcessorBuilder, BulkRequest, HttpTransport};
use bytes::Bytes;

type Error = Box<dyn std::error::Error + Send + Sync>;

const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
const USAGE: &str = "\
bulk_client --url URL [--docs N] [--doc-size small|large] [--mode processor|raw]
            [--workers W] [--batch B] [--bulk-size BYTES] [--index NAME] [--handshake]
bulk_client --checksum";

/// The shared document generator (bench/bulk/README.md).
struct Docs {
    size: usize,
    filler: Vec<u8>,
}

impl Docs {
    fn new(size: usize) -> Docs {
        Docs {
            size,
            filler: ALPHABET.iter().copied().cycle().take(26 * 90).collect(),
        }
    }

    /// Document `i`, exactly `size` bytes of one-line JSON.
    fn doc(&self, i: u64) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::with_capacity(self.size);
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            r#"{{"@timestamp":{},"level":"{}","service":"svc-{}","message":"request {i} handled by worker {} in {} ms","n":{i},"pad":""#,
            1_700_000_000_000 + i * 1000,
            LEVELS[(i % 4) as usize],
            i % 7,
            i % 16,
            i % 997,
        );
        let pad = self.size.saturating_sub(out.len() + 2);
        let off = (i % 26) as usize;
        out.extend_from_slice(&self.filler[off..off + pad]);
        out.extend_from_slice(b"\"}");
        out
    }
}

fn doc_size(name: &str) -> Result<usize, Error> {
    match name {
        "small" => Ok(200),
        "large" => Ok(2048),
        other => Err(format!("--doc-size must be small or large, not `{other}`").into()),
    }
}

/// CRC-32 (IEEE), to check that every contender generates the same bytes.
fn crc32(mut crc: u32, data: &[u8]) -> u32 {
    crc = !crc;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn checksum() {
    let mut line = String::from("CHECKSUM");
    for name in ["small", "large"] {
        let docs = Docs::new(doc_size(name).unwrap_or(200));
        let crc = (0..10_000).fold(0, |crc, i| crc32(crc32(crc, &docs.doc(i)), b"\n"));
        line.push_str(&format!(" {name}={crc:08x}"));
    }
    println!("{line}");
}

#[derive(Debug)]
struct Args {
    url: String,
    docs: u64,
    size: usize,
    raw: bool,
    workers: usize,
    batch: usize,
    bulk_size: usize,
    index: String,
    handshake: bool,
}

enum Parsed {
    Run(Args),
    Checksum,
    Nothing,
}

fn parse_args() -> Result<Parsed, Error> {
    let mut url = None;
    let mut args = Args {
        url: String::new(),
        docs: 100_000,
        size: 200,
        raw: false,
        workers: 2,
        batch: 1000,
        bulk_size: 5 << 20,
        index: "bench-bulk".into(),
        handshake: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value()?),
            "--docs" => args.docs = value()?.parse()?,
            "--doc-size" => args.size = doc_size(&value()?)?,
            "--mode" => {
                args.raw = match value()?.as_str() {
                    "processor" => false,
                    "raw" => true,
                    other => {
                        return Err(
                            format!("--mode must be processor or raw, not `{other}`").into()
                        );
                    }
                }
            }
            "--workers" => args.workers = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--bulk-size" => args.bulk_size = value()?.parse()?,
            "--index" => args.index = value()?,
            "--handshake" => args.handshake = true,
            "--checksum" => return Ok(Parsed::Checksum),
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`\n{USAGE}").into()),
        }
    }
    Ok(match url {
        Some(url) => Parsed::Run(Args {
            url: url.trim_end_matches('/').to_owned(),
            ..args
        }),
        None => Parsed::Nothing,
    })
}

/// What a timed run did.
struct Outcome {
    ok: u64,
    error: String,
}

/// The action line this crate's `BulkRequest::index(..).id(..)` writes.
fn raw_bodies(args: &Args) -> Vec<(Bytes, u64)> {
    let docs = Docs::new(args.size);
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    let mut count = 0;
    for i in 0..args.docs {
        let action = format!(
            "{{\"index\":{{\"_index\":\"{}\",\"_id\":\"{i}\"}}}}\n",
            args.index
        );
        let doc = docs.doc(i);
        let len = action.len() + doc.len() + 1;
        if count > 0 && (count == args.batch || body.len() + len > args.bulk_size) {
            bodies.push((Bytes::from(std::mem::take(&mut body)), count as u64));
            count = 0;
        }
        body.extend_from_slice(action.as_bytes());
        body.extend_from_slice(&doc);
        body.push(b'\n');
        count += 1;
    }
    if count > 0 {
        bodies.push((Bytes::from(body), count as u64));
    }
    bodies
}

async fn run_raw(args: &Args, bodies: Arc<Vec<(Bytes, u64)>>) -> Result<Outcome, Error> {
    // The same requests as the processor's transport: uncompressed answers.
    let client = es_endpoint::uncompressed(reqwest::Client::builder())
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()?;
    let url = format!("{}/_bulk", args.url);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.workers {
        let (client, url, next, bodies) =
            (client.clone(), url.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut error) = (0, String::new());
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((body, count)) = bodies.get(k) else {
                    break;
                };
                let resp = client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await;
                let answer = match resp {
                    Ok(resp) => {
                        let status = resp.status();
                        resp.bytes().await.map(|b| (status, b))
                    }
                    Err(e) => Err(e),
                };
                match answer {
                    // The floor reads no items: a 200 whose head says `"errors":false`.
                    Ok((status, b)) if status.is_success() && head_says_no_errors(&b) => {
                        ok += count
                    }
                    Ok((status, b)) => {
                        error = format!(
                            "HTTP {status}: {}",
                            String::from_utf8_lossy(&b[..b.len().min(200)])
                        )
                    }
                    Err(e) => error = e.to_string(),
                }
            }
            (ok, error)
        }));
    }
    let mut outcome = Outcome {
        ok: 0,
        error: String::new(),
    };
    for task in tasks {
        let (ok, error) = task.await?;
        outcome.ok += ok;
        if outcome.error.is_empty() {
            outcome.error = error;
        }
    }
    Ok(outcome)
}

fn head_says_no_errors(body: &[u8]) -> bool {
    const NO_ERRORS: &[u8] = b"\"errors\":false";
    let head = &body[..body.len().min(128)];
    head.windows(NO_ERRORS.len()).any(|w| w == NO_ERRORS)
}

async fn run_processor(args: &Args) -> Result<Outcome, Error> {
    let docs = Docs::new(args.size);
    let processor = BulkProcessorBuilder::new(HttpTransport::new(&args.url)?)
        .name("bench")
        .workers(args.workers)
        .bulk_actions(args.batch)
        .bulk_size(args.bulk_size)
        .build()?;
    for i in 0..args.docs {
        let request = BulkRequest::index(args.index.as_str())
            .id(i.to_string())
            .doc_json(docs.doc(i));
        processor
            .add(request)
            .await
            .map_err(|e| format!("add: {e}"))?;
    }
    processor.close().await.map_err(|e| format!("close: {e}"))?;
    let stats = processor.stats();
    let error = if stats.failed > 0 {
        format!("{} requests failed for good", stats.failed)
    } else {
        String::new()
    };
    Ok(Outcome {
        ok: stats.succeeded,
        error,
    })
}

fn run(args: Args) -> Result<(), Error> {
    // Untimed set-up: the floor's bodies.
    let bodies = args.raw.then(|| Arc::new(raw_bodies(&args)));
    let stdin = std::io::stdin();
    if args.handshake {
        println!("BULK-BENCH-READY");
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        match bodies {
            Some(bodies) => run_raw(&args, bodies).await,
            None => run_processor(&args).await,
        }
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    drop(runtime);
    let result = serde_json::json!({
        "docs": args.docs,
        "ok": outcome.ok,
        "failed": args.docs.saturating_sub(outcome.ok),
        "elapsed": elapsed,
        "error": outcome.error,
    });
    println!("BULK-BENCH-RESULT {result}");
    if args.handshake {
        // Stay alive until the parent has read our CPU time and peak RSS.
        let _ = stdin.lock().read_to_end(&mut Vec::new());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let outcome = match parse_args() {
        Ok(Parsed::Run(args)) => run(args),
        Ok(Parsed::Checksum) => {
            checksum();
            Ok(())
        }
        Ok(Parsed::Nothing) => {
            eprintln!(
                "bulk_client: no --url: nothing to measure. Run `cargo xtask bench bulk`, or:\n{USAGE}"
            );
            Ok(())
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulk_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
