//! How a request ends when it does not succeed: a failure handed to the
//! failure handler, or a request handed back at a close deadline.
//!
//! There is no "closed" failure: `close` finishes every request (success or
//! failure), and `close_with_deadline` hands what it could not finish back in
//! [`CloseReport::unsent`] instead of failing it.

use crate::request::BulkRequest;

/// Why a request failed for good, and so what to do about it. A status, where
/// there is one, sits in the variant that says whose status it is: an item's
/// ([`Item`](Self::Item), [`OutcomeUnknown`](Self::OutcomeUnknown)) or the whole
/// `_bulk` request's ([`Request`](Self::Request)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The server refused this item: a mapping error (400), a version conflict
    /// (409), any item status the [`RetryPolicy`](crate::RetryPolicy) does not
    /// retry. The same request will be refused again: route it to a dead-letter
    /// store.
    Item {
        /// The item's HTTP status.
        status: u16,
    },
    /// The server refused (or failed) the whole `_bulk` request (400, 401, 403,
    /// 404, 413, 500..., see [`classify_status`](crate::classify_status)); every
    /// request of the batch fails with it. Asking again fails the same way
    /// until someone fixes the cause (credentials, privileges, URL, size limit,
    /// the server). After a 5xx or an unreadable answer, parts may have been
    /// applied ([`BulkRequest::maybe_applied`]).
    Request {
        /// The whole request's HTTP status (200 for an answer that could not
        /// be read); `None` only for a refusal without an answer, which no
        /// decision of this crate makes today.
        status: Option<u16>,
    },
    /// A transient failure (no connection, 429, 502, 503, a lost answer of a
    /// request that is safe to resend, an item status the policy retries...)
    /// outlasted the backoff; `error` names the last cause. Sending the request
    /// again later may succeed (if [`BulkRequest::maybe_applied`], it may be
    /// there already: see [`BulkRequest::resend`]).
    GaveUp,
    /// An attempt may have been applied and the processor cannot tell: the
    /// answer was lost after sending and resending could apply it twice
    /// ([`Resend::Never`](crate::Resend::Never): index or create without an id,
    /// scripted update; `status` `None`), or a conditional write sent again met
    /// a version conflict ([`Resend::Conditional`](crate::Resend::Conditional);
    /// `status` `Some(409)`, the item's). Check the target before sending it
    /// again, or send it again if a duplicate is acceptable.
    OutcomeUnknown {
        /// The item status of the resend that met a conflict; `None` after a
        /// lost answer.
        status: Option<u16>,
    },
}

/// A request that failed for good, handed to the failure handler.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FailedItem {
    /// The request, as added (with its [`caller_tag`](BulkRequest::caller_tag)).
    pub request: BulkRequest,
    /// The server's error object (JSON text) or what went wrong.
    pub error: String,
    /// `_bulk` calls that carried this request.
    pub attempts: u32,
    /// Why it failed, with the status that decided it.
    pub kind: FailureKind,
}

impl FailedItem {
    /// Whether sending the request again later may succeed as it is
    /// ([`FailureKind::GaveUp`]); the other kinds need someone to act first.
    pub fn is_retryable(&self) -> bool {
        self.kind == FailureKind::GaveUp
    }

    /// The caller's tag of the request ([`BulkRequest::tag`]).
    pub fn caller_tag(&self) -> Option<u64> {
        self.request.caller_tag()
    }

    /// The HTTP status that decided the failure, the item's or the whole
    /// request's ([`FailedItem::kind`] says which); `None` when no answer
    /// decided it.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            FailureKind::Item { status } => Some(status),
            FailureKind::Request { status } | FailureKind::OutcomeUnknown { status } => status,
            FailureKind::GaveUp => None,
        }
    }

    /// The item's own status, when the server answered for this item
    /// ([`FailureKind::Item`], [`FailureKind::OutcomeUnknown`] after a conflict).
    pub fn item_status(&self) -> Option<u16> {
        match self.kind {
            FailureKind::Item { status } => Some(status),
            FailureKind::OutcomeUnknown { status } => status,
            _ => None,
        }
    }

    /// The whole `_bulk` request's status, when it was refused as a whole
    /// ([`FailureKind::Request`]).
    pub fn request_status(&self) -> Option<u16> {
        match self.kind {
            FailureKind::Request { status } => status,
            _ => None,
        }
    }
}

/// What `close_with_deadline` could not finish.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CloseReport {
    /// Requests not known to be applied: never sent, or sent without an answer
    /// before the deadline (those may have been applied:
    /// [`BulkRequest::maybe_applied`] is set; resend them according to
    /// [`BulkRequest::resend`]). They were not reported to the failure handler:
    /// each request ends either there or here, never both.
    pub unsent: Vec<BulkRequest>,
}
