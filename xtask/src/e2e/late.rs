//! The live-tail scenario of `cargo xtask e2e`: documents stream into the test
//! server on its default refresh, stamped with the time they are made; one in
//! twenty arrives 1 to 60 s late (half of those into an index of the pattern
//! created mid-stream). Three `es-connector run`s read the pattern throughout:
//! with `late_window` (SIGKILLed once and restarted), with `late_window` and
//! `slices = 2`, and without. The first two deliver every document; the third
//! misses the late ones, and `es-connector audit` names them and exits 1.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::e2e::Cx;
use crate::e2e::source_kit::{
    Http, Rng, Running, add_plugin_lines, create_logs_index, event_id, read_output, wait_until,
};
use crate::search_server::has_shard_doc;
use crate::{step, util};

/// Documents made, at [`PER_TICK`] every [`TICK`].
const DOCS: u64 = 3_000;
const PER_TICK: u64 = 20;
const TICK: Duration = Duration::from_millis(100);
/// One in this many documents is late.
const LATE_EVERY: u64 = 20;
/// The longest delay of a late document.
const MAX_DELAY_MS: u64 = 60_000;
const BATCH: u32 = 100;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Document `n` made at `made_ms` (its timestamp, epoch milliseconds).
fn doc(n: u64, made_ms: u64) -> String {
    serde_json::json!({
        "@timestamp": made_ms,
        "event_id": event_id(n),
        "level": "INFO",
        "service": "late-e2e",
        "message": format!("document {n}"),
    })
    .to_string()
}

fn bulk(http: &mut Http, docs: &[(String, u64, u64)]) -> Result<()> {
    let mut body = String::new();
    for (index, n, made) in docs {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{}\"}}}}\n{}\n",
            event_id(*n),
            doc(*n, *made)
        ));
    }
    let answer = http.json("POST", "/_bulk", &body)?;
    ensure!(answer["errors"] == false, "_bulk reported errors: {answer}");
    Ok(())
}

/// A file-output config reading `pattern`, with `extra` `[plugin_config]` lines.
fn config(cx: &Cx, name: &str, pattern: &str, extra: &str) -> Result<(String, std::path::PathBuf)> {
    let tiebreaker = (!has_shard_doc(&cx.es_url)?).then_some("event_id");
    let (cfg, out) =
        cx.source_config(name, &cx.es_url, pattern, BATCH, "search_after", tiebreaker)?;
    add_plugin_lines(&cfg, extra)?;
    Ok((cfg, out))
}

fn audit(cx: &Cx, cfg: &str) -> Result<(Option<i32>, Value, String)> {
    let mut cmd = Command::new(&cx.connector.bin);
    cmd.args(["audit", "--config", cfg, "--json"])
        .current_dir(util::root());
    step!("  $ es-connector audit --config {cfg} --json");
    let out = util::capture(&mut cmd, Duration::from_secs(120))?;
    let report = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("audit printed no report:\n{}", out.all()))?;
    Ok((out.status.code(), report, out.stderr))
}

