//! `docs/compatibility.md`: what `cargo xtask test --matrix` found, per server
//! line and capability. Each capability is a set of the workspace's tests (run
//! again by name against the line, their results counted from libtest's
//! summary) and of e2e scenarios (their outcome in that line's pass).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::e2e::{Outcome, Summary};
use crate::services::Session;
use crate::{step, util};

/// Tests of one target, by name filter (libtest: a test runs if its name
/// contains one of the filters; none: all of the target).
struct Tests {
    package: &'static str,
    target: &'static str,
    filters: &'static [&'static str],
}

struct Capability {
    name: &'static str,
    tests: &'static [Tests],
    scenarios: &'static [&'static str],
    /// Needs an Iggy server (`IGGY_TCP_ADDRESS`).
    iggy: bool,
}

const fn tests(
    package: &'static str,
    target: &'static str,
    filters: &'static [&'static str],
) -> Tests {
    Tests {
        package,
        target,
        filters,
    }
}

const CAPABILITIES: [Capability; 8] = [
    Capability {
        name: "search_after + point in time",
        tests: &[
            tests(
                "connector",
                "source_reads",
                &[
                    "ten_thousand_documents_with_one_timestamp_search_after",
                    "an_expired_point_in_time_resumes",
                    "backfill_then_only_new_documents",
                ],
            ),
            tests("connector", "pit_tiebreaker", &[]),
        ],
        scenarios: &[
            "source-shared-timestamps",
            "source-sigkill-restart",
            "source-streaming-refresh",
        ],
        iggy: false,
    },
    Capability {
        name: "`_shard_doc` tiebreaker",
        tests: &[tests(
            "connector",
            "source_reads",
            &["shared_timestamps_without_tiebreaker_use_shard_doc"],
        )],
        scenarios: &[],
        iggy: false,
    },
    Capability {
        name: "scroll",
        tests: &[tests(
            "connector",
            "source_reads",
            &[
                "ten_thousand_documents_with_one_timestamp_scroll",
                "an_expired_scroll_resumes",
            ],
        )],
        scenarios: &[],
        iggy: false,
    },
    Capability {
        name: "slices (point in time and scroll)",
        tests: &[tests("connector", "source_slices", &[])],
        scenarios: &[],
        iggy: false,
    },
    Capability {
        name: "cursor mode (no point in time)",
        tests: &[tests(
            "connector",
            "source_reads",
            &["ten_thousand_documents_with_one_timestamp_cursor"],
        )],
        scenarios: &[],
        iggy: false,
    },
    Capability {
        name: "state-es compare-and-set (`if_seq_no`)",
        tests: &[
            tests("state-es", "conformance", &[]),
            tests("state-es", "elasticsearch", &[]),
        ],
        scenarios: &["state-round-trip"],
        iggy: false,
    },
    Capability {
        name: "bulk per-item retry",
        tests: &[
            tests("bulk", "faults", &[]),
            tests(
                "connector",
                "outputs",
                &["elasticsearch_output_reports_refused_documents"],
            ),
        ],
        scenarios: &["source-es-to-es"],
        iggy: false,
    },
    Capability {
        name: "Iggy → Elasticsearch sink",
        tests: &[
            tests("connector", "iggy_sink_partitions", &[]),
            tests(
                "connector",
                "iggy_output",
                &["the_sink_dead_letters_refused_documents"],
            ),
        ],
        scenarios: &["iggy-sink-sigkill"],
        iggy: true,
    },
];

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub enum Cell {
    Pass(String),
    Fail(String),
    NotRun(String),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Pass(s) => format!("pass ({s})"),
            Cell::Fail(s) => format!("**FAIL** ({s})"),
            Cell::NotRun(s) => format!("not run ({s})"),
        }
    }
}

/// One server line's column.
#[derive(Debug, Clone)]
pub struct Column {
    pub line: String,
    pub server: String,
    /// `(product, version)` as the server reported it.
    pub version: Option<(String, String)>,
    pub cells: Vec<Cell>,
}

impl Column {
    /// No capability failed (not run is not a failure).
    pub fn passed(&self) -> bool {
        !self.cells.iter().any(|c| matches!(c, Cell::Fail(_)))
    }
}

/// libtest's `test result: ok. 3 passed; 0 failed; ...` lines, summed:
/// (passed, failed).
fn counts(output: &str) -> (usize, usize) {
    let mut passed = 0;
    let mut failed = 0;
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next())
                && let Ok(n) = n.parse::<usize>()
            {
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    _ => {}
                }
            }
        }
    }
    (passed, failed)
}

