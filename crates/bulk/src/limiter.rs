//! How many `_bulk` calls may be in flight: fixed, or adaptive (additive
//! increase, multiplicative decrease) from what the cluster answers.
//!
//! [`Limiter`] is the rule, pure: it is told when a call starts and how it was
//! answered, and says the limit, so every case is tested without a runtime.
//! [`Gate`] holds the processor's calls to it.

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::error::BulkError;
use crate::response::{Decision, ItemDecision};

/// Opt-in adaptive concurrency
/// ([`BulkProcessorBuilder::adaptive`](crate::BulkProcessorBuilder::adaptive)):
/// the number of `_bulk` calls in flight follows the cluster's pushback, within
/// `min..=max`.
///
/// - **Pushback** is a `_bulk` call answered `429` as a whole, or an answer
///   with at least one item refused `429` (`es_rejected_execution_exception`:
///   a full write queue; `circuit_breaking_exception`). The limit is multiplied
///   by `decrease` (rounded down, never below `min`), once per congestion: the
///   answers to calls sent before that decrease do not lower it again.
/// - **A clean answer** is a `2xx` answer with no item refused `429` (items
///   refused for other reasons, a mapping error, are the documents' fault, not
///   the cluster's load). After as many clean answers in a row as the current
///   limit (one round of calls), the limit rises by one, never above `max`.
///   Only calls in flight while every place under the limit was taken count: a
///   producer slower than the limit, which never fills it, gives no sign that
///   more calls would be welcome, so the limit stays where the pushback left it.
/// - Anything else (no answer, `503`, `5xx`, another refusal) leaves the limit
///   and the run of clean answers as they are: they say the cluster is
///   unavailable or the request is wrong, and fewer calls would not help.
///
/// What happens to the refused requests does not change: they are retried as
/// the [`RetryPolicy`](crate::RetryPolicy) and the [`Backoff`](crate::Backoff)
/// say, and nothing is dropped. Each change is logged (`warn` when lowered,
/// `info` when raised, with old → new and why) and counted in
/// [`BulkStats`](crate::BulkStats) (`concurrency_limit`,
/// `concurrency_decreases`, `concurrency_increases`, `calls_rejected_429`,
/// `items_rejected_429`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveConcurrency {
    /// The lowest limit. Default 1.
    pub min: usize,
    /// The highest limit; the processor runs this many workers (in place of
    /// [`workers`](crate::BulkProcessorBuilder::workers)). Default 8.
    pub max: usize,
    /// The limit at start. Default `None`: `max`, so a cluster that never
    /// pushes back sees the same calls as with `max` fixed workers.
    pub initial: Option<usize>,
    /// The factor applied to the limit on pushback, above 0 and below 1.
    /// Default 0.5 (halved).
    pub decrease: f64,
}

impl Default for AdaptiveConcurrency {
    fn default() -> Self {
        AdaptiveConcurrency {
            min: 1,
            max: 8,
            initial: None,
            decrease: 0.5,
        }
    }
}

impl AdaptiveConcurrency {
    /// Between `min` and `max` calls in flight, the other settings at their defaults.
    pub fn between(min: usize, max: usize) -> Self {
        AdaptiveConcurrency {
            min,
            max,
            ..AdaptiveConcurrency::default()
        }
    }

    /// The limit at start (`initial`, or `max`).
    fn start(&self) -> usize {
        self.initial.unwrap_or(self.max)
    }

    pub(crate) fn validate(&self) -> Result<(), BulkError> {
        let invalid = |key: &str, reason: String| {
            Err(BulkError::InvalidConfig {
                key: format!("adaptive.{key}"),
                reason,
            })
        };
        if self.min == 0 {
            return invalid("min", "must be at least 1".into());
        }
        if self.max < self.min {
            return invalid(
                "max",
                format!("must be at least min ({}), is {}", self.min, self.max),
            );
        }
        if !(self.min..=self.max).contains(&self.start()) {
            return invalid(
                "initial",
                format!(
                    "must lie within min..=max ({}..={}), is {}",
                    self.min,
                    self.max,
                    self.start()
                ),
            );
        }
        if !(self.decrease > 0.0 && self.decrease < 1.0) {
            return invalid(
                "decrease",
                format!("must be above 0 and below 1, is {}", self.decrease),
            );
        }
        Ok(())
    }
}

