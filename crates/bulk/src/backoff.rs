//! Exponential backoff with jitter, bounded by a retry count and a total time.

use std::time::Duration;

/// When to retry, and when to give up.
///
/// The n-th retry (n = 1, 2, ...) waits `initial * multiplier^(n-1)`, capped at
/// `max_delay`, with a random part: the delay is drawn uniformly from
/// `[d * (1 - jitter), d]`. Retrying stops after `max_retries` retries or once
/// the next wait would end past `max_elapsed` since the first attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// First delay. Default 100 ms.
    pub initial: Duration,
    /// Largest delay. Default 10 s.
    pub max_delay: Duration,
    /// Growth per retry. Default 2.0.
    pub multiplier: f64,
    /// Fraction of each delay that is random, 0.0 to 1.0. Default 0.5.
    pub jitter: f64,
    /// Retries at most. Default 10.
    pub max_retries: u32,
    /// Total time from the first attempt after which no retry starts. Default 2 min.
    pub max_elapsed: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            max_retries: 10,
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// No retries at all.
    pub fn none() -> Self {
        Backoff {
            max_retries: 0,
            ..Backoff::default()
        }
    }

    /// The wait before retry number `retry` (1-based), or `None` to give up.
    /// `elapsed` is the time since the first attempt; `unit` is a random number in [0, 1).
    pub fn next_delay(&self, retry: u32, elapsed: Duration, unit: f64) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let exp = self
            .multiplier
            .max(1.0)
            .powi(retry.saturating_sub(1).min(64) as i32);
        let full = self.initial.as_secs_f64() * exp;
        let capped = full.min(self.max_delay.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let delay = Duration::from_secs_f64(capped * (1.0 - jitter * unit.clamp(0.0, 1.0)));
        (elapsed + delay <= self.max_elapsed).then_some(delay)
    }
}

/// A small seedable generator for jitter (xorshift64*): deterministic in tests,
/// seeded from the clock otherwise. Not for anything security related.
#[derive(Debug, Clone)]
pub struct JitterRng(u64);

impl JitterRng {
    /// A generator with a fixed seed.
    pub fn seeded(seed: u64) -> Self {
        JitterRng(seed.max(1))
    }

    /// A generator seeded from the clock and a counter.
    pub fn from_entropy() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self::seeded(nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_stops() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        let ms = |r| b.next_delay(r, Duration::ZERO, 0.7).map(|d| d.as_millis());
        assert_eq!(ms(1), Some(100));
        assert_eq!(ms(2), Some(200));
        assert_eq!(ms(5), Some(1600));
        assert_eq!(ms(8), Some(10_000), "capped at max_delay");
        assert_eq!(ms(10), Some(10_000));
        assert_eq!(ms(11), None, "max_retries");
        assert_eq!(
            b.next_delay(1, Duration::from_secs(120), 0.0),
            None,
            "max_elapsed"
        );
        assert_eq!(Backoff::none().next_delay(1, Duration::ZERO, 0.0), None);
    }

    #[test]
    fn jitter_stays_in_its_band() {
        let b = Backoff::default();
        let mut rng = JitterRng::seeded(42);
        for retry in 1..=6 {
            let full = 100.0 * 2f64.powi(retry as i32 - 1);
            let d = b
                .next_delay(retry, Duration::ZERO, rng.unit())
                .map(|d| d.as_secs_f64() * 1000.0);
            let d = d.unwrap_or_default();
            assert!(
                d >= full * 0.5 - 1e-6 && d <= full + 1e-6,
                "retry {retry}: {d} ms"
            );
        }
        let mut a = JitterRng::seeded(7);
        let mut c = JitterRng::seeded(7);
        assert_eq!(
            a.unit().to_bits(),
            c.unit().to_bits(),
            "same seed, same sequence"
        );
    }
}
