//! The measuring loop behind `cargo xtask bench state` (feature `conformance`).
//!
//! Each backend's `benches/state.rs` measures its store and, in the same run and
//! with the same client, the raw floor (e.g. a bare Redis SET/GET of the same
//! bytes), then prints [`Comparison::row`] lines that xtask gathers into one table.
#![allow(clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::model::ConnectorState;

/// Size of the benchmark state document, in bytes (compact JSON).
pub const BENCH_STATE_BYTES: usize = 2048;

/// A realistic state padded to [`BENCH_STATE_BYTES`] of compact JSON.
pub fn bench_state(id: &str) -> ConnectorState {
    let mut state = crate::conformance::sample_state(id);
    let base = state.to_json().len();
    let pad = BENCH_STATE_BYTES.saturating_sub(base + r#","padding":"""#.len());
    state
        .data
        .extra
        .insert("padding".into(), Value::String("p".repeat(pad)));
    state
}

/// Latency figures of one operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Operations completed.
    pub ops: u64,
    /// Operations per second over the whole run.
    pub ops_per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

/// Runs `op(i)` for `i = 0..` until `budget` has passed (at least `min_ops`
/// times), after `warmup` untimed calls.
pub async fn measure<F, Fut>(mut op: F, warmup: u64, min_ops: u64, budget: Duration) -> Sample
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..warmup {
        op(i).await;
    }
    let mut latencies = Vec::with_capacity(4096);
    let start = Instant::now();
    let mut i = warmup;
    while latencies.len() < min_ops as usize || start.elapsed() < budget {
        let t = Instant::now();
        op(i).await;
        latencies.push(t.elapsed());
        i += 1;
    }
    let total = start.elapsed();
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Sample {
        ops: latencies.len() as u64,
        ops_per_sec: latencies.len() as f64 / total.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

/// Measures `store_op` and `floor_op` in `rounds` alternating rounds of
/// `round` each, so both see the same background load; the best round of each counts.
pub async fn paired<S, SF, F, FF>(
    mut store_op: S,
    mut floor_op: F,
    warmup: u64,
    rounds: usize,
    round: Duration,
) -> (Sample, Sample)
where
    S: FnMut(u64) -> SF,
    SF: Future<Output = ()>,
    F: FnMut(u64) -> FF,
    FF: Future<Output = ()>,
{
    let faster = |a: Sample, b: Sample| if a.ops_per_sec >= b.ops_per_sec { a } else { b };
    let mut store = measure(&mut store_op, warmup, 50, round).await;
    let mut floor = measure(&mut floor_op, warmup, 50, round).await;
    for _ in 1..rounds {
        store = faster(store, measure(&mut store_op, 0, 50, round).await);
        floor = faster(floor, measure(&mut floor_op, 0, 50, round).await);
    }
    (store, floor)
}

/// One backend operation beside its floor.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Backend name.
    pub backend: String,
    /// `save` or `load`.
    pub op: String,
    /// Through the `StateStore`.
    pub store: Sample,
    /// The raw floor.
    pub floor: Sample,
    /// What the floor does, e.g. `redis SET 2 KiB`.
    pub floor_desc: String,
}

impl Comparison {
    /// The floor's ops/s divided by the store's: 1.0 is as fast as the floor.
    pub fn ratio(&self) -> f64 {
        self.floor.ops_per_sec / self.store.ops_per_sec
    }

    /// A tab-separated line starting with `STATE-BENCH`, parsed by `cargo xtask bench state`.
    pub fn row(&self) -> String {
        format!(
            "STATE-BENCH\t{}\t{}\t{:.0}\t{:.1}\t{:.1}\t{:.0}\t{:.1}\t{:.1}\t{}",
            self.backend,
            self.op,
            self.store.ops_per_sec,
            micros(self.store.p50),
            micros(self.store.p99),
            self.floor.ops_per_sec,
            micros(self.floor.p50),
            micros(self.floor.p99),
            self.floor_desc
        )
    }
}

fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_state_is_two_kib() {
        assert_eq!(bench_state("bench").to_json().len(), BENCH_STATE_BYTES);
    }

    #[tokio::test(start_paused = true)]
    async fn measure_counts_and_orders_percentiles() {
        let s = measure(
            |i| async move { tokio::time::advance(Duration::from_micros(1 + i % 100)).await },
            5,
            200,
            Duration::ZERO,
        )
        .await;
        assert_eq!(s.ops, 200);
        assert!(s.p50 <= s.p99);
    }
}
