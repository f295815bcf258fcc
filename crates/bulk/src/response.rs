//! Reading a `_bulk` answer and deciding, item by item, what happens next.
//!
//! Deciding (this module, pure) is kept apart from scheduling retries (the
//! worker, with [`Backoff`](crate::Backoff)).

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::RetryPolicy;
use crate::request::{BulkRequest, OpType, Resend};
use crate::transport::{Delivery, TransportError};

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
    /// Borrowed unless the server escaped a character of it.
    #[serde(borrow, default)]
    result: Option<Cow<'a, str>>,
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
    /// Done: a resend after an attempt that may have been applied met a version
    /// conflict, which for this request ([`Resend::ConflictMeansApplied`]) means
    /// the earlier attempt applied it. Counted as a success (and in `already_applied`).
    AlreadyApplied(ItemResult),
    /// Send it again later (a retryable status).
    Retry(ItemResult),
    /// Failed for good; report it once.
    Fail(ItemResult),
    /// A resend after an attempt that may have been applied met a version
    /// conflict, and for this request ([`Resend::Conditional`]) that cannot be
    /// told from another writer's change: reported once as outcome unknown.
    OutcomeUnknown(ItemResult),
}

/// The decision for a whole attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The server answered item by item (in request order).
    Items(Vec<ItemDecision>),
    /// The whole request failed before anything of it was applied, and asking
    /// again may work (connection not opened, 408, 429, 503): every request is
    /// sent again.
    RetryAll(RequestFailure),
    /// No answer to trust, and the server may have applied any part of the
    /// request (answer lost or cut off after sending, 502, 504): each request is
    /// sent again only if its [`Resend`] allows; the others are reported once as
    /// outcome unknown.
    Ambiguous(RequestFailure),
    /// The whole request was refused and asking again will not help (400, 401,
    /// 403, 404, 413, 500, an unreadable answer...): every request is reported
    /// once, with the status.
    FailAll(RequestFailure),
}

/// What a whole-request HTTP status means. The one place where transient and
/// permanent whole-request failures are told apart: [`decide`] goes by it, and
/// so the processor's failures ([`FailureKind`](crate::FailureKind)) and the
/// outputs built on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusClass {
    /// 2xx: the answer holds one result per item.
    Answered,
    /// Asking again later may work: 408, 429 (rejected, circuit breaker), 503
    /// (no master, cluster block), which the server answers before applying
    /// anything; 502 and 504, from a gateway that got no (valid) answer in time,
    /// after which the server may have applied any part (`maybe_applied`).
    Transient {
        /// Whether the server may have applied part of the request.
        maybe_applied: bool,
    },
    /// Asking again will fail the same way until someone acts: 400 (the body
    /// was not understood), 401 (credentials), 403 (privileges), 404 (no
    /// `_bulk` endpoint at that URL), 413 (body larger than the server takes),
    /// 500 (an internal error of the server: retrying usually meets it again,
    /// and parts may have been applied, so `maybe_applied`), and every other
    /// status.
    Permanent {
        /// Whether the server may have applied part of the request (5xx).
        maybe_applied: bool,
    },
}

/// Classifies a whole-request HTTP status; see [`StatusClass`].
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Answered,
        408 | 429 | 503 => StatusClass::Transient {
            maybe_applied: false,
        },
        502 | 504 => StatusClass::Transient {
            maybe_applied: true,
        },
        // The server failed while handling it: it may have applied some of it.
        500..=599 => StatusClass::Permanent {
            maybe_applied: true,
        },
        _ => StatusClass::Permanent {
            maybe_applied: false,
        },
    }
}

/// Why a whole `_bulk` call failed: no answer, an error status, or an answer
/// that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestFailure {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The `error.type` of the server's answer (`security_exception`,
    /// `cluster_block_exception`...), when it had one.
    pub error_type: Option<String>,
    /// The server's `error.reason` (or the start of its answer), or what went
    /// wrong on the connection.
    pub reason: String,
    /// Whether the server may have applied part of the request.
    pub maybe_applied: bool,
}

impl RequestFailure {
    /// A failure with an HTTP status, its error read from the body.
    fn answered(status: u16, body: &[u8], maybe_applied: bool) -> Self {
        let (error_type, reason) = server_error(body);
        RequestFailure {
            status: Some(status),
            error_type,
            reason,
            maybe_applied,
        }
    }
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(status) = self.status {
            write!(f, "HTTP {status}")?;
            if let Some(kind) = &self.error_type {
                write!(f, " {kind}")?;
            }
            if self.reason.is_empty() {
                return f.write_str(" (no body)");
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.reason)
    }
}

