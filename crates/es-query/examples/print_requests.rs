//! Prints every request of an incremental read for a configuration, as JSON lines.
//!
//! `cargo run -p es-query --example print_requests -- [CONFIG_JSON] [GET_/_ANSWER_JSON]`
//!
//! Without arguments it uses a sample configuration and an Elasticsearch 8.11 server.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use es_query::{Cursor, Flavor, PitId, QueryConfig, Request, ScrollId};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let config: QueryConfig = match args.next() {
        Some(text) => serde_json::from_str(&text)?,
        None => serde_json::from_value(serde_json::json!({
            "index": "logs-*",
            "timestamp_field": "@timestamp",
            "tiebreaker_field": "event_id",
            "query": {"term": {"service": "api"}},
            "batch_size": 500,
            "until": "now-30s",
        }))?,
    };
    let flavor = match args.next() {
        Some(root) => Flavor::from_root_response(root.as_bytes())?,
        None => Flavor::Elasticsearch {
            major: 8,
            minor: 11,
        },
    };
    let spec = config.build(flavor)?;
    let keep_alive = Duration::from_secs(60);
    // What a cursor looks like after the first page: the last hit's sort values.
    let cursor = Cursor::new(vec![1705314600000_i64.into(), "e2".into()]);
    let cursor = match spec.tiebreaker() {
        es_query::Tiebreaker::ShardDoc => Cursor::new(vec![1705314600000_i64.into(), 7.into()]),
        es_query::Tiebreaker::Field(_) => cursor,
    };

    let show = |label: &str, request: Result<Request, es_query::QueryError>| match request {
        Ok(request) => println!("{label}: {}", serde_json::json!(request)),
        Err(error) => println!("{label}: not available: {error}"),
    };
    println!("# {flavor}, tiebreaker {:?}", spec.tiebreaker());
    show("first page", spec.search_after_page(None, None));
    show("next page", spec.search_after_page(Some(&cursor), None));
    let pit = PitId::new("PIT_ID_FROM_OPEN_ANSWER");
    show("open pit", spec.open_pit(keep_alive));
    show(
        "pit page",
        spec.search_after_page(Some(&cursor), Some((&pit, keep_alive))),
    );
    show("close pit", spec.close_pit(&pit));
    show("scroll start", spec.scroll_start(Some(&cursor), keep_alive));
    let scroll = ScrollId::new("SCROLL_ID_FROM_ANSWER");
    show("scroll next", spec.scroll_next(&scroll, keep_alive));
    show("clear scroll", Ok(spec.clear_scroll(&[scroll])));
    show("count", spec.count(Some(&cursor)));
    Ok(())
}
