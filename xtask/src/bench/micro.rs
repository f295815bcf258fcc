//! `cargo xtask bench micro`: the criterion micro-benchmarks of the hot paths
//! (`benches/micro.rs` of bulk, es-query, state-core and connector), run with
//! `cargo bench` and gathered from criterion's own records
//! (`target/criterion/*/new/{benchmark,estimates}.json`) into one table, printed
//! and written to docs/benchmarks/micro.md. No services.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{step, util};

/// The crates with a `micro` bench, in the order of the table.
const CRATES: [&str; 4] = ["bulk", "es-query", "state-core", "connector"];

/// One benchmark's result.
#[derive(Debug, Clone, PartialEq)]
struct Measured {
    id: String,
    /// Median time per iteration, nanoseconds.
    median_ns: f64,
    /// Elements per iteration, when the benchmark declares them.
    elements: Option<u64>,
}

pub fn cmd(args: &crate::cli::MicroArgs) -> Result<()> {
    let records = util::target_dir().join("criterion");
    // Only this run's results: criterion keeps every earlier one.
    let _ = std::fs::remove_dir_all(&records);
    for krate in CRATES {
        let mut cmd = util::cargo();
        cmd.args(["bench", "-p", krate, "--bench", "micro", "--"]);
        if args.quick {
            cmd.args(["--warm-up-time", "1", "--measurement-time", "2"]);
        }
        step!("$ {}", util::display(&cmd));
        util::run(cmd.stdout(std::process::Stdio::from(std::io::stderr())))?;
    }
    let mut rows = read_records(&records)?;
    if rows.is_empty() {
        bail!("criterion left no results under {}", records.display());
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let table = render(&rows);
    println!("{table}");
    super::write_result(
        "micro.md",
        format!(
            "# Micro-benchmarks\n\nWritten by `cargo xtask bench micro{}` (criterion; median of its \
             samples, on this machine: {}). Each crate's `benches/micro.rs` says what it measures; \
             `cargo bench -p <crate> --bench micro` runs one crate's.\n\n```text\n{table}\n```\n",
            if args.quick { " --quick" } else { "" },
            super::machine(),
        ),
    )?;
    Ok(())
}

/// Every benchmark criterion recorded under `records`.
fn read_records(records: &Path) -> Result<Vec<Measured>> {
    let mut found = Vec::new();
    let mut dirs = vec![records.to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let read = |name: &str| -> Result<Value> {
                    let file = path.join(name);
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    Ok(serde_json::from_str(&text)?)
                };
                if let Some(m) = measured(&read("benchmark.json")?, &read("estimates.json")?) {
                    found.push(m);
                }
            } else {
                dirs.push(path);
            }
        }
    }
    Ok(found)
}

/// A result from criterion's `benchmark.json` and `estimates.json`.
fn measured(benchmark: &Value, estimates: &Value) -> Option<Measured> {
    Some(Measured {
        id: benchmark["full_id"].as_str()?.to_owned(),
        median_ns: estimates["median"]["point_estimate"].as_f64()?,
        elements: benchmark["throughput"]["Elements"].as_u64(),
    })
}

fn render(rows: &[Measured]) -> String {
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|m| {
            let per_second = m
                .elements
                .map(|n| format!("{:.0}", n as f64 * 1e9 / m.median_ns))
                .unwrap_or_else(|| "-".into());
            [m.id.clone(), human_time(m.median_ns), per_second]
        })
        .collect();
    util::aligned_table(["benchmark", "median time", "elements/s"], &cells)
}

fn human_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_criterion_records_and_tabulates_them() {
        let m = measured(
            &json!({"full_id": "bulk/answer/1000 items", "throughput": {"Elements": 1000}}),
            &json!({"median": {"point_estimate": 250_000.0}}),
        );
        assert_eq!(
            m,
            Some(Measured {
                id: "bulk/answer/1000 items".into(),
                median_ns: 250_000.0,
                elements: Some(1000)
            })
        );
        let table = render(&[m.unwrap_or_else(|| panic!("parsed"))]);
        assert!(
            table.contains("250.00 µs") && table.contains("4000000"),
            "{table}"
        );
        assert_eq!(measured(&json!({}), &json!({})), None);
    }
}