/// What one answered call says about the cluster's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Answered `2xx`, no item refused `429`.
    Clean,
    /// The cluster refused work with `429`.
    Pushback(Pushback),
    /// Says nothing about the load (no answer, another error status).
    Other,
}

/// How the cluster pushed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// The whole `_bulk` call was answered `429`.
    Request,
    /// This many items were refused `429`.
    Items(usize),
}

impl Signal {
    /// The signal of an attempt's decision.
    pub(crate) fn of(decision: &Decision) -> Signal {
        match decision {
            Decision::Items(items) => {
                let refused = items.iter().filter(|i| item_status(i) == 429).count();
                if refused > 0 {
                    Signal::Pushback(Pushback::Items(refused))
                } else {
                    Signal::Clean
                }
            }
            Decision::RetryAll(f) | Decision::Ambiguous(f) | Decision::FailAll(f)
                if f.status == Some(429) =>
            {
                Signal::Pushback(Pushback::Request)
            }
            _ => Signal::Other,
        }
    }
}

fn item_status(item: &ItemDecision) -> u16 {
    match item {
        ItemDecision::Success(r)
        | ItemDecision::AlreadyApplied(r)
        | ItemDecision::Retry(r)
        | ItemDecision::Fail(r)
        | ItemDecision::OutcomeUnknown(r) => r.status,
    }
}

/// A change of the limit and its cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub from: usize,
    pub to: usize,
    pub cause: Cause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    Pushback(Pushback),
    /// This many clean answers in a row.
    Clean(usize),
}

/// The limit on calls in flight and the AIMD rule that moves it (see
/// [`AdaptiveConcurrency`]). A fixed limit is `min == max`: it never moves.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    min: usize,
    max: usize,
    decrease: f64,
    limit: usize,
    /// Bumped by each decrease; a call carries the epoch it was sent in, so
    /// only pushback to a call sent since the last decrease lowers the limit.
    epoch: u64,
    /// Clean answers in a row since the last change or pushback.
    clean: usize,
}

impl Limiter {
    /// Always `limit`.
    pub(crate) fn fixed(limit: usize) -> Self {
        Limiter {
            min: limit,
            max: limit,
            decrease: 0.5,
            limit,
            epoch: 0,
            clean: 0,
        }
    }

    /// The adaptive rule; `config` is valid ([`AdaptiveConcurrency::validate`]).
    pub(crate) fn adaptive(config: &AdaptiveConcurrency) -> Self {
        Limiter {
            min: config.min,
            max: config.max,
            decrease: config.decrease,
            limit: config.start().clamp(config.min, config.max),
            epoch: 0,
            clean: 0,
        }
    }

    /// Calls that may be in flight now.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The epoch a call starting now is sent in (give it back with its answer).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A call sent in epoch `sent_in` was answered with `signal`: the change
    /// of the limit, if any.
    pub(crate) fn on_answer(&mut self, sent_in: u64, signal: Signal) -> Option<Change> {
        let from = self.limit;
        match signal {
            Signal::Other => None,
            Signal::Pushback(how) => {
                self.clean = 0;
                if sent_in < self.epoch {
                    // Sent before the last decrease, which already answered this congestion.
                    return None;
                }
                let lowered = (from as f64 * self.decrease).floor() as usize;
                let to = lowered.clamp(self.min, self.max).min(from);
                if to == from {
                    return None;
                }
                self.limit = to;
                self.epoch += 1;
                Some(Change {
                    from,
                    to,
                    cause: Cause::Pushback(how),
                })
            }
            Signal::Clean => {
                if from >= self.max {
                    self.clean = 0;
                    return None;
                }
                self.clean += 1;
                if self.clean < from {
                    return None;
                }
                let run = self.clean;
                self.clean = 0;
                self.limit = from + 1;
                Some(Change {
                    from,
                    to: from + 1,
                    cause: Cause::Clean(run),
                })
            }
        }
    }
}

