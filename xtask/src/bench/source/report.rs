//! `bench source`'s results: the rows of one server, its tables and its target
//! checks. Pure: no IO, so the arithmetic and the wording are unit-tested.

use std::fmt::Write as _;

use crate::bench::stats::paired_ratio;
use crate::util;

/// es-connector's docs/s over helpers.scan's, per mode (paired rounds).
pub const TARGET_VS_SCAN: f64 = 1.5;
/// es-connector's docs/s over the raw loop's of the same mode (paired rounds).
pub const TARGET_VS_RAW: f64 = 0.95;
/// Reading 4x the documents may cost at most this factor of peak RSS.
pub const MAX_RSS_GROWTH: f64 = 1.25;

/// How the index is paged through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `search_after` inside a point in time (`pagination = "search_after"`).
    Pit,
    /// The scroll API (`pagination = "scroll"`).
    Scroll,
    /// `backfill = true`: index order (`_shard_doc`) inside a point in time, up to
    /// its last document.
    Backfill,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Pit => "search_after + PIT",
            Mode::Scroll => "scroll",
            Mode::Backfill => "backfill (PIT, index order)",
        }
    }
}

/// One contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// `es-connector run --once` with `slices` readers.
    Connector { mode: Mode, slices: u32 },
    /// The floor: `source_scan raw` in that mode.
    Raw(Mode),
    /// The official Python client's `helpers.scan` (scroll in index order).
    PyScan,
    /// Our point in time + `search_after` loop on the official Python client.
    PyPit,
}

impl Peer {
    /// Its mode (helpers.scan scrolls, in index order rather than sorted).
    pub fn mode(self) -> Mode {
        match self {
            Peer::Connector { mode, .. } | Peer::Raw(mode) => mode,
            Peer::PyScan => Mode::Scroll,
            Peer::PyPit => Mode::Pit,
        }
    }
}

/// A contender's measurements on one server.
#[derive(Debug, Clone)]
pub struct Row {
    pub peer: Peer,
    pub label: String,
    /// docs/s of each round, in round order; 0 where the round failed or read
    /// the wrong number of documents.
    pub rates: Vec<f64>,
    /// Least CPU seconds (user+system) of a round minus the contender's start-up
    /// CPU, per million documents.
    pub cpu_per_million: Option<f64>,
    /// Largest peak RSS (VmHWM) of its rounds.
    pub rss_kib: u64,
    /// Why it did not run, or what went wrong in a round.
    pub note: String,
}

impl Row {
    pub fn best(&self) -> Option<f64> {
        self.rates
            .iter()
            .copied()
            .filter(|r| *r > 0.0)
            .max_by(f64::total_cmp)
    }
}

/// One server's run.
#[derive(Debug, Clone)]
pub struct Server {
    /// e.g. `elasticsearch 9.5.3 (jars)`.
    pub name: String,
    /// Names its chart: `elasticsearch` or `opensearch`.
    pub product: &'static str,
    pub shards: u32,
    pub docs: u64,
    pub rows: Vec<Row>,
    /// es-connector (search_after + PIT) reading a quarter of the documents:
    /// (documents, least peak RSS KiB of its rounds).
    pub small: Option<(u64, u64)>,
}

const MAIN_HEADER: [&str; 8] = [
    "contender",
    "mode",
    "docs/s (best)",
    "vs raw loop (paired)",
    "vs helpers.scan (paired)",
    "CPU s / 1M docs",
    "peak RSS MiB",
    "note",
];

const SLICE_HEADER: [&str; 5] = [
    "mode",
    "slices",
    "docs/s (best)",
    "vs slices = 1 (paired)",
    "note",
];

/// The modes of the tables and the chart, in order.
const MODES: [Mode; 3] = [Mode::Pit, Mode::Scroll, Mode::Backfill];

impl Server {
    fn find(&self, peer: Peer) -> Option<&Row> {
        self.rows.iter().find(|r| r.peer == peer)
    }

    fn ratio(&self, a: Peer, b: Peer) -> Option<f64> {
        paired_ratio(&self.find(a)?.rates, &self.find(b)?.rates)
    }

