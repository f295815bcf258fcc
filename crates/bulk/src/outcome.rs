//! How a request ends when it does not succeed: a failure handed to the
//! failure handler, or a request handed back at a close deadline.

use crate::request::BulkRequest;

/// What kind of failure a [`FailedItem`] is, and so what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The server refused this item (`status` is the item's): a mapping error,
    /// a version conflict, any item status not in `retry_statuses`. The same
    /// request will be refused again: route it to a dead-letter store.
    Item,
    /// The server refused (or failed) the whole request (`status` is the whole
    /// request's: 400, 401, 403, 404, 413, 500..., see
    /// [`classify_status`](crate::classify_status)); every request of the batch
    /// fails with it. Asking again fails the same way until someone fixes the
    /// cause (credentials, privileges, URL, size limit, the server). After a 5xx
    /// or an unreadable answer, parts may have been applied
    /// ([`BulkRequest::maybe_applied`]).
    Request,
    /// A transient failure (no connection, 429, 503, a lost answer of a request
    /// that is safe to resend...) outlasted the backoff; `error` names the last
    /// cause, `status` is `None`. Sending the request again later may succeed
    /// (if [`BulkRequest::maybe_applied`], it may be there already: see
    /// [`BulkRequest::resend`]).
    GaveUp,
    /// An attempt may have been applied and the processor cannot tell: the
    /// answer was lost after sending and resending could apply it twice
    /// ([`Resend::Never`](crate::Resend::Never): index or create without an id,
    /// scripted update; `status` `None`), or a conditional write sent again met
    /// a version conflict ([`Resend::Conditional`](crate::Resend::Conditional);
    /// `status` 409). Check the target before sending it again, or send it
    /// again if a duplicate is acceptable.
    OutcomeUnknown,
}

/// A request that failed for good, handed to the failure handler.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FailedItem {
    /// The request, as added.
    pub request: BulkRequest,
    /// The HTTP status: the item's ([`FailureKind::Item`], and 409 for
    /// [`FailureKind::OutcomeUnknown`] after a conflict) or the whole request's
    /// ([`FailureKind::Request`]); `None` when no answer decided it
    /// ([`FailureKind::GaveUp`], and a lost answer for `OutcomeUnknown`).
    pub status: Option<u16>,
    /// The server's error object (JSON text) or what went wrong.
    pub error: String,
    /// `_bulk` calls that carried this request.
    pub attempts: u32,
    /// What kind of failure it is.
    pub kind: FailureKind,
}

impl FailedItem {
    /// Whether sending the request again later may succeed as it is
    /// ([`FailureKind::GaveUp`]); the other kinds need someone to act first.
    pub fn is_retryable(&self) -> bool {
        self.kind == FailureKind::GaveUp
    }
}

/// What `close_with_deadline` could not finish.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CloseReport {
    /// Requests not known to be applied: never sent, or sent without an answer
    /// before the deadline (those may have been applied:
    /// [`BulkRequest::maybe_applied`] is set; resend them according to
    /// [`BulkRequest::resend`]).
    pub unsent: Vec<BulkRequest>,
}
