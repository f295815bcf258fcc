//! Micro-benchmark of building a message from a hit (its deterministic id, its
//! headers, the `_source` kept as raw JSON). `cargo bench -p connector --bench micro`.

#![allow(clippy::panic)]

use connector::Message;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn messages(c: &mut Criterion) {
    let source = format!(
        "{{\"@timestamp\":\"2024-05-01T10:00:00.000Z\",\"level\":\"INFO\",\"message\":\"{}\"}}",
        "x".repeat(150)
    );
    let payload =
        serde_json::value::RawValue::from_string(source).unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("connector/message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("from a hit", |b| {
        b.iter(|| {
            Message::new(
                "logs-2024.05.01",
                "id-42",
                Some(42),
                Some("2024-05-01T10:00:00.000Z".into()),
                payload.clone(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, messages);
criterion_main!(benches);
