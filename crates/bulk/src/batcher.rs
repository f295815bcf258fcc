//! When a batch is cut: by count, by bytes, by the flush interval, or on
//! request. Pure: it counts what the dispatcher holds and is told the time, so
//! its rules are tested without a runtime.

use std::time::Duration;

use tokio::time::Instant;

/// Why, and around which request, the held batch is to be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Before the pushed request: it would take the batch over the byte limit.
    /// Send what was held; the pushed request starts the next batch.
    Before,
    /// With the pushed request: the batch reached the count or byte limit.
    Full,
    /// Both: send what was held, then the pushed request alone (it reaches a
    /// limit by itself).
    BeforeAndFull,
    /// The flush interval since the batch's first request ran out.
    Interval,
    /// A flush (or close) asked for it.
    Flush,
}

impl Cut {
    /// Whether the requests held before the pushed one are sent first.
    pub(crate) fn before(self) -> bool {
        matches!(self, Cut::Before | Cut::BeforeAndFull)
    }

    /// Whether the batch holding the pushed request is sent after adding it.
    pub(crate) fn after(self) -> bool {
        matches!(self, Cut::Full | Cut::BeforeAndFull)
    }

    /// Cut because of time or a caller's request, not because the batch was
    /// full: what [`BulkStats::batches_flushed`](crate::BulkStats::batches_flushed) counts.
    pub(crate) fn is_flush(self) -> bool {
        matches!(self, Cut::Interval | Cut::Flush)
    }
}

/// The cut rules over the batch being built: requests held, their bytes, and
/// when the batch is due by the flush interval (timed from its first request).
#[derive(Debug)]
pub(crate) struct Batcher {
    max_actions: usize,
    max_bytes: usize,
    interval: Option<Duration>,
    held: usize,
    bytes: usize,
    due: Option<Instant>,
}

impl Batcher {
    pub(crate) fn new(max_actions: usize, max_bytes: usize, interval: Option<Duration>) -> Self {
        Batcher {
            max_actions,
            max_bytes,
            interval,
            held: 0,
            bytes: 0,
            due: None,
        }
    }

    /// A request of `size` bytes arrives at `now`; the caller adds it to its
    /// batch and sends as the returned cut says.
    pub(crate) fn push(&mut self, size: usize, now: Instant) -> Option<Cut> {
        let before = self.held > 0 && self.bytes.saturating_add(size) > self.max_bytes;
        if before {
            self.clear();
        }
        if self.held == 0 {
            self.due = self.interval.map(|d| now + d);
        }
        self.held += 1;
        self.bytes = self.bytes.saturating_add(size);
        let full = self.held >= self.max_actions || self.bytes >= self.max_bytes;
        if full {
            self.clear();
        }
        match (before, full) {
            (false, false) => None,
            (true, false) => Some(Cut::Before),
            (false, true) => Some(Cut::Full),
            (true, true) => Some(Cut::BeforeAndFull),
        }
    }

    /// When the held batch is due by the flush interval (`None`: nothing held, or no interval).
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The time is `now`: the held batch is cut if it is due.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<Cut> {
        let due = self.due.is_some_and(|at| at <= now) && self.held > 0;
        due.then(|| {
            self.clear();
            Cut::Interval
        })
    }

    /// A flush: the held batch, if any, is cut.
    pub(crate) fn flush(&mut self) -> Option<Cut> {
        (self.held > 0).then(|| {
            self.clear();
            Cut::Flush
        })
    }

    fn clear(&mut self) {
        self.held = 0;
        self.bytes = 0;
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn cuts_with_the_request_that_reaches_the_count() {
        let t = Instant::now();
        let mut b = Batcher::new(3, 1000, None);
        let cuts: Vec<_> = (0..7).map(|_| b.push(10, t)).collect();
        use Cut::Full;
        assert_eq!(cuts, [None, None, Some(Full), None, None, Some(Full), None]);
        assert_eq!(b.flush(), Some(Cut::Flush));
        assert_eq!(b.flush(), None, "nothing held, nothing to cut");
    }

    #[test]
    fn cuts_before_a_request_that_would_exceed_the_bytes() {
        let t = Instant::now();
        let mut b = Batcher::new(100, 25, None);
        assert_eq!(b.push(10, t), None);
        assert_eq!(b.push(10, t), None);
        assert_eq!(
            b.push(10, t),
            Some(Cut::Before),
            "30 > 25: the third starts a batch"
        );
        assert_eq!(b.push(15, t), Some(Cut::Full), "10 + 15 reaches 25 exactly");
        assert_eq!(b.push(5, t), None);
        assert_eq!(
            b.push(40, t),
            Some(Cut::BeforeAndFull),
            "a request as large as a batch goes alone, after what was held"
        );
        assert_eq!(b.flush(), None);
        assert_eq!(b.push(40, t), Some(Cut::Full), "alone from the start");
    }

    #[test]
    fn the_interval_runs_from_the_first_request_of_each_batch() {
        let t = Instant::now();
        let mut b = Batcher::new(100, 1000, Some(Duration::from_secs(5)));
        assert_eq!(b.due(), None, "no timer while nothing is held");
        assert_eq!(b.tick(at(t, 60_000)), None);
        assert_eq!(b.push(1, at(t, 1000)), None);
        assert_eq!(b.push(1, at(t, 4000)), None);
        assert_eq!(
            b.due(),
            Some(at(t, 6000)),
            "from the first request, not the last"
        );
        assert_eq!(b.tick(at(t, 5999)), None);
        assert_eq!(b.tick(at(t, 6000)), Some(Cut::Interval));
        assert_eq!(b.due(), None);
        assert_eq!(b.push(1, at(t, 7000)), None);
        assert_eq!(b.due(), Some(at(t, 12_000)));
        assert_eq!(b.flush(), Some(Cut::Flush));
        assert_eq!(b.due(), None, "a flush stops the timer");
    }

    #[test]
    fn a_full_cut_restarts_the_timer_with_the_next_request() {
        let t = Instant::now();
        let mut b = Batcher::new(2, 1000, Some(Duration::from_secs(1)));
        b.push(1, t);
        assert_eq!(b.push(1, at(t, 500)), Some(Cut::Full));
        assert_eq!(b.due(), None);
        assert_eq!(b.push(1, at(t, 900)), None);
        assert_eq!(b.due(), Some(at(t, 1900)));
    }

    #[test]
    fn only_time_and_flushes_count_as_flushed() {
        assert!(Cut::Interval.is_flush() && Cut::Flush.is_flush());
        assert!(
            ![Cut::Before, Cut::Full, Cut::BeforeAndFull]
                .iter()
                .any(|c| c.is_flush())
        );
        assert!(Cut::Before.before() && !Cut::Before.after());
        assert!(!Cut::Full.before() && Cut::Full.after());
        assert!(Cut::BeforeAndFull.before() && Cut::BeforeAndFull.after());
    }
}
