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

fuzz_target!(|data: &[u8]| {
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