    fn main_cells(&self) -> Vec<[String; 8]> {
        let pct = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.0}%", 100.0 * r));
        let times = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
        self.rows
            .iter()
            .filter(|r| !matches!(r.peer, Peer::Connector { slices, .. } if slices > 1))
            .map(|row| {
                let vs_raw = match row.peer {
                    Peer::Raw(_) => None,
                    peer => self.ratio(peer, Peer::Raw(peer.mode())),
                };
                let vs_scan = match row.peer {
                    Peer::PyScan => None,
                    peer => self.ratio(peer, Peer::PyScan),
                };
                [
                    row.label.clone(),
                    row.peer.mode().label().into(),
                    row.best().map_or("-".into(), |r| format!("{r:.0}")),
                    pct(vs_raw),
                    times(vs_scan),
                    row.cpu_per_million
                        .map_or("-".into(), |c| format!("{c:.1}")),
                    if row.rss_kib > 0 {
                        format!("{:.1}", row.rss_kib as f64 / 1024.0)
                    } else {
                        "-".into()
                    },
                    row.note.clone(),
                ]
            })
            .collect()
    }

    /// The modes read with several slices, and each of their es-connector rows.
    fn slice_cells(&self) -> Vec<[String; 5]> {
        let sliced = |mode: Mode| {
            self.rows.iter().any(
                |r| matches!(r.peer, Peer::Connector { mode: m, slices } if m == mode && slices > 1),
            )
        };
        self.rows
            .iter()
            .filter_map(|row| match row.peer {
                Peer::Connector { mode, slices } if sliced(mode) => Some((mode, slices, row)),
                _ => None,
            })
            .map(|(mode, slices, row)| {
                let one = Peer::Connector { mode, slices: 1 };
                [
                    mode.label().into(),
                    slices.to_string(),
                    row.best().map_or("-".into(), |r| format!("{r:.0}")),
                    if slices == 1 {
                        "100%".into()
                    } else {
                        self.ratio(row.peer, one)
                            .map_or("-".into(), |r| format!("{:.0}%", 100.0 * r))
                    },
                    row.note.clone(),
                ]
            })
            .collect()
    }

    /// Both tables as aligned text.
    pub fn text(&self) -> String {
        format!(
            "{}: {} documents, {} shards\n{}\nsliced reads (es-connector):\n{}",
            self.name,
            self.docs,
            self.shards,
            util::aligned_table(MAIN_HEADER, &self.main_cells()),
            util::aligned_table(SLICE_HEADER, &self.slice_cells()),
        )
    }

    /// Both tables in markdown.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "### {}\n\n{} documents in one index of {} primary shards (no replica).\n\n",
            self.name, self.docs, self.shards
        );
        md.push_str(&markdown_table(MAIN_HEADER, &self.main_cells()));
        let _ = write!(
            md,
            "\nSliced reads: es-connector with `slices` = 1, 2, 4 on the {}-shard index, \
             `pagination = \"search_after\"` (point in time), sorted and with `backfill = true`.\n\n",
            self.shards
        );
        md.push_str(&markdown_table(SLICE_HEADER, &self.slice_cells()));
        md
    }

    /// docs/s (best round) of every contender, grouped by mode: the series are
    /// the contenders' labels (one per kind, whichever modes it ran in), in
    /// table order; `None` where a contender has no run in a mode.
    pub fn bars(&self) -> Bars {
        let modes = MODES;
        let mut series: Vec<String> = Vec::new();
        for row in &self.rows {
            if !series.contains(&row.label) {
                series.push(row.label.clone());
            }
        }
        let values = series
            .iter()
            .map(|label| {
                modes
                    .iter()
                    .map(|&mode| {
                        self.rows
                            .iter()
                            .find(|r| &r.label == label && r.peer.mode() == mode)
                            .and_then(Row::best)
                    })
                    .collect()
            })
            .collect();
        Bars {
            title: format!("{}: reading an index, docs/s (higher is better)", self.name),
            groups: modes.iter().map(|m| m.label().to_string()).collect(),
            series,
            values,
        }
    }

    /// The targets: (met, sentence with the target beside the measured value).
    pub fn checks(&self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        for mode in MODES {
            let ours = Peer::Connector { mode, slices: 1 };
            let what = format!("{}, {}", self.name, mode.label());
            out.push(self.check(
                ours,
                Peer::PyScan,
                TARGET_VS_SCAN,
                &format!("{what}: es-connector docs/s vs helpers.scan"),
                |r| format!("{r:.2}x"),
            ));
            out.push(self.check(
                ours,
                Peer::Raw(mode),
                TARGET_VS_RAW,
                &format!("{what}: es-connector docs/s vs the raw loop"),
                |r| format!("{:.0}%", 100.0 * r),
            ));
        }
        if let (Some(big), Some((small_docs, small_kib))) = (
            self.find(Peer::Connector {
                mode: Mode::Pit,
                slices: 1,
            }),
            self.small,
        ) && big.rss_kib > 0
            && small_kib > 0
        {
            let growth = big.rss_kib as f64 / small_kib as f64;
            out.push((
                growth <= MAX_RSS_GROWTH,
                format!(
                    "{}: es-connector peak RSS {:.1} MiB reading {small_docs} documents, {:.1} MiB \
                     reading {} (x{growth:.2}; target: at most x{MAX_RSS_GROWTH}, memory bounded \
                     by the batch, not the index)",
                    self.name,
                    small_kib as f64 / 1024.0,
                    big.rss_kib as f64 / 1024.0,
                    self.docs
                ),
            ));
        }
        out
    }

    fn check(
        &self,
        a: Peer,
        b: Peer,
        target: f64,
        what: &str,
        show: impl Fn(f64) -> String,
    ) -> (bool, String) {
        match self.ratio(a, b) {
            Some(r) => {
                let best = |p| {
                    self.find(p)
                        .and_then(Row::best)
                        .map_or("-".into(), |r| format!("{r:.0}"))
                };
                (
                    r >= target,
                    format!(
                        "{what}: measured {} (target: at least {}; paired geometric mean of the \
                         rounds; best runs {} vs {} docs/s)",
                        show(r),
                        show(target),
                        best(a),
                        best(b)
                    ),
                )
            }
            None => {
                let why = [a, b]
                    .iter()
                    .filter_map(|p| self.find(*p))
                    .map(|r| r.note.as_str())
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    false,
                    format!(
                        "{what}: not measured (target: at least {}){}",
                        show(target),
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        }
                    ),
                )
            }
        }
    }
}