/// The `error.type` and `error.reason` of an Elasticsearch error answer
/// (`{"error":{"type":..,"reason":..},"status":..}`), or its `error`/`message`
/// text, or the start of whatever else it is.
fn server_error(body: &[u8]) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(default)]
        message: Option<String>,
    }
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    match serde_json::from_slice::<Answer>(body) {
        Ok(Answer {
            error: Some(error @ serde_json::Value::Object(_)),
            ..
        }) => (
            error.get("type").and_then(text),
            error
                .get("reason")
                .and_then(text)
                .unwrap_or_else(|| snippet(body)),
        ),
        Ok(Answer {
            error: Some(serde_json::Value::String(reason)),
            ..
        }) => (None, reason),
        Ok(Answer {
            message: Some(reason),
            ..
        }) => (None, reason),
        _ => (None, snippet(body)),
    }
}

/// Decides what an HTTP answer means for the `sent` items, from the answer
/// alone and `policy` (the whole request's status by [`classify_status`], the
/// items' by [`RetryPolicy::retries_item`]); [`reconcile`] then adds what is
/// known of earlier attempts.
pub fn decide(status: u16, body: &Bytes, sent: usize, policy: &RetryPolicy) -> Decision {
    match policy.request_class(status) {
        StatusClass::Answered => {}
        StatusClass::Transient { maybe_applied } => {
            let failure = RequestFailure::answered(status, body, maybe_applied);
            return if maybe_applied {
                Decision::Ambiguous(failure)
            } else {
                Decision::RetryAll(failure)
            };
        }
        StatusClass::Permanent { maybe_applied } => {
            return Decision::FailAll(RequestFailure::answered(status, body, maybe_applied));
        }
    }
    // From here on the server has processed the request: any item may be applied.
    let unreadable = |reason: String| RequestFailure {
        status: Some(status),
        error_type: None,
        reason,
        maybe_applied: true,
    };
    let wire: WireResponse<'_> = match serde_json::from_slice(body) {
        Ok(w) => w,
        // A cut-off answer: nothing is known of any item; what can be resent
        // safely is, as after a dropped connection.
        Err(e) if e.is_eof() => {
            return Decision::Ambiguous(unreadable(format!("truncated bulk response ({e})")));
        }
        Err(e) => {
            return Decision::FailAll(unreadable(format!(
                "unreadable bulk response ({e}): {}",
                snippet(body)
            )));
        }
    };
    if wire.items.len() != sent {
        return Decision::FailAll(unreadable(format!(
            "the bulk response has {} items for {sent} requests",
            wire.items.len()
        )));
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
                    result: r.result.as_deref().map(ResultKind::parse),
                    error: r.error.map(|e| e.get().to_owned()),
                };
                match r.status {
                    200..=299 => ItemDecision::Success(result),
                    // A delete of a missing document is not a failure of the bulk.
                    404 if op == OpType::Delete && result.error.is_none() => {
                        ItemDecision::Success(result)
                    }
                    s if policy.retries_item(s) => ItemDecision::Retry(result),
                    _ => ItemDecision::Fail(result),
                }
            })
            .collect(),
    )
}

/// The decision for a call that got no HTTP answer: everything is sent again
/// when it certainly was not sent, else it is [`Decision::Ambiguous`].
pub fn decide_unanswered(error: &TransportError) -> Decision {
    let maybe_applied = error.delivery() == Delivery::MaybeApplied;
    let failure = RequestFailure {
        status: None,
        error_type: None,
        reason: error.message().to_owned(),
        maybe_applied,
    };
    if maybe_applied {
        Decision::Ambiguous(failure)
    } else {
        Decision::RetryAll(failure)
    }
}

