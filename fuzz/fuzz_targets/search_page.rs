//! A search, scroll or point-in-time search answer (`es-query`'s page parsing),
//! read as the source reads it: each hit's cursor and time, then its message.
#![no_main]

use connector::message::{Message, TargetDocument};
use es_query::{QueryError, SearchPage, TimestampKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // A 2xx answer is read as a page; any other status as an error document.
    for status in [200, 404] {
        match SearchPage::from_response(status, body) {
            Ok(page) => read(&page),
            Err(e) => explained(&e),
        }
    }
});

fn read(page: &SearchPage) {
    let _ = page.last_cursor();
    for hit in &page.hits {
        let _ = hit.cursor();
        let mut stamp = None;
        for kind in [
            TimestampKind::Date,
            TimestampKind::DateNanos,
            TimestampKind::EpochMillis,
        ] {
            stamp = hit.timestamp(kind).or(stamp);
        }
        if let Some(source) = &hit.source {
            let message = Message::new(
                &hit.index,
                &hit.id,
                hit.seq_no,
                stamp.map(|t| t.to_rfc3339()),
                source.clone(),
            );
            let line = message.to_json_line();
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(&line).is_ok(),
                "a message line is not JSON: {line}"
            );
            let _ = TargetDocument::of_message(&message).index_request("target", line.into_bytes());
        }
    }
}

/// Every refusal says what was wrong.
fn explained(e: &QueryError) {
    assert!(!e.to_string().is_empty());
    if let QueryError::Malformed { reason, .. } = e {
        assert!(!reason.is_empty(), "{e:?}");
    }
    let _ = e.is_retryable();
}
