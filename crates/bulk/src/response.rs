//! Reading a `_bulk` answer and deciding, item by item, what happens next.
//!
//! Deciding (this module, pure) is kept apart from scheduling retries (the
//! worker, with [`Backoff`](crate::Backoff)).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::request::OpType;

/// The parts of a bulk response this crate reads.
#[derive(Debug, Deserialize)]
struct WireResponse<'a> {
    #[serde(default)]
    errors: bool,
    #[serde(borrow, default)]
    items: Vec<WireItem<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireItem<'a> {
    Index(#[serde(borrow)] WireResult<'a>),
    Create(#[serde(borrow)] WireResult<'a>),
    Update(#[serde(borrow)] WireResult<'a>),
    Delete(#[serde(borrow)] WireResult<'a>),
}

#[derive(Debug, Deserialize)]
struct WireResult<'a> {
    status: u16,
    #[serde(default)]
    result: Option<&'a str>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// What the server said about one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    /// The operation the server reports.
    pub op: OpType,
    /// HTTP status of the item.
    pub status: u16,
    /// `created`, `updated`, `deleted`, `noop`, `not_found`...
    pub result: Option<ResultKind>,
    /// The item's `error` object as JSON text, when it failed.
    pub error: Option<String>,
}

/// The `result` of an item (no allocation for the usual ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultKind {
    /// `created`
    Created,
    /// `updated`
    Updated,
    /// `deleted`
    Deleted,
    /// `noop`
    Noop,
    /// `not_found`
    NotFound,
    /// Anything else the server said.
    Other(String),
}

impl ResultKind {
    fn parse(text: &str) -> Self {
        match text {
            "created" => ResultKind::Created,
            "updated" => ResultKind::Updated,
            "deleted" => ResultKind::Deleted,
            "noop" => ResultKind::Noop,
            "not_found" => ResultKind::NotFound,
            other => ResultKind::Other(other.to_owned()),
        }
    }
}

/// The decision for one item of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemDecision {
    /// Done: the server applied it.
    Success(ItemResult),
    /// Send it again later (a retryable status).
    Retry(ItemResult),
    /// Failed for good; report it once.
    Fail(ItemResult),
}

/// The decision for a whole attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The server answered item by item (in request order).
    Items(Vec<ItemDecision>),
    /// Nothing was applied for sure and trying again may work (connection
    /// refused/reset, timeout, 429, 502, 503, 504).
    RetryAll(String),
    /// The whole request was refused and trying again will not help.
    FailAll(String),
}

/// Decides what an HTTP answer means for the `sent` items.
pub fn decide(status: u16, body: &Bytes, sent: usize, retryable: &[u16]) -> Decision {
    match status {
        200..=299 => {}
        429 | 502 | 503 | 504 => {
            return Decision::RetryAll(format!("HTTP {status}: {}", snippet(body)));
        }
        _ => return Decision::FailAll(format!("HTTP {status}: {}", snippet(body))),
    }
    let wire: WireResponse<'_> = match serde_json::from_slice(body) {
        Ok(w) => w,
        // A cut-off answer: nothing is known of any item, and resending is safe
        // for idempotent requests, so treat it like a dropped connection.
        Err(e) if e.is_eof() => {
            return Decision::RetryAll(format!("truncated bulk response ({e})"));
        }
        Err(e) => {
            return Decision::FailAll(format!("unreadable bulk response ({e}): {}", snippet(body)));
        }
    };
    if wire.items.len() != sent {
        return Decision::FailAll(format!(
            "the bulk response has {} items for {sent} requests",
            wire.items.len()
        ));
    }
    let _ = wire.errors;
    Decision::Items(
        wire.items
            .into_iter()
            .map(|item| {
                let (op, r) = match item {
                    WireItem::Index(r) => (OpType::Index, r),
                    WireItem::Create(r) => (OpType::Create, r),
                    WireItem::Update(r) => (OpType::Update, r),
                    WireItem::Delete(r) => (OpType::Delete, r),
                };
                let result = ItemResult {
                    op,
                    status: r.status,
                    result: r.result.map(ResultKind::parse),
                    error: r.error.map(|e| e.get().to_owned()),
                };
                match r.status {
                    200..=299 => ItemDecision::Success(result),
                    // A delete of a missing document is not a failure of the bulk.
                    404 if op == OpType::Delete && result.error.is_none() => {
                        ItemDecision::Success(result)
                    }
                    s if retryable.contains(&s) => ItemDecision::Retry(result),
                    _ => ItemDecision::Fail(result),
                }
            })
            .collect(),
    )
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRYABLE: &[u16] = &[408, 429, 503, 507];

    fn items(d: Decision) -> Vec<ItemDecision> {
        match d {
            Decision::Items(items) => items,
            other => panic!("expected items, got {other:?}"),
        }
    }

    #[test]
    fn sorts_items_into_success_retry_and_fail() {
        let body = Bytes::from_static(br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"a","_id":"1","status":201,"result":"created"}},
            {"index":{"_index":"a","_id":"2","status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"create":{"_index":"a","_id":"3","status":409,"error":{"type":"version_conflict_engine_exception"}}},
            {"index":{"_index":"a","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]"}}},
            {"update":{"_index":"a","_id":"5","status":200,"result":"updated"}},
            {"delete":{"_index":"a","_id":"6","status":404,"result":"not_found"}},
            {"index":{"_index":"a","_id":"7","status":503,"error":{"type":"unavailable_shards_exception"}}}
        ]}"#);
        let got = items(decide(200, &body, 7, RETRYABLE));
        let kinds: Vec<&str> = got
            .iter()
            .map(|d| match d {
                ItemDecision::Success(_) => "ok",
                ItemDecision::Retry(_) => "retry",
                ItemDecision::Fail(_) => "fail",
            })
            .collect();
        assert_eq!(kinds, ["ok", "retry", "fail", "fail", "ok", "ok", "retry"]);
        match &got[3] {
            ItemDecision::Fail(r) => assert!(
                r.error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("mapper_parsing_exception")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn whole_request_failures() {
        let empty = Bytes::new();
        for status in [429, 502, 503, 504] {
            assert!(
                matches!(decide(status, &empty, 1, RETRYABLE), Decision::RetryAll(_)),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413, 500] {
            assert!(
                matches!(decide(status, &empty, 1, RETRYABLE), Decision::FailAll(_)),
                "{status}"
            );
        }
        let html = Bytes::from_static(b"<html><body>Bad Gateway</body></html>");
        assert!(
            matches!(decide(200, &html, 1, RETRYABLE), Decision::FailAll(m) if m.contains("Bad Gateway"))
        );
        let cut = Bytes::from_static(br#"{"took":1,"errors":false,"items":[{"index":{"status":20"#);
        assert!(matches!(
            decide(200, &cut, 1, RETRYABLE),
            Decision::RetryAll(_)
        ));
        let short = Bytes::from_static(br#"{"errors":false,"items":[]}"#);
        assert!(
            matches!(decide(200, &short, 2, RETRYABLE), Decision::FailAll(m) if m.contains("0 items for 2"))
        );
    }
}