/// Adds to `decision` what is known of the `requests`' earlier attempts: a
/// `409 version_conflict_engine_exception` on a request sent again after an
/// attempt that may have been applied ([`BulkRequest::maybe_applied`]) is the
/// earlier attempt's own write for [`Resend::ConflictMeansApplied`]
/// ([`ItemDecision::AlreadyApplied`]), and cannot be told from another writer's
/// for [`Resend::Conditional`] ([`ItemDecision::OutcomeUnknown`]). Everything
/// else is left as it is.
pub fn reconcile(decision: Decision, requests: &[BulkRequest]) -> Decision {
    let Decision::Items(items) = decision else {
        return decision;
    };
    Decision::Items(
        items
            .into_iter()
            .zip(requests)
            .map(|(item, request)| {
                let conflict_after_doubt = match &item {
                    ItemDecision::Fail(r) | ItemDecision::Retry(r) => {
                        request.maybe_applied() && is_version_conflict(r)
                    }
                    _ => false,
                };
                if !conflict_after_doubt {
                    return item;
                }
                match (item, request.resend()) {
                    (
                        ItemDecision::Fail(r) | ItemDecision::Retry(r),
                        Resend::ConflictMeansApplied,
                    ) => ItemDecision::AlreadyApplied(r),
                    (ItemDecision::Fail(r) | ItemDecision::Retry(r), Resend::Conditional) => {
                        ItemDecision::OutcomeUnknown(r)
                    }
                    // A conflict of an idempotent request is a conflict with another writer.
                    (item, _) => item,
                }
            })
            .collect(),
    )
}

