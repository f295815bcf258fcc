//! Parsing real answers: captured from an OpenSearch 3.x test server (osmem) or
//! written from the Elasticsearch REST API documentation (see fixtures/README.md).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use es_query::{
    Cursor, Flavor, PitId, QueryConfig, QueryError, SearchPage, TimestampKind, parse_close,
    parse_count,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn flavor_from_root_answers() {
    assert_eq!(
        Flavor::from_root_response(&fixture("root_opensearch.json")).unwrap(),
        Flavor::OpenSearch { major: 3, minor: 8 }
    );
    assert_eq!(
        Flavor::from_root_response(&fixture("root_elasticsearch_8.json")).unwrap(),
        Flavor::Elasticsearch {
            major: 8,
            minor: 11
        }
    );
    let old = Flavor::from_root_response(&fixture("root_elasticsearch_7_9.json")).unwrap();
    assert!(!old.supports_pit());
    let err = Flavor::from_root_response(&fixture("html_502.html")).unwrap_err();
    assert!(matches!(err, QueryError::Malformed { .. }), "{err:?}");
}

#[test]
fn search_after_page_keeps_sort_values_and_raw_sources() {
    let page = SearchPage::parse(&fixture("search_after_page.json")).unwrap();
    assert_eq!(page.hits.len(), 2);
    let hit = &page.hits[0];
    assert_eq!(hit.id, "a2");
    assert!(hit.index.ends_with("-millis"), "{}", hit.index);
    assert_eq!((hit.seq_no, hit.primary_term), (Some(1), Some(1)));
    assert_eq!(
        hit.source.as_ref().unwrap().get(),
        r#"{"@timestamp":"2024-01-15T10:30:00.000Z","event_id":"e2","msg":"same ts"}"#
    );
    // The second document was indexed with an epoch-millis number: same sort units.
    assert_eq!(
        page.last_cursor().unwrap(),
        Cursor::new(vec![1705314660000_i64.into(), "e3".into()])
    );
    assert_eq!(
        hit.timestamp(TimestampKind::Date).unwrap().to_rfc3339(),
        "2024-01-15T10:30:00+00:00"
    );
    assert!(page.pit_id.is_none() && page.scroll_id.is_none());
}

#[test]
fn empty_page_has_no_cursor() {
    let page = SearchPage::parse(&fixture("empty_page.json")).unwrap();
    assert!(page.hits.is_empty());
    assert!(page.last_cursor().is_none());
}

#[test]
fn missing_timestamp_sorts_first_with_the_minimum_long() {
    let page = SearchPage::parse(&fixture("missing_first_page.json")).unwrap();
    let hit = &page.hits[0];
    assert_eq!(hit.sort[0], serde_json::json!(i64::MIN));
    assert_eq!(hit.timestamp(TimestampKind::Date), None);
    // The cursor still works: the next page resumes after it, never at it.
    let spec = QueryConfig::new("logs-*")
        .with_tiebreaker_field("event_id")
        .with_missing_timestamp(es_query::MissingTimestamp::First)
        .build(Flavor::OpenSearch { major: 3, minor: 8 })
        .unwrap();
    let next = spec.search_after_page(hit.cursor().as_ref(), None).unwrap();
    assert_eq!(
        next.body.unwrap()["search_after"],
        serde_json::json!([i64::MIN, "e4"])
    );
}

#[test]
fn pit_pages_carry_the_newest_pit_id() {
    let os = SearchPage::parse(&fixture("opensearch_pit_page.json")).unwrap();
    assert!(os.pit_id.as_ref().unwrap().as_str().starts_with("o_-7"));
    assert_eq!(
        os.hits[1].sort,
        serde_json::json!([1705314600000_i64, 1])
            .as_array()
            .unwrap()
            .clone()
    );
    let es = SearchPage::parse(&fixture("es_pit_page.json")).unwrap();
    assert!(es.pit_id.unwrap().as_str().ends_with("AAAAB=="));
    assert_eq!(es.hits[1].sort[1], serde_json::json!(4294967297_i64));
}

#[test]
fn pit_open_answers_of_both_flavors() {
    let os = PitId::from_open_response(&fixture("opensearch_pit_open.json")).unwrap();
    assert!(os.as_str().starts_with("o_-7"));
    let es = PitId::from_open_response(&fixture("es_pit_open.json")).unwrap();
    assert!(es.as_str().starts_with("46ToAw"));
    let err = PitId::from_open_response(b"{}").unwrap_err();
    assert!(err.to_string().contains("pit_id"), "{err}");
}

#[test]
fn close_answers_count_freed_contexts() {
    assert_eq!(parse_close(&fixture("es_pit_close.json")).unwrap(), 3);
    assert_eq!(
        parse_close(&fixture("opensearch_pit_close.json")).unwrap(),
        1
    );
    assert_eq!(parse_close(&fixture("clear_scroll.json")).unwrap(), 1);
}

#[test]
fn scroll_pages() {
    let start = SearchPage::parse(&fixture("scroll_start.json")).unwrap();
    let id = start.scroll_id.clone().unwrap();
    let next = SearchPage::parse(&fixture("scroll_next.json")).unwrap();
    assert_eq!(next.scroll_id.as_ref(), Some(&id));
    // date_nanos index: its sort value is in nanoseconds (this server ignores numeric_type).
    assert_eq!(
        next.hits[1].sort[0],
        serde_json::json!(1705314600123456789_i64)
    );
    let end = SearchPage::parse(&fixture("scroll_end.json")).unwrap();
    assert!(end.hits.is_empty());
}

