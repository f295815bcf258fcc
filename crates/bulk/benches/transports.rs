//! The cost of one `_bulk` call through each transport: `HttpTransport`
//! (reqwest, the default) and `ElasticsearchTransport` (the official client,
//! over the same reqwest), both against the in-process null bulk server of
//! `bulk::testkit`, one keep-alive connection, a small body (1 and 10
//! documents). What differs is only what each transport does per call.
//!
//! `cargo bench -p bulk --features testkit --bench transports`
//! (figures in docs/benchmarks/official-client.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulk::testkit::NullBulkServer;
use bulk::{ElasticsearchTransport, HttpTransport, Transport};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use elasticsearch::Elasticsearch;
use serde_json::json;

/// `docs` index actions with ids, as the processor encodes them.
fn body(docs: usize) -> Bytes {
    let mut out = String::new();
    for i in 0..docs {
        out.push_str(&json!({"index": {"_index": "logs", "_id": i.to_string()}}).to_string());
        out.push('\n');
        out.push_str(
            &json!({"@timestamp": "2024-05-01T10:00:00.000Z", "level": "INFO", "n": i}).to_string(),
        );
        out.push('\n');
    }
    Bytes::from(out)
}

fn transports(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln_and_skip(&e),
    };
    let server = match runtime.block_on(NullBulkServer::start()) {
        Ok(s) => s,
        Err(e) => return eprintln_and_skip(&e),
    };
    let url = server.url();
    let reqwest_transport: Arc<dyn Transport> = match HttpTransport::new(&url) {
        Ok(t) => Arc::new(t),
        Err(e) => return eprintln_and_skip(&e),
    };
    let official: Arc<dyn Transport> =
        match elasticsearch::http::transport::Transport::single_node(&url) {
            Ok(t) => Arc::new(ElasticsearchTransport::new(Elasticsearch::new(t))),
            Err(e) => return eprintln_and_skip(&e),
        };
    for docs in [1, 10] {
        let payload = body(docs);
        let mut group = c.benchmark_group(format!("bulk/transport/{docs}-doc _bulk"));
        group.throughput(Throughput::Elements(1));
        group.measurement_time(Duration::from_secs(5));
        for (name, transport) in [
            ("reqwest (HttpTransport)", &reqwest_transport),
            ("official client (ElasticsearchTransport)", &official),
        ] {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let answer = transport.bulk(payload.clone()).await;
                            std::hint::black_box(answer.map(|a| a.status).ok());
                        }
                        start.elapsed()
                    })
                })
            });
        }
        group.finish();
    }
    drop(server);
}

#[allow(clippy::print_stderr)]
fn eprintln_and_skip(e: &dyn std::fmt::Display) {
    eprintln!("transports bench not run: {e}");
}

criterion_group!(benches, transports);
criterion_main!(benches);
