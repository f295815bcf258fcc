//! Which failures are sent again: one value for whole requests and items.

use crate::response::{StatusClass, classify_status};

/// Default item statuses sent again: every status [`classify_status`] calls
/// transient for a whole request (408, 429, 502, 503, 504), plus 507 (a node
/// out of storage for this item).
pub const DEFAULT_ITEM_RETRY_STATUSES: [u16; 6] = [408, 429, 502, 503, 504, 507];

/// Which statuses the processor sends again, for a whole `_bulk` request and
/// for a single item of its answer.
///
/// - **Whole request**: decided by [`classify_status`] alone (the one place
///   that tells transient from permanent whole-request statuses, and which of
///   them may have been applied); [`RetryPolicy::request_class`] delegates to it
///   and it is not configurable, so the processor, the outputs built on it and
///   the documentation cannot disagree.
/// - **Item**: the item statuses in [`RetryPolicy::item_statuses`]. An item's
///   status is the server's word that this item was not applied, so a retried
///   item is sent again whatever its operation. Default
///   [`DEFAULT_ITEM_RETRY_STATUSES`]: the whole-request transient statuses and
///   507, so an item refused with 502 is retried just as a whole request
///   answered 502 is.
///
/// How often and how long is the [`Backoff`](crate::Backoff)'s business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    item_statuses: Vec<u16>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            item_statuses: DEFAULT_ITEM_RETRY_STATUSES.to_vec(),
        }
    }
}

impl RetryPolicy {
    /// The default policy (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Retries items refused with exactly these statuses (instead of
    /// [`DEFAULT_ITEM_RETRY_STATUSES`]); an item refused with any other status
    /// fails once as [`FailureKind::Item`](crate::FailureKind::Item).
    pub fn with_item_statuses(mut self, statuses: impl Into<Vec<u16>>) -> Self {
        self.item_statuses = statuses.into();
        self
    }

    /// The item statuses sent again.
    pub fn item_statuses(&self) -> &[u16] {
        &self.item_statuses
    }

    /// Whether an item refused with `status` is sent again.
    pub fn retries_item(&self, status: u16) -> bool {
        self.item_statuses.contains(&status)
    }

    /// What a whole-request status means: [`classify_status`].
    pub fn request_class(&self, status: u16) -> StatusClass {
        classify_status(status)
    }

    /// Whether a whole request answered `status` is sent again (when the
    /// answer says nothing was applied, or the request is safe to resend:
    /// see [`Resend`](crate::Resend)).
    pub fn retries_request(&self, status: u16) -> bool {
        matches!(self.request_class(status), StatusClass::Transient { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_an_item_is_retried_for_every_transient_whole_request_status() {
        let policy = RetryPolicy::default();
        for status in 100..=599 {
            if policy.retries_request(status) {
                assert!(policy.retries_item(status), "{status}");
            }
        }
        assert!(policy.retries_item(507));
        for status in [200, 400, 404, 409, 413, 500] {
            assert!(!policy.retries_item(status), "{status}");
        }
    }

    #[test]
    fn item_statuses_can_be_replaced_and_the_request_class_stays() {
        let policy = RetryPolicy::new().with_item_statuses([429]);
        assert!(policy.retries_item(429));
        assert!(!policy.retries_item(502));
        assert!(
            policy.retries_request(502),
            "whole requests follow classify_status"
        );
        assert_eq!(policy.request_class(401), classify_status(401));
    }
}