#[test]
fn count_answer() {
    assert_eq!(parse_count(&fixture("count.json")).unwrap(), 3);
    assert!(matches!(
        parse_count(b"{\"count\":\"x\"}"),
        Err(QueryError::Malformed { .. })
    ));
}

#[test]
fn expired_contexts_are_recognised() {
    for name in [
        "opensearch_pit_expired.json",
        "scroll_expired.json",
        "es_pit_expired.json",
        "es_partial_context_missing.json",
    ] {
        let body = fixture(name);
        let from_body = SearchPage::parse(&body).unwrap_err();
        assert!(from_body.is_context_expired(), "{name}: {from_body:?}");
        let with_status = SearchPage::from_response(404, &body).unwrap_err();
        if name != "es_partial_context_missing.json" {
            assert!(with_status.is_context_expired(), "{name}: {with_status:?}");
        }
        assert!(
            from_body.to_string().contains("No search context found"),
            "{name}"
        );
    }
}

#[test]
fn shard_failures_refuse_the_page() {
    let err = SearchPage::parse(&fixture("es_shard_failure.json")).unwrap_err();
    match &err {
        QueryError::ShardFailure {
            failed,
            total,
            reason,
        } => {
            assert_eq!((*failed, *total), (1, 3));
            assert!(reason.contains("logs-2024.01.16"), "{reason}");
            assert!(
                reason.contains("No mapping found for [event_id]"),
                "{reason}"
            );
        }
        other => panic!("expected ShardFailure, got {other:?}"),
    }
    assert!(err.is_retryable());
}

#[test]
fn timed_out_refuses_the_page() {
    let err = SearchPage::parse(&fixture("timed_out_page.json")).unwrap_err();
    assert_eq!(err, QueryError::TimedOut { took_ms: 30001 });
    assert!(err.is_retryable());
}

#[test]
fn truncated_html_and_garbage_say_what_was_received() {
    let err = SearchPage::parse(&fixture("truncated_page.json")).unwrap_err();
    assert!(err.to_string().contains("truncated JSON"), "{err}");
    assert!(err.to_string().contains("_shards"), "{err}");
    let err = SearchPage::parse(&fixture("html_502.html")).unwrap_err();
    assert!(err.to_string().contains("HTML"), "{err}");
    assert!(err.to_string().contains("502 Bad Gateway"), "{err}");
    let err = SearchPage::parse(b"").unwrap_err();
    assert!(err.to_string().contains("empty body"), "{err}");
    let err = SearchPage::parse(b"{\"took\":1}").unwrap_err();
    assert!(err.to_string().contains("no `hits`"), "{err}");
    let err = SearchPage::parse(b"{\"hits\":{\"hits\":[{\"_id\":1}]}}").unwrap_err();
    assert!(matches!(err, QueryError::Malformed { .. }), "{err:?}");
    let huge = vec![b'x'; 10_000];
    match SearchPage::parse(&huge).unwrap_err() {
        QueryError::Malformed { received, .. } => assert!(received.len() <= 203),
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_errors_keep_status_type_and_root_cause() {
    let err = SearchPage::from_response(400, &fixture("error_sort_on_text.json")).unwrap_err();
    match &err {
        QueryError::ServerError {
            status,
            error_type,
            reason,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error_type, "search_phase_execution_exception");
            assert!(reason.contains("Text fields are not optimised"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    let err = SearchPage::from_response(404, &fixture("es_index_not_found.json")).unwrap_err();
    assert!(err.to_string().contains("no such index [logs]"), "{err}");
    let err = SearchPage::from_response(429, &fixture("es_rejected_429.json")).unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let err = SearchPage::from_response(502, &fixture("html_502.html")).unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("nginx"), "{err}");
}

#[test]
fn flavor_from_the_local_node_where_get_root_is_not_there() {
    // A minimal Elasticsearch 8.19 distribution answers `GET /` with 405.
    let err = Flavor::from_root_response(&fixture("root_elasticsearch_8_19_405.json")).unwrap_err();
    assert!(matches!(err, QueryError::Malformed { .. }), "{err:?}");
    assert_eq!(
        Flavor::from_local_node_response(&fixture("nodes_local_elasticsearch_8_19.json")).unwrap(),
        (
            Flavor::Elasticsearch {
                major: 8,
                minor: 19
            },
            "8.19.21".to_owned()
        )
    );
    assert_eq!(
        Flavor::from_local_node_response(&fixture("nodes_local_opensearch_3_6.json")).unwrap(),
        (
            Flavor::OpenSearch { major: 3, minor: 6 },
            "3.6.0".to_owned()
        )
    );
    let err = Flavor::from_local_node_response(b"{\"nodes\":{}}").unwrap_err();
    assert!(matches!(err, QueryError::Malformed { .. }), "{err:?}");
}

#[test]
fn implicit_shard_doc_of_an_elasticsearch_pit_stays_out_of_the_cursor() {
    // Elasticsearch 8.19 inside a point in time, sorted on [ts, eid]: every hit
    // carries a third sort value, the implicit `_shard_doc`.
    let page = SearchPage::parse(&fixture("es_8_19_pit_page_implicit_shard_doc.json")).unwrap();
    assert_eq!(page.hits[1].sort.len(), 3);
    assert_eq!(
        page.last_cursor().unwrap(),
        Cursor::new(vec![1704067202000_i64.into(), "e2".into()])
    );
}
