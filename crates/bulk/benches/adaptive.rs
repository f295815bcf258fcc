//! The client of `cargo xtask bench adaptive`: this crate's [`BulkProcessor`]
//! indexing `--docs` documents as fast as it can add them, with `--mode fixed`
//! (`--max` workers, always) or `--mode adaptive` (between `--min` and `--max`
//! calls in flight, [`AdaptiveConcurrency`]), against a cluster whose write
//! queue is small, so that it pushes back with 429.
//!
//! Prints one `ADAPTIVE-BENCH-RESULT {json}` line: documents acknowledged and
//! failed, seconds, the 429s it met (whole calls and items), retries, the limit
//! at the end and the lowest and highest seen (sampled every 5 ms), its own
//! CPU seconds and peak RSS. By hand:
//!
//! ```text
//! cargo bench -p bulk --bench adaptive -- --url http://127.0.0.1:9200 --mode adaptive
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulk::{AdaptiveConcurrency, Backoff, BulkProcessor, BulkProcessorBuilder, BulkRequest};
use bulk::{HttpTransport, JitterRng};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "\
adaptive --url URL [--index NAME] [--docs N] [--mode fixed|adaptive] [--min N] [--max N]
         [--batch B] [--seed S]";

#[derive(Debug)]
struct Args {
    url: String,
    index: String,
    docs: u64,
    adaptive: bool,
    min: usize,
    max: usize,
    batch: usize,
    seed: u64,
}

fn parse_args() -> Result<Option<Args>, Error> {
    let mut url = None;
    let mut args = Args {
        url: String::new(),
        index: "bench-adaptive".into(),
        docs: 100_000,
        adaptive: true,
        min: 1,
        max: 8,
        batch: 500,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value()?),
            "--index" => args.index = value()?,
            "--docs" => args.docs = value()?.parse()?,
            "--mode" => {
                args.adaptive = match value()?.as_str() {
                    "adaptive" => true,
                    "fixed" => false,
                    other => {
                        return Err(
                            format!("--mode must be fixed or adaptive, not `{other}`").into()
                        );
                    }
                }
            }
            "--min" => args.min = value()?.parse()?,
            "--max" => args.max = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--seed" => args.seed = value()?.parse()?,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`\n{USAGE}").into()),
        }
    }
    Ok(url.map(|url| Args {
        url: url.trim_end_matches('/').to_owned(),
        ..args
    }))
}

/// Document `i`: about 200 bytes of log-like JSON.
fn doc(i: u64) -> String {
    const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
    format!(
        r#"{{"@timestamp":{},"level":"{}","service":"svc-{}","message":"request {i} handled by worker {} in {} ms","n":{i},"pad":"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"}}"#,
        1_700_000_000_000 + i * 1000,
        LEVELS[(i % 4) as usize],
        i % 7,
        i % 16,
        i % 997
    )
}

/// utime + stime of this process in clock ticks, and the ticks per second.
fn cpu_seconds() -> f64 {
    let ticks = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field(11) + field(12)) as f64 / ticks
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The lowest and highest limit seen, sampled until `stop`.
async fn sample_limits(
    processor: Arc<BulkProcessor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, u64) {
    let first = processor.stats().concurrency_limit;
    let (mut low, mut high) = (first, first);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {
                let limit = processor.stats().concurrency_limit;
                low = low.min(limit);
                high = high.max(limit);
            }
        }
    }
    (low, high)
}

async fn run(args: Args) -> Result<(), Error> {
    let mut builder = BulkProcessorBuilder::new(HttpTransport::new(&args.url)?)
        .name(if args.adaptive { "adaptive" } else { "fixed" })
        .bulk_actions(args.batch)
        // Patient enough that nothing gives up under sustained pushback.
        .backoff(Backoff {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            max_retries: 1000,
            max_elapsed: Duration::from_secs(1800),
            ..Backoff::default()
        })
        .jitter_seed(JitterRng::seeded(args.seed).unit().to_bits());
    builder = if args.adaptive {
        builder.adaptive(AdaptiveConcurrency::between(args.min, args.max))
    } else {
        builder.workers(args.max)
    };
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(String::new()));
    let (count, keep) = (failed.clone(), first_error.clone());
    let processor = Arc::new(
        builder
            .on_failure(move |f| {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut e = keep.lock().unwrap_or_else(|p| p.into_inner());
                if e.is_empty() {
                    *e = f.error;
                }
            })
            .build()?,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample_limits(processor.clone(), stop_rx));
    let cpu_start = cpu_seconds();
    let started = Instant::now();
    for i in 0..args.docs {
        let request = BulkRequest::index(args.index.as_str())
            .id(i.to_string())
            .doc_json(doc(i));
        processor.add(request).await?;
    }
    processor.close().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    stop_tx.send_replace(true);
    let (low, high) = sampler.await?;
    let s = processor.stats();
    let result = serde_json::json!({
        "mode": if args.adaptive { "adaptive" } else { "fixed" },
        "ok": s.succeeded,
        "failed": failed.load(std::sync::atomic::Ordering::Relaxed),
        "elapsed": elapsed,
        "cpu": cpu,
        "rss_kib": peak_rss_kib(),
        "bulk_calls": s.bulk_calls,
        "calls_429": s.calls_rejected_429,
        "items_429": s.items_rejected_429,
        "retried": s.retried,
        "limit_final": s.concurrency_limit,
        "limit_min": low,
        "limit_max": high,
        "decreases": s.concurrency_decreases,
        "increases": s.concurrency_increases,
        "error": first_error.lock().map(|e| e.clone()).unwrap_or_default(),
    });
    println!("ADAPTIVE-BENCH-RESULT {result}");
    Ok(())
}

fn main() -> Result<(), Error> {
    let Some(args) = parse_args()? else {
        eprintln!("{USAGE}");
        return Ok(());
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}