/// The processor's calls in flight, held to the [`Limiter`]'s limit: a worker
/// takes a place before each `_bulk` call and gives it back with the answer.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    /// Told when a place is given back or the limit changes.
    changed: Notify,
}

#[derive(Debug)]
struct GateState {
    limiter: Limiter,
    in_flight: usize,
    /// How many times a call took the last place under the limit.
    filled: u64,
}

impl Gate {
    pub(crate) fn new(limiter: Limiter) -> Self {
        Gate {
            state: Mutex::new(GateState {
                limiter,
                in_flight: 0,
                filled: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (limit, calls in flight) now.
    pub(crate) fn snapshot(&self) -> (usize, usize) {
        let s = self.lock();
        (s.limiter.limit(), s.in_flight)
    }

    /// Waits for a place under the limit. Cancel-safe: dropped while waiting,
    /// it holds nothing.
    pub(crate) async fn enter(&self) -> InFlight<'_> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a place given back in between wakes us.
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.in_flight < s.limiter.limit() {
                    let filled_before = s.filled;
                    s.in_flight += 1;
                    if s.in_flight == s.limiter.limit() {
                        s.filled += 1;
                    }
                    return InFlight {
                        gate: self,
                        epoch: s.limiter.epoch(),
                        filled_before,
                        done: false,
                    };
                }
            }
            notified.await;
        }
    }

    /// A call sent in `epoch` is answered; the gate had been filled
    /// `filled_before` times when it entered.
    fn leave(&self, epoch: u64, filled_before: u64, signal: Signal) -> Option<Change> {
        let change = {
            let mut s = self.lock();
            // A clean answer to a call that never saw the limit reached says
            // nothing about whether more calls would be welcome.
            let signal = match signal {
                Signal::Clean if s.filled == filled_before => Signal::Other,
                other => other,
            };
            s.in_flight = s.in_flight.saturating_sub(1);
            s.limiter.on_answer(epoch, signal)
        };
        self.changed.notify_waiters();
        change
    }
}

/// A place in the [`Gate`], held for one `_bulk` call; given back by
/// [`InFlight::answered`], or when dropped (as an answer that says nothing).
#[derive(Debug)]
pub(crate) struct InFlight<'a> {
    gate: &'a Gate,
    epoch: u64,
    /// How many times the gate had been filled when it entered: if the count
    /// grew while it was in flight, the limit held.
    filled_before: u64,
    done: bool,
}

