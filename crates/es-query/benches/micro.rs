//! Micro-benchmark of reading a search page of 1,000 hits (the source's every
//! page). `cargo bench -p es-query --bench micro`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use es_query::SearchPage;
use serde_json::json;

fn page(n: usize) -> Vec<u8> {
    let hits: Vec<_> = (0..n)
        .map(|i| {
            json!({"_index": "logs-2024.05.01", "_id": format!("id-{i}"), "_score": null,
                "_source": {"@timestamp": "2024-05-01T10:00:00.000Z", "level": "INFO",
                    "service": "checkout", "message": "x".repeat(110)},
                "sort": [1_714_557_600_000_i64 + i as i64, i]})
        })
        .collect();
    json!({"took": 5, "timed_out": false, "pit_id": "abc",
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": n, "relation": "eq"}, "max_score": null, "hits": hits}})
    .to_string()
    .into_bytes()
}

fn pages(c: &mut Criterion) {
    let body = page(1_000);
    let mut group = c.benchmark_group("es-query/page");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("1000 hits", |b| b.iter(|| SearchPage::parse(&body)));
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
