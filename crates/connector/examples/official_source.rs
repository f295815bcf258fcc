//! An `ElasticsearchSource` built from the official `elasticsearch` client:
//! writes 500 documents (five per timestamp) into a fresh index, reads them all
//! back batch by batch, acknowledging each, and deletes the index.
//!
//! `ES_URL=http://127.0.0.1:9200 cargo run -p connector --example official_source`
//! (`ES_URL` defaults to `http://localhost:9200`).
#![allow(clippy::print_stdout)]

use connector::{ConnectorConfig, ElasticsearchSource};
use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport;
use elasticsearch::indices::{IndicesCreateParts, IndicesDeleteParts};
use elasticsearch::params::Refresh;
use elasticsearch::{BulkOperation, BulkParts};
use serde_json::{Value, json};

const INDEX: &str = "connector-official-source-example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "http://localhost:9200".to_owned());
    let client = Elasticsearch::new(Transport::single_node(&url)?);

    // Some data, written with the client's own typed APIs.
    let _ = client
        .indices()
        .delete(IndicesDeleteParts::Index(&[INDEX]))
        .send()
        .await?;
    client
        .indices()
        .create(IndicesCreateParts::Index(INDEX))
        .body(json!({"mappings": {"properties": {
            "@timestamp": {"type": "date"}, "event_id": {"type": "keyword"}}}}))
        .send()
        .await?
        .error_for_status_code()?;
    let ops: Vec<BulkOperation<Value>> = (0..500)
        .map(|i| {
            let doc = json!({"@timestamp": 1_700_000_000_000_i64 + (i / 5) * 1000, "event_id": format!("e{i:04}")});
            BulkOperation::index(doc).id(i.to_string()).into()
        })
        .collect();
    client
        .bulk(BulkParts::Index(INDEX))
        .refresh(Refresh::True)
        .body(ops)
        .send()
        .await?
        .error_for_status_code()?;

    // The documented configuration; `url` names the cluster for the state and
    // the logs, the searches go through `client`.
    let config = ConnectorConfig::from_toml(&format!(
        "[plugin_config]\nurl = \"{url}\"\nindex = \"{INDEX}\"\ntiebreaker_field = \"event_id\"\nbatch_size = 200\n"
    ))?
    .plugin_config;
    let mut source =
        ElasticsearchSource::with_official_client(1, client.clone(), config.validate()?);
    source.open().await?;
    println!("reading {INDEX} in mode {:?}", source.read_mode());
    let mut total = 0;
    loop {
        let batch = source.poll_batch().await?;
        let Some(ack) = batch.ack.clone() else { break };
        total += batch.len();
        println!(
            "batch of {} (first {:?})",
            batch.len(),
            batch.messages.first().map(|m| m.headers.get("es_id"))
        );
        // Deliver the batch somewhere, then acknowledge it: the cursor moves.
        source.commit(&ack).await?;
    }
    println!("read {total} documents");
    source.close().await?;
    client
        .indices()
        .delete(IndicesDeleteParts::Index(&[INDEX]))
        .send()
        .await?;
    Ok(())
}