fn is_version_conflict(r: &ItemResult) -> bool {
    r.status == 409
        && r.error
            .as_deref()
            .is_some_and(|e| e.contains("version_conflict_engine_exception"))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The item statuses these tests were written against.
    fn retryable() -> RetryPolicy {
        RetryPolicy::new().with_item_statuses([408, 429, 503, 507])
    }

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
        let got = items(decide(200, &body, 7, &retryable()));
        let kinds: Vec<&str> = got
            .iter()
            .map(|d| match d {
                ItemDecision::Success(_) => "ok",
                ItemDecision::Retry(_) => "retry",
                ItemDecision::Fail(_) => "fail",
                other => panic!("{other:?}"),
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

    /// JSON lets a server escape any character of a string; the answer means
    /// the same, so it is read the same (the `bulk_response` fuzz target checks it too).
    #[test]
    fn an_escaped_result_or_item_string_reads_like_the_plain_one() {
        let body = Bytes::from_static(
            br#"{"errors":false,"items":[
            {"index":{"_index":"a","_id":"1","status":201,"result":"cr\u0065ated"}},
            {"delete":{"_index":"a","_id":"2","status":200,"result":"d\u00e9leted\n"}}
        ]}"#,
        );
        let got = items(decide(200, &body, 2, &retryable()));
        let results: Vec<Option<ResultKind>> = got
            .into_iter()
            .map(|d| match d {
                ItemDecision::Success(r) => r.result,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            results,
            [
                Some(ResultKind::Created),
                Some(ResultKind::Other("d\u{e9}leted\n".into()))
            ]
        );
    }

    #[test]
    fn whole_request_failures() {
        let empty = Bytes::new();
        for status in [408, 429, 503] {
            assert!(
                matches!(decide(status, &empty, 1, &retryable()), Decision::RetryAll(f) if f.status == Some(status) && !f.maybe_applied),
                "{status}"
            );
        }
        for status in [502, 504] {
            assert!(
                matches!(decide(status, &empty, 1, &retryable()), Decision::Ambiguous(f) if f.status == Some(status) && f.maybe_applied),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413, 500] {
            assert!(
                matches!(decide(status, &empty, 1, &retryable()), Decision::FailAll(f) if f.status == Some(status)),
                "{status}"
            );
        }
        let html = Bytes::from_static(b"<html><body>Bad Gateway</body></html>");
        assert!(
            matches!(decide(200, &html, 1, &retryable()), Decision::FailAll(f) if f.reason.contains("Bad Gateway") && f.maybe_applied)
        );
        let cut = Bytes::from_static(br#"{"took":1,"errors":false,"items":[{"index":{"status":20"#);
        assert!(matches!(
            decide(200, &cut, 1, &retryable()),
            Decision::Ambiguous(f) if f.reason.contains("truncated")
        ));
        let short = Bytes::from_static(br#"{"errors":false,"items":[]}"#);
        assert!(
            matches!(decide(200, &short, 2, &retryable()), Decision::FailAll(f) if f.reason.contains("0 items for 2"))
        );
    }

    #[test]
    fn classification_is_transient_or_permanent_and_says_what_may_be_applied() {
        let class = |s| classify_status(s);
        assert_eq!(class(200), StatusClass::Answered);
        for s in [408, 429, 503] {
            assert_eq!(
                class(s),
                StatusClass::Transient {
                    maybe_applied: false
                },
                "{s}"
            );
        }
        for s in [502, 504] {
            assert_eq!(
                class(s),
                StatusClass::Transient {
                    maybe_applied: true
                },
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 405, 409, 413] {
            assert_eq!(
                class(s),
                StatusClass::Permanent {
                    maybe_applied: false
                },
                "{s}"
            );
        }
        for s in [500, 501, 505] {
            assert_eq!(
                class(s),
                StatusClass::Permanent {
                    maybe_applied: true
                },
                "{s}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_status_and_the_servers_error() {
        let failure = |status, body: &'static [u8]| match decide(
            status,
            &Bytes::from_static(body),
            1,
            &retryable(),
        ) {
            Decision::FailAll(f) | Decision::RetryAll(f) | Decision::Ambiguous(f) => f,
            other => panic!("{other:?}"),
        };
        let es = br#"{"error":{"root_cause":[{"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"}],"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]","header":{"WWW-Authenticate":"Basic realm=\"security\""}},"status":401}"#;
        let f = failure(401, es);
        assert_eq!(f.error_type.as_deref(), Some("security_exception"));
        assert_eq!(
            f.to_string(),
            "HTTP 401 security_exception: missing authentication credentials for REST request [/_bulk]"
        );
        assert_eq!(failure(413, b"").to_string(), "HTTP 413 (no body)");
        assert_eq!(
            failure(403, br#"{"message":"User: anonymous is not authorized"}"#).to_string(),
            "HTTP 403: User: anonymous is not authorized"
        );
        assert_eq!(
            failure(405, br#"{"error":"Incorrect HTTP method","status":405}"#).to_string(),
            "HTTP 405: Incorrect HTTP method"
        );
        assert_eq!(
            failure(502, b"<html>\n<body>Bad   Gateway</body></html>").to_string(),
            "HTTP 502: <html> <body>Bad Gateway</body></html>"
        );
    }

    #[test]
    fn an_unanswered_call_is_resent_only_when_it_was_not_sent() {
        let refused = TransportError::not_sent("connection refused");
        assert!(
            matches!(decide_unanswered(&refused), Decision::RetryAll(f) if f.reason == "connection refused" && f.status.is_none())
        );
        let reset = TransportError::maybe_applied("connection reset");
        assert!(matches!(
            decide_unanswered(&reset),
            Decision::Ambiguous(f) if f.maybe_applied
        ));
    }

    #[test]
    fn a_conflict_after_a_lost_answer_is_settled_by_the_operation() {
        let conflict = r#"{"create":{"_index":"a","_id":"1","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[1]: version conflict, document already exists (current version [1])"}}}"#;
        let body = Bytes::from(format!(
            r#"{{"errors":true,"items":[{conflict},{conflict},{conflict},{conflict},{conflict}]}}"#
        ));
        let doc = serde_json::json!({"n": 1});
        let mut requests = vec![
            BulkRequest::create("a").id("1").doc(&doc),
            BulkRequest::index("a")
                .id("1")
                .if_seq_no(1)
                .if_primary_term(1)
                .doc(&doc),
            BulkRequest::update("a").id("1").doc(&doc),
            BulkRequest::create("a").id("1").doc(&doc),
            BulkRequest::index("a")
                .id("1")
                .version(2)
                .version_type(crate::VersionType::External)
                .doc(&doc),
        ];
        // The first attempt of all but the fourth may have been applied.
        for (i, r) in requests.iter_mut().enumerate() {
            if i != 3 {
                r.mark_maybe_applied();
            }
        }
        let got = items(reconcile(decide(200, &body, 5, &retryable()), &requests));
        let kinds: Vec<&str> = got
            .iter()
            .map(|d| match d {
                ItemDecision::Success(_) => "ok",
                ItemDecision::AlreadyApplied(_) => "already",
                ItemDecision::Retry(_) => "retry",
                ItemDecision::Fail(_) => "fail",
                ItemDecision::OutcomeUnknown(_) => "unknown",
            })
            .collect();
        assert_eq!(kinds, ["already", "unknown", "fail", "fail", "already"]);
        // Whole-request decisions pass through unchanged.
        let refused = decide(401, &Bytes::new(), 5, &retryable());
        assert_eq!(reconcile(refused.clone(), &requests), refused);
    }
}
