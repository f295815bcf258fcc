//! The targets of `bench bulk`, checked on the rows: on the null server, ours
//! against the best peer in docs per CPU-second; on each real server, ours
//! against the best peer and against the raw replay in docs/s, as the
//! geometric mean of paired rounds. A missed target is a line saying so.

use super::{Contender, Row, Size, Target};

/// Ours vs the best peer in docs per CPU-second on the null server.
pub(super) const MIN_CPU_ADVANTAGE: f64 = 3.0;
/// Ours vs the raw replay in docs/s on a real server.
pub(super) const MAX_SLOWDOWN: f64 = 0.05;

fn find(rows: &[Row], t: Target, s: Size, c: Contender) -> Option<&Row> {
    rows.iter()
        .find(|r| r.target == t && r.size == s && r.contender == c)
}

/// The peers of one workload that indexed every document.
fn complete_peers(rows: &[Row], t: Target, s: Size) -> impl Iterator<Item = &Row> {
    rows.iter()
        .filter(move |r| r.target == t && r.size == s && r.contender.is_peer() && r.complete())
}

/// The peer with the most docs per CPU-second (ties: the first).
fn best_peer_by_cpu(rows: &[Row], t: Target, s: Size) -> Option<(&Row, f64)> {
    complete_peers(rows, t, s)
        .filter_map(|r| Some((r, r.docs_per_cpu_sec()?)))
        .fold(None, |best: Option<(&Row, f64)>, (r, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((r, v)),
        })
}

/// The ratios of `a`'s docs/s to `b`'s in the rounds both ran, and their geometric mean.
fn paired(a: &Row, b: &Row) -> Option<(f64, Vec<f64>)> {
    let ratios: Vec<f64> = a
        .round_rates
        .iter()
        .zip(&b.round_rates)
        .filter(|(x, y)| **x > 0.0 && **y > 0.0)
        .map(|(x, y)| x / y)
        .collect();
    Some((geometric_mean(&ratios)?, ratios))
}

/// The peer ours beats by the least (paired rounds), with that ratio and the rounds'.
fn best_peer_by_rate<'a>(
    rows: &'a [Row],
    ours: &Row,
    t: Target,
    s: Size,
) -> Option<(&'a Row, f64, Vec<f64>)> {
    complete_peers(rows, t, s)
        .filter_map(|p| {
            let (ratio, rounds) = paired(ours, p)?;
            Some((p, ratio, rounds))
        })
        .fold(
            None,
            |best: Option<(&Row, f64, Vec<f64>)>, cand| match best {
                Some(b) if b.1 <= cand.1 => Some(b),
                _ => Some(cand),
            },
        )
}

