//! Micro-benchmarks of a state document's encoding and decoding (every save and
//! load of every backend). `cargo bench -p state-core --bench micro`.

use criterion::{Criterion, criterion_group, criterion_main};
use state_core::ConnectorState;

fn state() -> ConnectorState {
    let mut state = ConnectorState::new("bench");
    state.data.total_documents_fetched = 12_345_678;
    state.data.last_document_id = Some("doc-12345678".into());
    state.data.extra.insert(
        "cursor".into(),
        serde_json::json!({"sort": [1_714_557_600_000_i64, "doc-12345678"]}),
    );
    state
}

fn documents(c: &mut Criterion) {
    let state = state();
    let bytes = state.to_json();
    let mut group = c.benchmark_group("state-core/document");
    group.bench_function("encode", |b| b.iter(|| state.to_json()));
    group.bench_function("decode", |b| {
        b.iter(|| ConnectorState::from_slice(&bytes, "bench", "bench"))
    });
    group.finish();
}

criterion_group!(benches, documents);
criterion_main!(benches);
