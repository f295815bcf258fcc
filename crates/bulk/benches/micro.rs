//! Micro-benchmarks of the bulk processor's hot paths: building a request (the
//! document serialised once, its NDJSON size counted), reading a `_bulk`
//! answer of 1,000 items, and the whole processor (`add` to the decided answer)
//! over a transport that answers at once. `cargo bench -p bulk --bench micro`;
//! `cargo xtask bench micro` tabulates every crate's.

use async_trait::async_trait;
use bulk::{
    BulkProcessorBuilder, BulkRequest, RetryPolicy, Transport, TransportError, TransportResponse,
    decide,
};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

/// A log document of about `size` bytes of JSON.
fn document(size: usize) -> serde_json::Value {
    json!({
        "@timestamp": "2024-05-01T10:00:00.000Z",
        "level": "INFO",
        "service": "checkout",
        "message": "x".repeat(size.saturating_sub(90)),
    })
}

/// A `_bulk` answer of `n` successful index items.
fn answer(n: usize) -> Bytes {
    let items: Vec<_> = (0..n)
        .map(|i| {
            json!({"index": {"_index": "logs", "_id": i.to_string(), "_version": 1,
                "result": "created", "_seq_no": i, "_primary_term": 1, "status": 201,
                "_shards": {"total": 2, "successful": 1, "failed": 0}}})
        })
        .collect();
    Bytes::from(json!({"took": 30, "errors": false, "items": items}).to_string())
}

fn requests(c: &mut Criterion) {
    for size in [200, 2048] {
        let doc = document(size);
        let mut group = c.benchmark_group(format!("bulk/request/{size}B"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("index with id", |b| {
            b.iter(|| BulkRequest::index("logs").id("42").doc(&doc))
        });
        group.finish();
    }
}

fn answers(c: &mut Criterion) {
    let body = answer(1_000);
    let policy = RetryPolicy::default();
    let mut group = c.benchmark_group("bulk/answer");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("1000 items", |b| {
        b.iter_batched(
            || body.clone(),
            |body| decide(200, &body, 1_000, &policy),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Answers every call with the same canned answer, at once: what is left to
/// measure is the processor's own work (encoding, batching, building the body,
/// reading the answer), without HTTP.
#[derive(Debug)]
struct CannedTransport(Bytes);

#[async_trait]
impl Transport for CannedTransport {
    async fn bulk(&self, body: Bytes) -> Result<TransportResponse, TransportError> {
        drop(body);
        Ok(TransportResponse {
            status: 200,
            body: self.0.clone(),
        })
    }
}

/// The CPU time of the calling thread (Linux: `/proc/thread-self/schedstat`,
/// in nanoseconds), or, where that cannot be read, the wall clock.
enum ThreadCpu {
    Nanos(u64),
    Wall(std::time::Instant),
}

impl ThreadCpu {
    fn now() -> Self {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map_or_else(
                || ThreadCpu::Wall(std::time::Instant::now()),
                ThreadCpu::Nanos,
            )
    }

    fn elapsed(&self) -> std::time::Duration {
        match (self, ThreadCpu::now()) {
            (ThreadCpu::Nanos(from), ThreadCpu::Nanos(to)) => {
                std::time::Duration::from_nanos(to.saturating_sub(*from))
            }
            (ThreadCpu::Wall(from), _) => from.elapsed(),
            (ThreadCpu::Nanos(_), ThreadCpu::Wall(_)) => std::time::Duration::ZERO,
        }
    }
}

/// 10,000 pre-serialised documents through a processor (batches of 1,000, two
/// workers) on a single-threaded runtime. The time reported is that thread's
/// CPU time, which is all of the processor's: on a shared machine, the wall
/// clock would mostly measure the other processes.
// A bench whose processor fails measures nothing: it stops there.
#[allow(clippy::panic)]
fn processor(c: &mut Criterion) {
    const DOCS: usize = 10_000;
    const BATCH: usize = 1_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = answer(BATCH);
    for size in [200, 2048] {
        let text = document(size).to_string();
        let docs: Vec<Bytes> = (0..DOCS).map(|_| Bytes::from(text.clone())).collect();
        let ids: Vec<String> = (0..DOCS).map(|i| i.to_string()).collect();
        let mut group = c.benchmark_group(format!("bulk/processor/{size}B"));
        group.throughput(Throughput::Elements(DOCS as u64));
        group.sample_size(20);
        group.bench_function("10000 index with id", |b| {
            b.iter_custom(|iters| {
                let started = ThreadCpu::now();
                for _ in 0..iters {
                    runtime.block_on(async {
                        let processor = BulkProcessorBuilder::new(CannedTransport(answer.clone()))
                            .workers(2)
                            .bulk_actions(BATCH)
                            .build()
                            .unwrap_or_else(|e| panic!("{e}"));
                        for (doc, id) in docs.iter().zip(&ids) {
                            let request = BulkRequest::index("logs")
                                .id(id.as_str())
                                .doc_json(doc.clone());
                            processor
                                .add(request)
                                .await
                                .unwrap_or_else(|e| panic!("{e}"));
                        }
                        processor.close().await.unwrap_or_else(|e| panic!("{e}"));
                        assert_eq!(processor.stats().succeeded, DOCS as u64);
                    });
                }
                started.elapsed()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, requests, answers, processor);
criterion_main!(benches);
