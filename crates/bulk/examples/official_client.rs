//! The bulk processor as a service of the official `elasticsearch` client:
//! indexes 1,000 documents into `bulk-official-client-example` and prints the stats.
//!
//! `ES_URL=http://127.0.0.1:9200 cargo run -p bulk --example official_client`
//! (`ES_URL` defaults to `http://localhost:9200`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use bulk::{BulkProcessorExt, BulkRequest};
use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport;
use serde_json::json;

const INDEX: &str = "bulk-official-client-example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "http://localhost:9200".to_owned());
    // The client a Rust user of Elasticsearch already holds (a cloud id,
    // credentials, certificates, a node pool: whatever its builder was given).
    let client = Elasticsearch::new(Transport::single_node(&url)?);

    // olivere/elastic: client.BulkProcessor().Name("…").Workers(2).Do(ctx)
    let processor = client
        .bulk_processor()
        .name("official-client-example")
        .workers(2)
        .bulk_actions(250)
        .on_failure(|failed| eprintln!("failed: {} ({:?})", failed.error, failed.kind))
        .build()?;

    for i in 0..1000_u32 {
        let doc = json!({"@timestamp": "2024-01-15T10:30:00Z", "n": i, "via": "official client"});
        processor
            .add(BulkRequest::index(INDEX).id(i.to_string()).doc(&doc))
            .await?;
    }
    processor.flush().await?;
    let stats = processor.stats();
    processor.close().await?;
    println!(
        "{url}: {} succeeded ({} indexed), {} failed, {} _bulk calls, {} bytes sent",
        stats.succeeded, stats.indexed, stats.failed, stats.bulk_calls, stats.bytes_sent
    );
    if stats.failed > 0 {
        return Err(format!("{} documents failed", stats.failed).into());
    }
    Ok(())
}