/// What one server's chart shows (see [`Server::bars`]), for `plot::Chart`.
#[derive(Debug, Clone)]
pub struct Bars {
    pub title: String,
    pub groups: Vec<String>,
    pub series: Vec<String>,
    /// `values[s][g]`: series `s` in group `g`.
    pub values: Vec<Vec<Option<f64>>>,
}

fn markdown_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(N)));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(peer: Peer, rates: &[f64]) -> Row {
        Row {
            peer,
            label: format!("{peer:?}"),
            rates: rates.to_vec(),
            cpu_per_million: Some(1.5),
            rss_kib: 10 * 1024,
            note: String::new(),
        }
    }

    fn server() -> Server {
        let c = |mode, slices| Peer::Connector { mode, slices };
        Server {
            name: "es".into(),
            product: "elasticsearch",
            shards: 4,
            docs: 1000,
            rows: vec![
                row(c(Mode::Pit, 1), &[960.0, 1920.0]),
                row(Peer::Raw(Mode::Pit), &[1000.0, 2000.0]),
                row(Peer::PyPit, &[500.0, 1000.0]),
                row(c(Mode::Scroll, 1), &[900.0, 1800.0]),
                row(Peer::Raw(Mode::Scroll), &[1000.0, 2000.0]),
                row(Peer::PyScan, &[800.0, 1600.0]),
                row(c(Mode::Backfill, 1), &[1500.0, 3000.0]),
                row(Peer::Raw(Mode::Backfill), &[1550.0, 3100.0]),
                row(c(Mode::Pit, 2), &[1920.0, 3840.0]),
                row(c(Mode::Pit, 4), &[0.0, 5760.0]),
                row(c(Mode::Backfill, 4), &[3000.0, 6000.0]),
            ],
            small: Some((250, 9 * 1024)),
        }
    }

    #[test]
    fn checks_use_paired_ratios_per_mode() {
        let checks = server().checks();
        let text: Vec<String> = checks.iter().map(|(ok, t)| format!("{ok} {t}")).collect();
        assert_eq!(checks.len(), 7, "{text:#?}");
        // PIT: 960/800 = 1.2x helpers.scan (missed), 96% of raw (met).
        assert!(
            text[0].starts_with("false es, search_after + PIT"),
            "{}",
            text[0]
        );
        assert!(
            text[0].contains("measured 1.20x (target: at least 1.50x"),
            "{}",
            text[0]
        );
        assert!(text[1].starts_with("true "), "{}", text[1]);
        assert!(
            text[1].contains("measured 96% (target: at least 95%"),
            "{}",
            text[1]
        );
        // Scroll: 90% of raw, missed.
        assert!(text[3].starts_with("false ") && text[3].contains("measured 90%"));
        // Backfill: 1500/800 = 1.88x helpers.scan, 97% of its raw loop; both met.
        assert!(
            text[4].starts_with("true es, backfill (PIT, index order)")
                && text[4].contains("measured 1.88x"),
            "{}",
            text[4]
        );
        assert!(text[5].starts_with("true ") && text[5].contains("measured 97%"));
        // Memory: 10 / 9 MiB = x1.11, met.
        assert!(
            text[6].starts_with("true ") && text[6].contains("x1.11"),
            "{}",
            text[6]
        );
    }

    #[test]
    fn a_missing_peer_is_a_missed_target_saying_why() {
        let mut s = server();
        s.rows.retain(|r| r.peer != Peer::PyScan);
        s.rows.push(Row {
            note: "not run: no PyPI".into(),
            rates: vec![0.0, 0.0],
            ..row(Peer::PyScan, &[])
        });
        let checks = s.checks();
        assert!(!checks[0].0);
        assert!(
            checks[0]
                .1
                .contains("not measured (target: at least 1.50x): not run: no PyPI"),
            "{}",
            checks[0].1
        );
    }

    #[test]
    fn bars_group_each_contender_by_mode() {
        let mut s = server();
        // Labelled as the bench labels them: one label per kind of contender.
        for row in &mut s.rows {
            row.label = match row.peer {
                Peer::Connector { slices: 1, .. } => "es-connector".into(),
                Peer::Connector { slices, .. } => format!("slices = {slices}"),
                Peer::Raw(_) => "raw".into(),
                Peer::PyPit => "py pit".into(),
                Peer::PyScan => "py scan".into(),
            };
        }
        s.rows.retain(|r| r.peer != Peer::PyPit);
        s.rows.push(Row {
            label: "py pit".into(),
            note: "not run: no PyPI".into(),
            ..row(Peer::PyPit, &[])
        });
        let bars = s.bars();
        assert_eq!(
            bars.groups,
            [
                "search_after + PIT",
                "scroll",
                "backfill (PIT, index order)"
            ]
        );
        assert_eq!(
            bars.series,
            [
                "es-connector",
                "raw",
                "py scan",
                "slices = 2",
                "slices = 4",
                "py pit"
            ]
        );
        assert_eq!(
            bars.values,
            [
                [Some(1920.0), Some(1800.0), Some(3000.0)],
                [Some(2000.0), Some(2000.0), Some(3100.0)],
                [None, Some(1600.0), None],
                [Some(3840.0), None, None],
                [Some(5760.0), None, Some(6000.0)],
                [None, None, None],
            ]
        );
        assert!(bars.title.starts_with("es: "), "{}", bars.title);
    }

    #[test]
    fn tables_show_ratios_and_slices() {
        let s = server();
        let text = s.text();
        assert!(text.contains("es: 1000 documents, 4 shards"), "{text}");
        let md = s.markdown();
        // Main table: header, rule, 8 rows; slices table: header, rule, 3 + 2 rows.
        assert_eq!(
            md.lines().filter(|l| l.starts_with('|')).count(),
            10 + 7,
            "{md}"
        );
        // es-connector PIT: 96% of raw, 1.20x helpers.scan.
        assert!(md.contains("| 1920 | 96% | 1.20x | 1.5 | 10.0 |"), "{md}");
        // slices 2: 200% of slices 1; slices 4 paired on its one good round: 300%.
        assert!(
            md.contains("| search_after + PIT | 2 | 3840 | 200% |"),
            "{md}"
        );
        assert!(
            md.contains("| search_after + PIT | 4 | 5760 | 300% |"),
            "{md}"
        );
        assert!(
            md.contains("| backfill (PIT, index order) | 4 | 6000 | 200% |"),
            "{md}"
        );
    }
}