fn percentages(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|r| format!("{:.0}%", r * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Peers left out of a comparison because they lost documents or did not run.
fn left_out(rows: &[Row], t: Target, s: Size) -> String {
    let out: Vec<&str> = rows
        .iter()
        .filter(|r| r.target == t && r.size == s && r.contender.is_peer() && !r.complete())
        .filter(|r| r.measured().is_some())
        .map(|r| r.contender.short())
        .collect();
    if out.is_empty() {
        String::new()
    } else {
        format!(" (left out, documents lost: {})", out.join(", "))
    }
}

/// Every target of the issue, per document size: (met, explanation).
pub(super) fn checks(rows: &[Row]) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for size in [Size::Small, Size::Large] {
        out.push(null_check(rows, size));
        for target in [Target::Elasticsearch, Target::OpenSearch] {
            if !rows.iter().any(|r| r.target == target && r.size == size) {
                continue;
            }
            out.push(real_peer_check(rows, target, size));
            out.push(real_floor_check(rows, target, size));
        }
    }
    out
}

fn null_check(rows: &[Row], size: Size) -> (bool, String) {
    let what = format!(
        "null server, {} docs: bulk ≥ {MIN_CPU_ADVANTAGE}x the best peer's docs per CPU-second",
        size.label()
    );
    let ours = find(rows, Target::Null, size, Contender::Ours);
    let Some(o) = ours else {
        return (false, format!("{what}: not measured"));
    };
    let Some(a) = o.docs_per_cpu_sec() else {
        return (false, format!("{what}: not measured ({})", why(o)));
    };
    let Some((peer, b)) = best_peer_by_cpu(rows, Target::Null, size) else {
        return (false, format!("{what}: no peer measured"));
    };
    let ratio = a / b;
    (
        ratio >= MIN_CPU_ADVANTAGE && o.complete(),
        format!(
            "{what} ({}): {a:.0} vs {b:.0} = {ratio:.2}x{}{}",
            peer.label,
            lost_suffix(o),
            left_out(rows, Target::Null, size)
        ),
    )
}

fn real_peer_check(rows: &[Row], target: Target, size: Size) -> (bool, String) {
    let what = format!(
        "{}, {} docs: bulk's docs/s ≥ the best peer's",
        target.label(),
        size.label()
    );
    let Some(o) = find(rows, target, size, Contender::Ours) else {
        return (false, format!("{what}: not measured"));
    };
    if o.measured().is_none() {
        return (false, format!("{what}: not measured ({})", why(o)));
    }
    let Some((peer, ratio, rounds)) = best_peer_by_rate(rows, o, target, size) else {
        return (false, format!("{what}: no peer measured"));
    };
    (
        ratio >= 1.0 && o.complete(),
        format!(
            "{what} ({}): geometric mean of the rounds' ratios {:.1}% of the peer's (rounds: \
             {}; best runs {:.0} vs {:.0} docs/s){}{}",
            peer.label,
            ratio * 100.0,
            percentages(&rounds),
            o.docs_per_sec().unwrap_or(0.0),
            peer.docs_per_sec().unwrap_or(0.0),
            lost_suffix(o),
            left_out(rows, target, size)
        ),
    )
}

fn real_floor_check(rows: &[Row], target: Target, size: Size) -> (bool, String) {
    let what = format!(
        "{}, {} docs: bulk within {:.0}% of the raw replay's docs/s",
        target.label(),
        size.label(),
        MAX_SLOWDOWN * 100.0
    );
    let (Some(o), Some(f)) = (
        find(rows, target, size, Contender::Ours),
        find(rows, target, size, Contender::Raw),
    ) else {
        return (false, format!("{what}: not measured"));
    };
    let (Some(a), Some(b)) = (o.docs_per_sec(), f.docs_per_sec()) else {
        return (
            false,
            format!("{what}: not measured ({})", why_missing(o, f)),
        );
    };
    // Whichever of the two runs first in a round can be measurably slower on
    // a real server; the order alternates over an even number of rounds, and
    // the geometric mean of the rounds' ratios cancels that factor.
    let (ratio, rounds) = paired(o, f).unwrap_or((a / b, Vec::new()));
    (
        ratio >= 1.0 - MAX_SLOWDOWN && o.complete(),
        format!(
            "{what}: geometric mean of the rounds' ratios {:.1}% of the floor (rounds: \
             {}; best runs {a:.0} vs {b:.0} docs/s){}",
            ratio * 100.0,
            percentages(&rounds),
            lost_suffix(o)
        ),
    )
}

/// The geometric mean of positive values.
pub(super) fn geometric_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| *v <= 0.0) {
        return None;
    }
    let log_sum: f64 = values.iter().map(|v| v.ln()).sum();
    Some((log_sum / values.len() as f64).exp())
}

fn lost_suffix(row: &Row) -> &'static str {
    if row.complete() {
        ""
    } else {
        " (but it lost documents)"
    }
}

fn why(row: &Row) -> String {
    row.outcome.as_ref().err().cloned().unwrap_or_default()
}