/// Runs every capability's tests against `view`'s `ES_URL` and reads the
/// scenarios' outcomes from that line's e2e run.
pub fn column(
    view: &Session,
    line: &str,
    server: &str,
    version: Option<(String, String)>,
    e2e: Option<&Summary>,
) -> Column {
    let iggy = view.get("IGGY_TCP_ADDRESS").is_some();
    let mut cells = Vec::new();
    for capability in &CAPABILITIES {
        step!("matrix: {line}: {}", capability.name);
        if capability.iggy && !iggy {
            cells.push(Cell::NotRun("no Iggy server".into()));
            continue;
        }
        let mut passed = 0;
        let mut failures = Vec::new();
        for t in capability.tests {
            let mut cmd = util::cargo();
            cmd.args([
                "test",
                "--all-features",
                "-p",
                t.package,
                "--test",
                t.target,
            ])
            .arg("--")
            .args(t.filters)
            .envs(view.vars.iter().map(|(k, v)| (k, v)))
            .env("XTASK_REQUIRE_SERVICES", "1");
            match util::capture(&mut cmd, Duration::from_secs(900)) {
                Ok(out) => {
                    let (p, f) = counts(&out.stdout);
                    passed += p;
                    if !out.status.success() || f > 0 {
                        failures.push(format!("{}/{}: {f} failed", t.package, t.target));
                        let all = out.all();
                        let lines: Vec<&str> = all.lines().collect();
                        step!("{}", lines[lines.len().saturating_sub(30)..].join("\n"));
                    } else if p == 0 {
                        failures.push(format!("{}/{}: no test ran", t.package, t.target));
                    }
                }
                Err(e) => failures.push(format!("{}/{}: {e:#}", t.package, t.target)),
            }
        }
        let mut scenarios = 0;
        for name in capability.scenarios {
            match e2e.and_then(|s| s.scenarios.iter().find(|(n, _)| n == name)) {
                Some((_, Outcome::Passed)) => scenarios += 1,
                Some((_, Outcome::Failed)) => failures.push(format!("e2e {name} failed")),
                Some((_, Outcome::NotRun)) | None => {
                    failures.push(format!("e2e {name} did not run"))
                }
            }
        }
        let tests = if passed == 1 { "test" } else { "tests" };
        let what = if capability.scenarios.is_empty() {
            format!("{passed} {tests}")
        } else {
            format!("{passed} {tests}, {scenarios} e2e")
        };
        cells.push(if failures.is_empty() {
            Cell::Pass(what)
        } else {
            Cell::Fail(failures.join("; "))
        });
    }
    Column {
        line: line.to_owned(),
        server: server.to_owned(),
        version,
        cells,
    }
}

/// Whether the server has `_shard_doc`.
fn has_shard_doc(version: &Option<(String, String)>) -> Option<bool> {
    let (product, version) = version.as_ref()?;
    Some(crate::search_server::supports_shard_doc(product, version))
}

/// Writes `docs/compatibility.md` from the columns.
pub fn write(columns: &[Column], date: &str) -> Result<()> {
    let mut md = String::new();
    md.push_str(
        "# Compatibility\n\n\
         Written by `cargo xtask test --matrix` from its own run (do not edit by hand): \
         each capability's tests, run by name against each server line, and the e2e \
         scenarios of that line's pass. `pass (N tests, M e2e)` counts what ran; a test \
         asserts the behaviour of the version it runs on (where a server lacks a \
         feature, the test checks the clear refusal instead).\n\n",
    );
    let _ = writeln!(md, "Run: {date}.\n");
    md.push_str("| capability |");
    for c in columns {
        let _ = write!(md, " {} (`{}`) |", c.server, c.line);
    }
    md.push_str("\n|---|");
    for _ in columns {
        md.push_str("---|");
    }
    md.push('\n');
    for (i, capability) in CAPABILITIES.iter().enumerate() {
        let _ = write!(md, "| {} |", capability.name);
        for c in columns {
            let mut text = c.cells.get(i).map(Cell::text).unwrap_or_default();
            if i == 1 {
                match has_shard_doc(&c.version) {
                    Some(true) => text.push_str("; supported"),
                    Some(false) => {
                        text.push_str("; not in this version: refused naming `tiebreaker_field`")
                    }
                    None => {}
                }
            }
            let _ = write!(md, " {text} |");
        }
        md.push('\n');
    }
    md.push_str("\nWhat each row runs (`xtask/src/compat.rs`):\n\n");
    for capability in &CAPABILITIES {
        let mut parts: Vec<String> = capability
            .tests
            .iter()
            .map(|t| {
                if t.filters.is_empty() {
                    format!("`{}` tests/{}.rs", t.package, t.target)
                } else {
                    format!(
                        "`{}` tests/{}.rs: {}",
                        t.package,
                        t.target,
                        t.filters
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            })
            .collect();
        parts.extend(capability.scenarios.iter().map(|s| format!("e2e `{s}`")));
        let _ = writeln!(md, "- {}: {}", capability.name, parts.join("; "));
    }
    let path = util::root().join("docs/compatibility.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    step!("matrix: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_are_summed() {
        let out = "running 2 tests\ntest a ... ok\n\ntest result: ok. 2 passed; 0 failed; 0 \
                   ignored; 0 measured; 5 filtered out; finished in 1.2s\n\ntest result: \
                   FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(counts(out), (3, 1));
        assert_eq!(counts("no summary here"), (0, 0));
    }

    #[test]
    fn shard_doc_by_version() {
        let v = |p: &str, v: &str| Some((p.to_owned(), v.to_owned()));
        assert_eq!(has_shard_doc(&v("elasticsearch", "7.11.2")), Some(false));
        assert_eq!(has_shard_doc(&v("elasticsearch", "7.17.29")), Some(true));
        assert_eq!(has_shard_doc(&v("opensearch", "2.19.6")), Some(false));
        assert_eq!(has_shard_doc(&v("opensearch", "3.6.0")), Some(true));
        assert_eq!(has_shard_doc(&None), None);
    }
}
