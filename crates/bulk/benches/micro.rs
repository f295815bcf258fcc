//! Micro-benchmarks of the bulk processor's hot paths: building a request (the
//! document serialised once, its NDJSON size counted) and reading a `_bulk`
//! answer of 1,000 items. `cargo bench -p bulk --bench micro`;
//! `cargo xtask bench micro` tabulates every crate's.

use bulk::{BulkRequest, RetryPolicy, decide};
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

criterion_group!(benches, requests, answers);
criterion_main!(benches);
