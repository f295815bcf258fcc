//! The statistics the benchmark targets share: ratios of two contenders that ran
//! in the same rounds.

/// The geometric mean of positive values (`None` when empty or any is not positive).
pub fn geometric_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| *v <= 0.0 || !v.is_finite()) {
        return None;
    }
    let log_sum: f64 = values.iter().map(|v| v.ln()).sum();
    Some((log_sum / values.len() as f64).exp())
}

/// `a ÷ b` from two contenders' per-round rates, paired round by round: the
/// geometric mean of the rounds' ratios, over the rounds where both ran (a rate
/// of 0 is a failed round). Pairing cancels what drifts between rounds (the
/// machine's load), and over an even number of rounds in alternating order it
/// cancels what running first or second in a round costs.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| **x > 0.0 && **y > 0.0)
        .map(|(x, y)| x / y)
        .collect();
    geometric_mean(&ratios)
}

/// The order of `n` contenders in round `round` (counted from 1): as listed in
/// odd rounds, reversed in even ones, so that of any two contenders each runs
/// before the other equally often over an even number of rounds.
pub fn round_order(n: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if round.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// `rounds` made even (an odd count gets one more round), at least 2.
pub fn even_rounds(rounds: usize) -> usize {
    let rounds = rounds.max(2);
    rounds + rounds % 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn geometric_mean_of_reciprocal_ratios_is_one() {
        assert!(close(geometric_mean(&[0.8, 1.25]), 1.0));
        assert!(close(geometric_mean(&[2.0, 8.0]), 4.0));
        assert_eq!(geometric_mean(&[]), None);
        assert_eq!(geometric_mean(&[1.0, 0.0]), None);
        assert_eq!(geometric_mean(&[1.0, f64::INFINITY]), None);
    }

    #[test]
    fn paired_ratio_pairs_rounds_and_skips_failed_ones() {
        // Load doubles each round: both contenders feel it alike, the ratio stays 0.9.
        let ours = [90.0, 180.0, 360.0, 720.0];
        let floor = [100.0, 200.0, 400.0, 800.0];
        assert!(close(paired_ratio(&ours, &floor), 0.9));
        // An order effect that alternates cancels out.
        assert!(close(paired_ratio(&[80.0, 125.0], &[100.0, 100.0]), 1.0));
        // A failed round (0) leaves that pair out.
        assert!(close(paired_ratio(&[0.0, 50.0], &[100.0, 100.0]), 0.5));
        assert_eq!(paired_ratio(&[0.0], &[100.0]), None);
        assert_eq!(paired_ratio(&[], &[]), None);
    }

    #[test]
    fn rounds_alternate_and_are_even() {
        assert_eq!(round_order(3, 1), [0, 1, 2]);
        assert_eq!(round_order(3, 2), [2, 1, 0]);
        assert_eq!(even_rounds(1), 2);
        assert_eq!(even_rounds(3), 4);
        assert_eq!(even_rounds(4), 4);
    }
}
