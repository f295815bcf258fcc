//! The other answers of a read: opening and closing a point in time, clearing a
//! scroll, `_count`, `GET /` and the local node (the flavour), the histogram of
//! `late_window`'s look behind the cursor, and error documents.
#![no_main]

use std::time::Duration;

use es_query::{Flavor, PitId, QueryError, parse_bucket_counts, parse_close, parse_count};
use libfuzzer_sys::fuzz_target;

/// 2024-01-15T10:30:00Z, a cursor's time.
const CURSOR_MS: i64 = 1_705_314_600_000;

fn explained(e: &QueryError) {
    assert!(!e.to_string().is_empty());
    if let QueryError::Malformed { reason, .. } = e {
        assert!(!reason.is_empty(), "{e:?}");
    }
}

fn check<T>(r: es_query::Result<T>) {
    if let Err(e) = r {
        explained(&e);
    }
}

fn refused(e: QueryError) {
    explained(&e);
}

fuzz_target!(|body: &[u8]| {
    check(PitId::from_open_response(body));
    check(parse_count(body));
    check(parse_close(body));
    check(parse_bucket_counts(200, body));
    check(Flavor::from_root_response(body));
    check(Flavor::from_local_node_response(body));
    refused(QueryError::from_error_response(503, body));
    check(connector::fuzzing::look_behind(
        Duration::from_secs(600),
        CURSOR_MS,
        CURSOR_MS,
        200,
        body,
    ));
});
