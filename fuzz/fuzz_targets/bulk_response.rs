//! A `_bulk` answer (the `bulk` crate's response parsing), decided for the
//! requests it answers under each whole-request status class.
#![no_main]

use bulk::{BulkRequest, Decision, ItemDecision, Resend, RetryPolicy, decide, reconcile};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn requests(n: usize) -> Vec<BulkRequest> {
    (0..n)
        .map(|i| match i % 3 {
            0 => BulkRequest::index("i")
                .id(i.to_string())
                .doc_json(&b"{}"[..]),
            1 => BulkRequest::create("i")
                .id(i.to_string())
                .doc_json(&b"{}"[..]),
            _ => BulkRequest::delete("i").id(i.to_string()),
        })
        .collect()
}

/// Whether `v` is an answer of the shape `decide` must read item by item: an
/// object whose `items` (if any) each name one operation with a `u16` status
/// and a `result` that is a string or null, and whose `errors` (if any) is a
/// boolean.
fn well_formed(v: &serde_json::Value) -> bool {
    let Some(answer) = v.as_object() else {
        return false;
    };
    if answer.get("errors").is_some_and(|e| !e.is_boolean()) {
        return false;
    }
    let Some(items) = answer.get("items") else {
        return true;
    };
    let Some(items) = items.as_array() else {
        return false;
    };
    items.iter().all(|item| {
        let Some(item) = item.as_object().filter(|o| o.len() == 1) else {
            return false;
        };
        let Some((op, result)) = item.iter().next() else {
            return false;
        };
        let Some(result) = result.as_object() else {
            return false;
        };
        ["index", "create", "update", "delete"].contains(&op.as_str())
            && result
                .get("status")
                .and_then(serde_json::Value::as_u64)
                .is_some_and(|s| u16::try_from(s).is_ok())
            && result
                .get("result")
                .is_none_or(|r| r.is_string() || r.is_null())
    })
}

fuzz_target!(|data: &[u8]| {
    // A well-formed answer, written out again by serde_json (which escapes
    // what it must, in strings anywhere), is read item by item: no valid
    // answer is refused as unreadable.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && well_formed(&value)
        && let Ok(canonical) = serde_json::to_vec(&value)
    {
        let items = value
            .get("items")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        let decision = decide(200, &Bytes::from(canonical), items, &RetryPolicy::default());
        assert!(
            matches!(&decision, Decision::Items(d) if d.len() == items),
            "a well-formed answer was not read item by item: {decision:?}"
        );
    }

    let body = Bytes::copy_from_slice(data);
    // As many requests as the answer has items, so the item path is reached.
    let sent = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("items")?.as_array().map(Vec::len))
        .unwrap_or(0)
        .min(10_000);
    let policy = RetryPolicy::default();
    for status in [200, 400, 429, 500, 502] {
        let decision = decide(status, &body, sent, &policy);
        match &decision {
            Decision::Items(items) => {
                assert_eq!(items.len(), sent, "one decision per request");
                for item in items {
                    let (ItemDecision::Success(r)
                    | ItemDecision::AlreadyApplied(r)
                    | ItemDecision::Retry(r)
                    | ItemDecision::Fail(r)
                    | ItemDecision::OutcomeUnknown(r)) = item;
                    if let Some(error) = &r.error {
                        assert!(serde_json::from_str::<serde::de::IgnoredAny>(error).is_ok());
                    }
                }
            }
            Decision::RetryAll(f) | Decision::Ambiguous(f) | Decision::FailAll(f) => {
                assert!(!f.to_string().is_empty());
            }
        }
        let reqs = requests(sent);
        let _ = reqs
            .iter()
            .map(BulkRequest::resend)
            .filter(|r| *r == Resend::Conditional);
        let _ = reconcile(decision, &reqs);
    }
});