pub fn late_window(cx: &mut Cx) -> Result<()> {
    let base = format!("xtask-e2e-{}-late", cx.run_id).to_lowercase();
    let pattern = format!("{base}-*");
    let (first, second) = (format!("{base}-a"), format!("{base}-b"));
    cx.track_index(&first);
    cx.track_index(&second);
    create_logs_index(&mut Http::new(&cx.es_url)?, &first)?;
    let windowed = "settle = \"5s\"\nlate_window = \"3m\"\n";
    let (cfg_late, out_late) = config(cx, "late", &pattern, windowed)?;
    let (cfg_sliced, out_sliced) = config(
        cx,
        "late-sliced",
        &pattern,
        &format!("{windowed}slices = 2\n"),
    )?;
    let (cfg_plain, out_plain) = config(cx, "late-off", &pattern, "settle = \"5s\"\n")?;
    // The Iggy output, where an Iggy server is up: one partition, so the output
    // knows what it holds after a SIGKILL (tail resume) and the topic must hold
    // each document exactly once.
    let iggy = match cx.iggy.clone() {
        Some(server) => {
            let stream = format!("xtask-{}-late", cx.run_id);
            let (cfg, state) = super::iggy::source_config(
                cx,
                "late-iggy",
                &pattern,
                &server,
                &stream,
                "balanced",
                1,
            )?;
            let text = std::fs::read_to_string(&cfg)?;
            let text = text.replacen(
                "[plugin_config]\n",
                &format!("[plugin_config]\n{windowed}"),
                1,
            );
            std::fs::write(&cfg, text)?;
            Some((cfg, state))
        }
        None => {
            step!("  no Iggy server (IGGY_TCP_ADDRESS): the run into an Iggy topic was not run");
            None
        }
    };

    cx.step(
        &format!(
            "{DOCS} documents streamed on the default refresh, one in {LATE_EVERY} up to \
             {}s late (half into a new index of the pattern): with late_window every one \
             arrives (SIGKILL and restart included, and with slices = 2); without, the audit \
             names the late ones and exits 1",
            MAX_DELAY_MS / 1000
        ),
        |cx| {
            let connector = cx.connector.clone();
            let run = |cfg: &str| Running::spawn(&connector, &["run", "--config", cfg], None);
            let mut late_run = run(&cfg_late)?;
            let mut sliced = run(&cfg_sliced)?;
            let plain = run(&cfg_plain)?;
            let mut iggy_run = match &iggy {
                Some((cfg, _)) => Some(run(cfg)?),
                None => None,
            };
            let mut http = Http::new(&cx.es_url)?;
            let mut rng = Rng::new(0x1a7e);
            // (due at, index, n, made at)
            let mut pending: Vec<(u64, String, u64, u64)> = Vec::new();
            let mut second_created = false;
            let mut killed = false;
            let started = Instant::now();
            let mut n = 0;
            let mut late_count = 0;
            while n < DOCS || !pending.is_empty() {
                let now = now_ms();
                let mut due: Vec<(String, u64, u64)> = Vec::new();
                pending.retain(|(at, index, k, made)| {
                    let ready = *at <= now;
                    if ready {
                        due.push((index.clone(), *k, *made));
                    }
                    !ready
                });
                if due.iter().any(|(index, ..)| *index == second) && !second_created {
                    create_logs_index(&mut http, &second)?;
                    second_created = true;
                }
                for _ in 0..PER_TICK {
                    if n >= DOCS {
                        break;
                    }
                    if n % LATE_EVERY == 7 {
                        let delay = 1_000 + rng.next() % (MAX_DELAY_MS - 1_000);
                        let index = if late_count % 2 == 0 { &first } else { &second };
                        pending.push((now + delay, index.clone(), n, now));
                        late_count += 1;
                    } else {
                        due.push((first.clone(), n, now));
                    }
                    n += 1;
                }
                if !due.is_empty() {
                    bulk(&mut http, &due)?;
                }
                if !killed && n >= DOCS / 2 {
                    let lines = late_run.kill()?;
                    step!(
                        "  SIGKILL of the late_window run at {} lines ({} log lines)",
                        crate::e2e::source_kit::line_count(&out_late),
                        lines.len()
                    );
                    late_run = run(&cfg_late)?;
                    if let (Some(running), Some((cfg, _))) = (iggy_run.take(), &iggy) {
                        running.kill()?;
                        step!("  SIGKILL of the Iggy-output run");
                        iggy_run = Some(run(cfg)?);
                    }
                    killed = true;
                }
                // The stream's pace, not a wait for anything.
                std::thread::sleep(TICK);
            }
            step!(
                "  streamed {DOCS} documents ({late_count} late) in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            let events =
                |path: &std::path::Path| read_output(path).map_or(0, |s| s.events.len() as u64);
            let waiting = [
                (&mut late_run, &out_late, "late_window"),
                (&mut sliced, &out_sliced, "late_window, slices = 2"),
            ];
            for (running, out, what) in waiting {
                wait_until(
                    &format!("distinct documents ({what})"),
                    DOCS,
                    Duration::from_secs(120),
                    running,
                    |_| events(out),
                )?;
            }
            if let (Some(running), Some((cfg, state))) = (iggy_run.as_mut(), &iggy) {
                let fetched = |_: &Running| {
                    std::fs::read_to_string(state)
                        .ok()
                        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                        .and_then(|v| v["data"]["total_documents_fetched"].as_u64())
                        .unwrap_or(0)
                };
                wait_until(
                    "documents committed (Iggy output)",
                    DOCS,
                    Duration::from_secs(120),
                    running,
                    fetched,
                )?;
                let census = super::iggy::census(cx, cfg)?;
                step!("  Iggy output: {census}");
                ensure!(
                    census["messages"] == DOCS && census["distinct_documents"] == DOCS,
                    "the topic should hold each of the {DOCS} documents once: {census}"
                );
            }
            if let Some(running) = iggy_run {
                running.stop().context("Iggy output run")?;
            }
            for (running, what) in [(late_run, "late"), (plain, "off"), (sliced, "sliced")] {
                running.stop().context(what)?;
            }
            let outputs = [
                (&out_late, "late_window", u64::from(BATCH)),
                (&out_sliced, "late_window, slices = 2", 0),
            ];
            for (out, what, most_duplicates) in outputs {
                let stats = read_output(out)?;
                let missing: Vec<String> = (0..DOCS)
                    .map(event_id)
                    .filter(|e| !stats.events.contains(e))
                    .collect();
                step!(
                    "  {what}: {} lines, {} distinct documents, {} duplicates",
                    stats.lines,
                    stats.events.len(),
                    stats.duplicates()
                );
                ensure!(missing.is_empty(), "{what}: missing {missing:?}");
                ensure!(
                    stats.duplicates() as u64 <= most_duplicates,
                    "{what}: {} duplicates (at most {most_duplicates})",
                    stats.duplicates()
                );
            }
            let state: Value = serde_json::from_str(&std::fs::read_to_string(
                cx.dir.join("late-states").join("late.json"),
            )?)?;
            let found = state["data"]["late_documents_delivered"]
                .as_u64()
                .unwrap_or(0);
            step!("  the late_window run found {found} documents behind its cursor");
            ensure!(
                found > 0,
                "no document was found behind the cursor: {state}"
            );

            let plain_stats = read_output(&out_plain)?;
            let missed = DOCS - plain_stats.events.len() as u64;
            step!("  without late_window: {missed} of {late_count} late documents never delivered");
            ensure!(
                missed > 0,
                "the run without late_window missed nothing: no late document?"
            );
            let (status, report, stderr) = audit(cx, &cfg_plain)?;
            step!(
                "  audit without late_window: exit {status:?}, {} missed in {} buckets, e.g. {}",
                report["missed"],
                report["differences"].as_array().map_or(0, Vec::len),
                report["differences"][0]["missed_examples"]
            );
            ensure!(status == Some(1), "audit should fail: {stderr}");
            ensure!(
                report["missed"].as_u64() == Some(missed),
                "the audit counts {} missed, the output lacks {missed}",
                report["missed"]
            );
            let (status, report, stderr) = audit(cx, &cfg_late)?;
            ensure!(
                status == Some(0) && report["missed"] == 0,
                "audit of the late_window run: exit {status:?}, {report}\n{stderr}"
            );
            step!("  audit with late_window: nothing missed");
            Ok(())
        },
    )
}