impl InFlight<'_> {
    /// The call was answered with `signal`: the place is given back, and the
    /// change of the limit, if any, returned.
    pub(crate) fn answered(mut self, signal: Signal) -> Option<Change> {
        self.done = true;
        self.gate.leave(self.epoch, self.filled_before, signal)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.gate
                .leave(self.epoch, self.filled_before, Signal::Other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEMS: Signal = Signal::Pushback(Pushback::Items(3));
    const WHOLE: Signal = Signal::Pushback(Pushback::Request);

    fn limiter(min: usize, max: usize) -> Limiter {
        Limiter::adaptive(&AdaptiveConcurrency::between(min, max))
    }

    /// Sends `n` calls in the current epoch and answers them all clean; the limits after each.
    fn clean_round(l: &mut Limiter, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let e = l.epoch();
                l.on_answer(e, Signal::Clean);
                l.limit()
            })
            .collect()
    }

    #[test]
    fn pushback_halves_the_limit_down_to_min_and_not_below() {
        let mut l = limiter(2, 16);
        assert_eq!(l.limit(), 16, "starts at max");
        let mut seen = Vec::new();
        for _ in 0..6 {
            let e = l.epoch();
            l.on_answer(e, ITEMS);
            seen.push(l.limit());
        }
        assert_eq!(seen, [8, 4, 2, 2, 2, 2]);
        let e = l.epoch();
        assert_eq!(l.on_answer(e, WHOLE), None, "at min: no change");
    }

    #[test]
    fn one_congestion_lowers_the_limit_once() {
        let mut l = limiter(1, 8);
        // Eight calls in flight, all sent before any answer.
        let sent: Vec<u64> = (0..8).map(|_| l.epoch()).collect();
        let changes: Vec<_> = sent.iter().map(|&e| l.on_answer(e, ITEMS)).collect();
        assert_eq!(
            changes[0],
            Some(Change {
                from: 8,
                to: 4,
                cause: Cause::Pushback(Pushback::Items(3))
            })
        );
        assert!(changes[1..].iter().all(Option::is_none), "{changes:?}");
        assert_eq!(l.limit(), 4);
        // A call sent after the decrease and pushed back lowers it again.
        let e = l.epoch();
        assert_eq!(l.on_answer(e, WHOLE).map(|c| c.to), Some(2));
    }

    #[test]
    fn a_round_of_clean_answers_raises_the_limit_by_one_up_to_max() {
        let mut l = Limiter::adaptive(&AdaptiveConcurrency {
            initial: Some(2),
            ..AdaptiveConcurrency::between(1, 4)
        });
        assert_eq!(clean_round(&mut l, 2), [2, 3], "2 clean answers at limit 2");
        assert_eq!(clean_round(&mut l, 3), [3, 3, 4]);
        assert_eq!(clean_round(&mut l, 10), [4; 10], "never above max");
        let e = l.epoch();
        let change = l.on_answer(e, WHOLE);
        assert_eq!(change.map(|c| (c.from, c.to)), Some((4, 2)));
        let mut l = Limiter::adaptive(&AdaptiveConcurrency {
            initial: Some(3),
            ..AdaptiveConcurrency::between(1, 8)
        });
        let changes: Vec<_> = (0..3)
            .filter_map(|_| {
                let e = l.epoch();
                l.on_answer(e, Signal::Clean)
            })
            .collect();
        assert_eq!(
            changes,
            [Change {
                from: 3,
                to: 4,
                cause: Cause::Clean(3)
            }]
        );
    }

    #[test]
    fn pushback_restarts_the_run_of_clean_answers_and_other_answers_do_not_count() {
        let mut l = Limiter::adaptive(&AdaptiveConcurrency {
            initial: Some(4),
            ..AdaptiveConcurrency::between(1, 8)
        });
        let old = l.epoch();
        let _ = l.on_answer(old, ITEMS);
        assert_eq!(l.limit(), 2);
        let e = l.epoch();
        assert_eq!(l.on_answer(e, Signal::Clean), None);
        // A late pushback to a call sent before the decrease: no second
        // decrease, but the run starts again.
        assert_eq!(l.on_answer(old, ITEMS), None);
        assert_eq!(l.limit(), 2);
        assert_eq!(l.on_answer(e, Signal::Clean), None);
        assert_eq!(l.on_answer(e, Signal::Other), None, "says nothing");
        assert_eq!(l.on_answer(e, Signal::Clean).map(|c| c.to), Some(3));
    }

    #[test]
    fn a_fixed_limit_never_moves() {
        let mut l = Limiter::fixed(4);
        for signal in [WHOLE, ITEMS, Signal::Clean, Signal::Other] {
            for _ in 0..10 {
                let e = l.epoch();
                assert_eq!(l.on_answer(e, signal), None);
            }
        }
        assert_eq!(l.limit(), 4);
    }

    #[test]
    fn other_factors_round_down_and_always_lower() {
        let mut l = Limiter::adaptive(&AdaptiveConcurrency {
            decrease: 0.9,
            ..AdaptiveConcurrency::between(1, 10)
        });
        let mut seen = Vec::new();
        for _ in 0..4 {
            let e = l.epoch();
            l.on_answer(e, WHOLE);
            seen.push(l.limit());
        }
        assert_eq!(seen, [9, 8, 7, 6]);
    }

    #[test]
    fn settings_are_checked_by_key() {
        let key = |c: AdaptiveConcurrency| match c.validate() {
            Err(BulkError::InvalidConfig { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert!(AdaptiveConcurrency::default().validate().is_ok());
        assert!(AdaptiveConcurrency::between(3, 3).validate().is_ok());
        assert_eq!(key(AdaptiveConcurrency::between(0, 4)), "adaptive.min");
        assert_eq!(key(AdaptiveConcurrency::between(5, 4)), "adaptive.max");
        let initial = AdaptiveConcurrency {
            initial: Some(9),
            ..AdaptiveConcurrency::default()
        };
        assert_eq!(key(initial), "adaptive.initial");
        for decrease in [0.0, 1.0, 1.5, f64::NAN] {
            let c = AdaptiveConcurrency {
                decrease,
                ..AdaptiveConcurrency::default()
            };
            assert_eq!(key(c), "adaptive.decrease", "{decrease}");
        }
    }

    #[test]
    fn the_signal_of_a_decision() {
        use crate::{RetryPolicy, decide};
        let body = bytes::Bytes::from_static(
            br#"{"errors":true,"items":[
            {"index":{"status":201,"result":"created"}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"index":{"status":400,"error":{"type":"mapper_parsing_exception"}}}]}"#,
        );
        let policy = RetryPolicy::default();
        assert_eq!(
            Signal::of(&decide(200, &body, 3, &policy)),
            Signal::Pushback(Pushback::Items(1))
        );
        let mapping_only = bytes::Bytes::from_static(
            br#"{"errors":true,"items":[{"index":{"status":400,"error":{"type":"x"}}}]}"#,
        );
        assert_eq!(
            Signal::of(&decide(200, &mapping_only, 1, &policy)),
            Signal::Clean,
            "a refused document is not load"
        );
        // Refused 429 and not retried (a policy without 429): still pushback.
        let no_429 = RetryPolicy::new().with_item_statuses([503]);
        assert_eq!(
            Signal::of(&decide(200, &body, 3, &no_429)),
            Signal::Pushback(Pushback::Items(1))
        );
        let empty = bytes::Bytes::new();
        assert_eq!(
            Signal::of(&decide(429, &empty, 3, &policy)),
            Signal::Pushback(Pushback::Request)
        );
        for status in [503, 502, 500, 401] {
            assert_eq!(
                Signal::of(&decide(status, &empty, 3, &policy)),
                Signal::Other,
                "{status}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_holds_calls_to_the_limit_and_lets_them_in_as_places_come_back() {
        let gate = Gate::new(Limiter::adaptive(&AdaptiveConcurrency::between(1, 2)));
        let a = gate.enter().await;
        let b = gate.enter().await;
        assert_eq!(gate.snapshot(), (2, 2));
        let third = gate.enter();
        tokio::pin!(third);
        assert!(
            futures_poll(third.as_mut()).is_none(),
            "no third place at limit 2"
        );
        // Pushback lowers the limit to 1: giving one place back is not enough.
        assert_eq!(a.answered(ITEMS).map(|c| c.to), Some(1));
        assert!(
            futures_poll(third.as_mut()).is_none(),
            "1 in flight at limit 1"
        );
        drop(b);
        let c = third.await;
        assert_eq!(gate.snapshot(), (1, 1));
        assert_eq!(c.answered(Signal::Clean).map(|c| c.to), Some(2));
        assert_eq!(gate.snapshot(), (2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn clean_answers_raise_the_limit_only_when_calls_filled_it() {
        let config = AdaptiveConcurrency {
            initial: Some(2),
            ..AdaptiveConcurrency::between(1, 4)
        };
        let gate = Gate::new(Limiter::adaptive(&config));
        // A slow producer: one call at a time never fills the limit of 2.
        for _ in 0..10 {
            let call = gate.enter().await;
            assert_eq!(call.answered(Signal::Clean), None);
        }
        assert_eq!(
            gate.snapshot(),
            (2, 0),
            "not raised by calls it never held back"
        );
        // Two at a time fill it: a round of two clean answers raises it.
        let a = gate.enter().await;
        let b = gate.enter().await;
        assert_eq!(a.answered(Signal::Clean), None);
        assert_eq!(
            b.answered(Signal::Clean).map(|c| (c.from, c.to)),
            Some((2, 3))
        );
    }

    /// Polls `f` once.
    fn futures_poll<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match f.poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
