//! es-query's requests run through the official `elasticsearch` client: detects
//! the server, writes 12 documents (three per timestamp) into a fresh index,
//! reads them back page by page inside a point in time (OpenSearch's
//! `/_search/point_in_time` included, which the client has no typed API for),
//! then closes it and deletes the index.
//!
//! `ES_URL=http://127.0.0.1:9200 cargo run -p es-query --example official_query`
//! (`ES_URL` defaults to `http://localhost:9200`).
#![allow(clippy::print_stdout)]

use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport;
use es_query::{Cursor, Flavor, Method, PitId, QueryConfig, Request, SearchPage, parse_close};
use serde_json::json;

const INDEX: &str = "es-query-official-client-example";

fn request(method: Method, path: &str, body: Option<serde_json::Value>) -> Request {
    Request {
        method,
        path: path.to_owned(),
        query: Vec::new(),
        body,
    }
}

async fn ok(
    client: &Elasticsearch,
    r: Request,
) -> Result<bytes::Bytes, Box<dyn std::error::Error>> {
    let answer = r.send(client).await?;
    if !answer.is_success() {
        return Err(format!(
            "{} {}: HTTP {}: {}",
            r.method.as_str(),
            r.path,
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
        .into());
    }
    Ok(answer.body)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "http://localhost:9200".to_owned());
    let client = Elasticsearch::new(Transport::single_node(&url)?);

    let flavor = Flavor::from_root_response(&ok(&client, request(Method::Get, "/", None)).await?)?;
    println!("{url}: {flavor}");

    let _ = request(Method::Delete, &format!("/{INDEX}"), None)
        .send(&client)
        .await?;
    let created = client
        .indices()
        .create(elasticsearch::indices::IndicesCreateParts::Index(INDEX))
        .body(json!({"mappings": {"properties": {
            "@timestamp": {"type": "date"}, "event_id": {"type": "keyword"}}}}))
        .send()
        .await?;
    if !created.status_code().is_success() {
        return Err(format!("creating {INDEX}: HTTP {}", created.status_code()).into());
    }
    for i in 0..12_i64 {
        let doc = json!({"@timestamp": 1_700_000_000_000_i64 + (i / 3) * 1000, "event_id": format!("e{i:02}")});
        let mut put = request(Method::Post, &format!("/{INDEX}/_doc/{i}"), Some(doc));
        put.query.push(("refresh".into(), "wait_for".into()));
        ok(&client, put).await?;
    }

    let spec = QueryConfig::new(INDEX)
        .with_tiebreaker_field("event_id")
        .with_batch_size(5)
        .build(flavor)?;
    let keep_alive = Duration::from_secs(60);
    let open = spec.open_pit(keep_alive)?;
    println!(
        "opening a point in time: {} {}",
        open.method.as_str(),
        open.path_and_query()
    );
    let mut pit = PitId::from_open_response(&ok(&client, open).await?)?;

    let mut cursor: Option<Cursor> = None;
    loop {
        let body = ok(
            &client,
            spec.search_after_page(cursor.as_ref(), Some((&pit, keep_alive)))?,
        )
        .await?;
        let page = SearchPage::parse(&body)?;
        if let Some(newer) = page.pit_id.clone() {
            pit = newer;
        }
        if page.hits.is_empty() {
            break;
        }
        let ids: Vec<&str> = page.hits.iter().map(|h| h.id.as_str()).collect();
        println!("page: {ids:?}");
        cursor = page.last_cursor();
    }

    let close = spec.close_pit(&pit)?;
    println!("closing it: {} {}", close.method.as_str(), close.path);
    println!("freed {}", parse_close(&ok(&client, close).await?)?);
    ok(&client, request(Method::Delete, &format!("/{INDEX}"), None)).await?;
    Ok(())
}