fn why_missing(a: &Row, b: &Row) -> String {
    [a, b]
        .iter()
        .filter_map(|r| r.outcome.as_ref().err())
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::super::tests::row;
    use super::*;

    #[test]
    fn the_null_check_takes_the_peer_with_the_least_cpu() {
        let rows = vec![
            row(Target::Null, Contender::Ours, 1000, 1.0, 1.0),
            row(Target::Null, Contender::Raw, 1000, 1.0, 0.1),
            row(Target::Null, Contender::Olivere, 1000, 1.0, 4.0),
            row(Target::Null, Contender::GoElasticsearch, 1000, 1.0, 3.2),
            row(Target::Null, Contender::OsPyParallel, 1000, 1.0, 9.0),
        ];
        let best = best_peer_by_cpu(&rows, Target::Null, Size::Small);
        assert_eq!(
            best.map(|(r, _)| r.contender),
            Some(Contender::GoElasticsearch)
        );
        let c = checks(&rows);
        assert!(c[0].0, "{c:?}");
        assert!(c[0].1.contains("goes") && c[0].1.contains("3.20x"), "{c:?}");
        // The large size was not run at all.
        assert!(!c[1].0 && c[1].1.contains("not measured"), "{c:?}");
    }

    #[test]
    fn a_peer_that_lost_documents_is_not_the_yardstick() {
        let mut fast_but_lossy = row(Target::Null, Contender::ElasticsearchJava, 1000, 1.0, 0.1);
        if let Ok(m) = &mut fast_but_lossy.outcome {
            m.ok = 10;
        }
        let rows = vec![
            row(Target::Null, Contender::Ours, 1000, 1.0, 1.0),
            row(Target::Null, Contender::Olivere, 1000, 1.0, 2.0),
            fast_but_lossy,
        ];
        let c = checks(&rows);
        assert!(!c[0].0, "2x is not 3x: {c:?}");
        assert!(c[0].1.contains("2.00x"), "{c:?}");
        assert!(
            c[0].1
                .contains("left out, documents lost: elasticsearch-java"),
            "{c:?}"
        );
    }

    #[test]
    fn real_servers_compare_with_the_hardest_peer_in_paired_rounds() {
        let mut ours = row(Target::Elasticsearch, Contender::Ours, 1000, 1.0, 1.0);
        let mut raw = row(Target::Elasticsearch, Contender::Raw, 1000, 1.0, 1.0);
        let mut goes = row(
            Target::Elasticsearch,
            Contender::GoElasticsearch,
            1000,
            1.0,
            1.0,
        );
        let mut java = row(
            Target::Elasticsearch,
            Contender::ElasticsearchJava,
            1000,
            1.0,
            1.0,
        );
        // The server drifts between rounds; what counts is each round's ratio.
        ours.round_rates = vec![100.0, 200.0, 300.0, 400.0];
        raw.round_rates = vec![100.0, 210.0, 290.0, 400.0];
        goes.round_rates = vec![90.0, 180.0, 270.0, 360.0];
        java.round_rates = vec![98.0, 196.0, 294.0, 392.0];
        let rows = vec![ours.clone(), raw.clone(), goes.clone(), java.clone()];
        let best = best_peer_by_rate(&rows, &ours, Target::Elasticsearch, Size::Small);
        assert_eq!(
            best.as_ref().map(|(r, _, _)| r.contender),
            Some(Contender::ElasticsearchJava)
        );
        let c = checks(&rows);
        // [null (not measured), ES peer, ES floor]
        assert_eq!(c.len(), 4, "{c:?}");
        assert!(c[1].0, "{c:?}");
        assert!(c[1].1.contains("102.0% of the peer's"), "{c:?}");
        assert!(c[2].0, "{c:?}");
        // A peer faster than ours in every round: missed, and said.
        java.round_rates = vec![110.0, 220.0, 330.0, 440.0];
        let c = checks(&[ours, raw, goes, java]);
        assert!(!c[1].0, "{c:?}");
        assert!(c[1].1.contains("90.9% of the peer's"), "{c:?}");
    }

    #[test]
    fn the_floor_check_pairs_rounds() {
        let mut ours = row(Target::OpenSearch, Contender::Ours, 1000, 1.0, 1.0);
        let mut raw = row(Target::OpenSearch, Contender::Raw, 1000, 1.0, 1.0);
        // Whoever runs first is 5% slower; the order alternates: it cancels.
        ours.round_rates = vec![95.0, 210.0, 285.0, 420.0];
        raw.round_rates = vec![100.0, 200.0, 300.0, 400.0];
        let ok = real_floor_check(
            &[ours.clone(), raw.clone()],
            Target::OpenSearch,
            Size::Small,
        );
        assert!(ok.0, "{ok:?}");
        assert!(ok.1.contains("99.9% of the floor"), "{ok:?}");
        // Consistently 10% slower fails.
        ours.round_rates = vec![90.0, 180.0, 270.0, 360.0];
        let slow = real_floor_check(&[ours, raw], Target::OpenSearch, Size::Small);
        assert!(!slow.0, "{slow:?}");
        let g = geometric_mean(&[0.8, 1.25]).unwrap();
        assert!((g - 1.0).abs() < 1e-12, "{g}");
        assert_eq!(geometric_mean(&[]), None);
        assert_eq!(geometric_mean(&[1.0, 0.0]), None);
    }

    #[test]
    fn lost_documents_show_and_fail_the_check() {
        let mut ours = row(Target::Elasticsearch, Contender::Ours, 1000, 1.0, 1.0);
        if let Ok(m) = &mut ours.outcome {
            m.count = Some(990);
        }
        assert!(ours.note().contains("LOST DOCUMENTS: _count 990 of 1000"));
        let rows = vec![
            ours,
            row(Target::Elasticsearch, Contender::Raw, 1000, 1.0, 1.0),
        ];
        assert!(!real_floor_check(&rows, Target::Elasticsearch, Size::Small).0);
    }

    #[test]
    fn no_peer_is_a_missed_target() {
        let rows = vec![
            row(Target::OpenSearch, Contender::Ours, 1000, 1.0, 1.0),
            row(Target::OpenSearch, Contender::Raw, 1000, 1.0, 1.0),
        ];
        let c = real_peer_check(&rows, Target::OpenSearch, Size::Small);
        assert!(!c.0 && c.1.contains("no peer measured"), "{c:?}");
    }
}
