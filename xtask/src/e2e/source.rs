//! Source scenarios of `cargo xtask e2e`: the built `es-connector run` reading
//! an index of the test server (each scenario its own index) into a JSON-lines
//! file or another index, checked for loss and duplicates.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::e2e::Cx;
use crate::e2e::source_kit::{
    self, Http, Output, OutputStats, Running, SourceConfig, create_logs_index, ensure_all_events,
    line_count, load_logs, read_output, run_once, wait_lines,
};
use crate::search_server::has_shard_doc;
use crate::{net, services, step, util};

/// Echo prefix for the connector's own lines.
const ECHO: Option<&str> = Some("    | ");

impl Cx {
    /// A fresh logs index on the shared server, deleted after the run.
    fn logs_index(&mut self, name: &str) -> Result<String> {
        let index = format!("xtask-e2e-{}-{name}", self.run_id).to_lowercase();
        self.track_index(&index);
        create_logs_index(&mut Http::new(&self.es_url)?, &index)?;
        Ok(index)
    }

    /// A file-output source config `<name>.toml` reading `index` from `es_url`
    /// (output `<name>.jsonl`, state `<name>` in `<name>-states`): its path and
    /// the output's.
    pub(super) fn source_config(
        &self,
        name: &str,
        es_url: &str,
        index: &str,
        batch_size: u32,
        pagination: &str,
        tiebreaker: Option<&str>,
    ) -> Result<(String, PathBuf)> {
        let out = self.dir.join(format!("{name}.jsonl"));
        let cfg = SourceConfig {
            es_url: es_url.into(),
            index: index.into(),
            batch_size,
            pagination: pagination.into(),
            tiebreaker: tiebreaker.map(str::to_owned),
            state_dir: self.dir.join(format!("{name}-states")),
            state_id: name.into(),
            output: Output::File(out.clone()),
        };
        Ok((cfg.write(&self.dir.join(format!("{name}.toml")))?, out))
    }
}

/// Loads `count` documents numbered from 0, all at the timestamp `second_of(n)`.
fn load(es_url: &str, index: &str, count: u64, second_of: impl Fn(u64) -> u64) -> Result<()> {
    let started = Instant::now();
    load_logs(
        &mut Http::new(es_url)?,
        index,
        0,
        count,
        5_000,
        second_of,
        |_| {},
    )?;
    step!(
        "  loaded {count} documents into {index} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A step loading `count` documents (see [`load`]) into a fresh logs index
/// tagged `tag`, saying `what`; the index's name.
fn load_step(
    cx: &mut Cx,
    what: &str,
    tag: &str,
    count: u64,
    second_of: impl Fn(u64) -> u64,
) -> Result<String> {
    cx.step(what, |cx| {
        let index = cx.logs_index(tag)?;
        load(&cx.es_url, &index, count, second_of)?;
        Ok(index)
    })
}

/// 10k documents, one timestamp, batch 100: every page boundary falls inside
/// the same timestamp, so only the tiebreaker keeps pages apart. On a server
/// without `_shard_doc`, reading without `tiebreaker_field` must be refused.
pub fn shared_timestamps(cx: &mut Cx) -> Result<()> {
    const DOCS: u64 = 10_000;
    let what = "load 10000 documents sharing ONE timestamp";
    let index = load_step(cx, what, "shared-ts", DOCS, |_| 0)?;
    for (pagination, tiebreaker) in [
        ("search_after", Some("event_id")),
        ("scroll", Some("event_id")),
        ("search_after", None),
    ] {
        let name = match tiebreaker {
            Some(field) => format!("{pagination} by {field}"),
            None => format!("{pagination} by _shard_doc"),
        };
        if tiebreaker.is_none() && !has_shard_doc(&cx.es_url)? {
            cx.step(
                &format!("{name}: this server has no _shard_doc: `run --once` is refused naming tiebreaker_field"),
                |cx| {
                    let es_url = cx.es_url.clone();
                    let (cfg, _) = cx.source_config(
                        "shared-no-shard-doc",
                        &es_url,
                        &index,
                        100,
                        pagination,
                        None,
                    )?;
                    let refused = run_once(&cx.connector, &cfg, ECHO)
                        .err()
                        .context("es-connector read without tiebreaker_field on a server without _shard_doc")?;
                    ensure!(
                        format!("{refused:#}").contains("tiebreaker_field"),
                        "refused, but without naming tiebreaker_field: {refused:#}"
                    );
                    Ok(())
                },
            )?;
            continue;
        }
        cx.step(
            &format!("{name}, batch 100: `run --once` writes exactly {DOCS} distinct ids"),
            |cx| {
                let es_url = cx.es_url.clone();
                let (cfg, out) = cx.source_config(
                    &format!("shared-{pagination}-{}", tiebreaker.unwrap_or("shard-doc")),
                    &es_url,
                    &index,
                    100,
                    pagination,
                    tiebreaker,
                )?;
                run_once(&cx.connector, &cfg, ECHO)?;
                let stats = read_output(&out)?;
                step!(
                    "  {} lines, {} distinct ids, {} distinct event_ids, {} bad lines",
                    stats.lines,
                    stats.ids,
                    stats.events.len(),
                    stats.bad
                );
                ensure!(stats.bad == 0, "{} lines are not messages", stats.bad);
                ensure!(
                    stats.lines as u64 == DOCS && stats.ids as u64 == DOCS,
                    "expected {DOCS} lines with {DOCS} distinct ids, got {} lines, {} ids",
                    stats.lines,
                    stats.ids
                );
                ensure_all_events(&stats, DOCS)?;
                run_once(&cx.connector, &cfg, ECHO)?;
                let again = read_output(&out)?;
                step!(
                    "  a second `run --once` (restart, caught up): {} lines",
                    again.lines
                );
                ensure!(
                    again.lines == stats.lines,
                    "the restart delivered {} documents again: the ids committed at the \
                     cursor's timestamp must survive a restart",
                    again.lines - stats.lines
                );
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// SIGKILL mid-run three times, then finish with `--once`: nothing lost, at
/// most one batch per kill delivered twice.
pub fn sigkill_restart(cx: &mut Cx) -> Result<()> {
    const DOCS: u64 = 5_000;
    const BATCH: usize = 100;
    let what = "load 5000 documents (10 per timestamp)";
    let index = load_step(cx, what, "sigkill", DOCS, |n| n / 10)?;
    let es_url = cx.es_url.clone();
    // The _shard_doc tiebreaker where the server has it, else a field.
    let tiebreaker = (!has_shard_doc(&es_url)?).then_some("event_id");
    step!(
        "  tiebreaker: {}",
        tiebreaker.unwrap_or("_shard_doc (no tiebreaker_field)")
    );
    let (cfg, out) = cx.source_config(
        "sigkill",
        &es_url,
        &index,
        BATCH as u32,
        "search_after",
        tiebreaker,
    )?;
    let mut kills = 0;
    for target in [1_500, 2_600, 3_700] {
        cx.step(
            &format!("start `run`, SIGKILL it once the output has >= {target} lines"),
            |cx| {
                let mut running = Running::spawn(&cx.connector, &["run", "--config", &cfg], None)?;
                let seen = wait_lines(&out, target, Duration::from_secs(120), &mut running)?;
                running.kill()?;
                kills += 1;
                step!(
                    "  killed at >= {seen} lines; after the kill the file has {} lines",
                    line_count(&out)
                );
                Ok(())
            },
        )?;
    }
    cx.step(
        "`run --once` to completion: every id present, duplicates <= kills x batch",
        |cx| {
            run_once(&cx.connector, &cfg, ECHO)?;
            let stats = read_output(&out)?;
            let dups = stats.duplicates();
            step!(
                "  {} lines, {} distinct ids, {} distinct event_ids, {dups} duplicates \
                 (bound {kills} x {BATCH} = {}), {} bad lines",
                stats.lines,
                stats.ids,
                stats.events.len(),
                kills * BATCH,
                stats.bad
            );
            let bound = format!("{kills} kills x batch {BATCH}");
            ensure_resumed_output(&stats, DOCS, kills * BATCH, &bound)
        },
    )?;
    Ok(())
}

/// The output of a run interrupted (killed, or its context expired) and
/// resumed: complete messages only, every one of `docs` documents, no other id,
/// and at most `bound` duplicates (`bounded_by`: what bounds them, for an error).
fn ensure_resumed_output(
    stats: &OutputStats,
    docs: u64,
    bound: usize,
    bounded_by: &str,
) -> Result<()> {
    ensure!(
        stats.bad == 0,
        "{} lines are not complete messages",
        stats.bad
    );
    ensure_all_events(stats, docs)?;
    ensure!(
        stats.ids as u64 == docs,
        "{} distinct ids (expected {docs})",
        stats.ids
    );
    let dups = stats.duplicates();
    ensure!(dups <= bound, "{dups} duplicates exceed {bounded_by}");
    Ok(())
}

/// The osmem-server binary (`OSMEM_SERVER_BIN`, else xtask's cached venv).
fn osmem_bin() -> Result<PathBuf> {
    crate::osmem::binary()
}

/// A private osmem-server on a fixed port, started and stopped by a scenario.
#[derive(Debug)]
struct Server {
    bin: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) -> Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("--addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--no-stdin-watch", "--no-ja"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        step!("  osmem-server pid {} on {}", child.id(), self.url());
        self.child = Some(child);
        ensure!(
            services::wait_answers("ES_URL", &self.url(), Duration::from_secs(30)),
            "osmem-server did not answer at {}; log {}:\n{}",
            self.url(),
            self.log.display(),
            util::tail(&self.log, 10)
        );
        Ok(())
    }

    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Starts a private osmem-server on a free port, logging to `log` in the run's
/// directory.
fn private_osmem(cx: &mut Cx, log: &str) -> Result<Server> {
    cx.step("start a private osmem-server on a free port", |cx| {
        let mut server = Server {
            bin: osmem_bin()?,
            port: net::free_port()?,
            log: cx.dir.join(log),
            child: None,
        };
        server.start()?;
        Ok(server)
    })
}

/// The server dies under a running connector and comes back empty.
///
/// What this proves: with the server gone the connector neither exits nor
/// gives up (it logs retries and stays alive); when a server answers again on
/// the same URL it re-opens its reading there (a new point in time: the old one
/// died with the server) and continues from its cursor: the restarted server
/// gets again the last 500 documents it already delivered (same `_id`, same
/// timestamps, at or before the cursor) plus 500 later ones, and only the later
/// ones come out (a connector that started over would repeat the 500).
/// SIGTERM then stops it cleanly (exit 0) with the state saved at the last
/// document. It does not prove anything about data surviving a server restart
/// (osmem keeps nothing) nor about a restart of the connector itself (that is
/// `source-sigkill-restart`).
pub fn server_down_and_back(cx: &mut Cx) -> Result<()> {
    const BACKFILL: u64 = 2_000;
    const LATER: u64 = 500;
    let mut server = private_osmem(cx, "down-and-back-osmem.log")?;
    let url = server.url();
    let index = format!("xtask-e2e-{}-down", cx.run_id);
    let (cfg, out) = cx.source_config(
        "down-and-back",
        &url,
        &index,
        100,
        "search_after",
        Some("event_id"),
    )?;
    cx.step("load 2000 documents into it", |_| {
        create_logs_index(&mut Http::new(&url)?, &index)?;
        load(&url, &index, BACKFILL, |n| n / 10)
    })?;
    let mut running = cx.step("start `run` (not --once) and wait for the backfill", |cx| {
        let mut running = Running::spawn(&cx.connector, &["run", "--config", &cfg], ECHO)?;
        wait_lines(
            &out,
            BACKFILL as usize,
            Duration::from_secs(120),
            &mut running,
        )?;
        Ok(running)
    })?;
    cx.step(
        "kill the server: the connector logs retries and stays alive",
        |_| {
            server.kill()?;
            let before = running.lines().len();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let lines = running.lines();
                let retries = lines[before.min(lines.len())..]
                    .iter()
                    .filter(|l| l.contains("WARN") && (l.contains("retry") || l.contains("failed")))
                    .count();
                ensure!(
                    running.alive(),
                    "the connector exited with the server down:\n{}",
                    source_kit::last(&lines, 15)
                );
                if retries >= 3 {
                    step!("  {retries} retry lines so far; the connector is alive");
                    return Ok(());
                }
                ensure!(
                    Instant::now() < deadline,
                    "no retry lines within 60s:\n{}",
                    source_kit::last(&lines, 15)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        },
    )?;
    cx.step(
        "restart the server (empty), index the last 500 again plus 500 later ones: only the later \
         ones are delivered",
        |_| {
            server.start()?;
            create_logs_index(&mut Http::new(&url)?, &index)?;
            let mut http = Http::new(&url)?;
            // Again the last 500 already delivered (at or before the cursor) ...
            load_logs(
                &mut http,
                &index,
                BACKFILL - 500,
                500,
                5_000,
                |n| n / 10,
                |_| {},
            )?;
            // ... and 500 later ones (timestamps after the backfill's last, second 199).
            load_logs(
                &mut http,
                &index,
                BACKFILL,
                LATER,
                5_000,
                |n| n / 10,
                |_| {},
            )?;
            let total = (BACKFILL + LATER) as usize;
            let have = wait_lines(&out, total, Duration::from_secs(120), &mut running)?;
            step!("  output has {have} lines");
            Ok(())
        },
    )?;
    cx.step("SIGTERM: exit 0, state saved at the end", |cx| {
        running.stop()?;
        let stats = read_output(&out)?;
        step!(
            "  {} lines, {} distinct ids, {} bad",
            stats.lines,
            stats.ids,
            stats.bad
        );
        ensure_all_events(&stats, BACKFILL + LATER)?;
        // Re-indexed documents get new `_seq_no`s, hence new message ids:
        // count repeats by event_id.
        let repeats = stats.lines - stats.events.len();
        ensure!(
            repeats == 0 && stats.bad == 0,
            "{repeats} documents delivered twice (the re-indexed old ones?), {} bad lines",
            stats.bad
        );
        let state = source_kit::state_show(&cx.connector, &cfg)?;
        let sort = &state["data"]["cursor"]["sort"];
        let fetched = state["data"]["total_documents_fetched"]
            .as_u64()
            .unwrap_or(0);
        step!("  state: cursor {sort}, total_documents_fetched {fetched}");
        ensure!(
            sort.get(1).and_then(|v| v.as_str())
                == Some(source_kit::event_id(BACKFILL + LATER - 1).as_str()),
            "the saved cursor {sort} is not at the last document"
        );
        ensure!(
            fetched == BACKFILL + LATER,
            "total_documents_fetched is {fetched}"
        );
        Ok(())
    })?;
    server.kill()?;
    step!(
        "  proven: the connector outlived its server (retrying, not exiting), re-opened its \
         reading on the restarted server and went on from its cursor (the re-indexed old \
         documents were not delivered again), and SIGTERM saved the state at the last \
         document with exit 0"
    );
    Ok(())
}

/// Output into another index: `_count` matches, and a full re-read after
/// `state reset` overwrites by `_id` instead of adding.
pub fn es_to_es(cx: &mut Cx) -> Result<()> {
    const DOCS: u64 = 3_000;
    let source = load_step(cx, "load 3000 documents", "es2es-source", DOCS, |n| n / 50)?;
    let target = format!("xtask-e2e-{}-es2es-target", cx.run_id);
    cx.track_index(&target);
    let cfg = SourceConfig {
        es_url: cx.es_url.clone(),
        index: source.clone(),
        batch_size: 500,
        pagination: "search_after".into(),
        tiebreaker: Some("event_id".into()),
        state_dir: cx.dir.join("es2es-states"),
        state_id: "es2es".into(),
        output: Output::Elasticsearch {
            url: cx.es_url.clone(),
            index: target.clone(),
        },
    }
    .write(&cx.dir.join("es2es.toml"))?;
    let check = |cx: &Cx| -> Result<()> {
        let (s, t) = (
            source_kit::count(&cx.es_url, &source)?,
            source_kit::count(&cx.es_url, &target)?,
        );
        step!("  _count: source {s}, target {t}");
        ensure!(s == t && t == DOCS, "target has {t} documents, source {s}");
        Ok(())
    };
    cx.step(
        "`run --once`: the target's _count equals the source's",
        |cx| {
            run_once(&cx.connector, &cfg, ECHO)?;
            check(cx)
        },
    )?;
    cx.step(
        "`state reset`, `run --once` again: _count unchanged (idempotent by _id)",
        |cx| {
            cx.connector.state_ok(&["reset", "--config", &cfg])?;
            run_once(&cx.connector, &cfg, ECHO)?;
            // `reset` zeroed the counters: the run re-read (and re-sent) everything.
            let state = source_kit::state_show(&cx.connector, &cfg)?;
            let fetched = state["data"]["total_documents_fetched"].as_u64();
            ensure!(
                fetched == Some(DOCS),
                "after the reset the second run fetched {fetched:?} documents (expected {DOCS})"
            );
            check(cx)
        },
    )?;
    Ok(())
}

/// Sends `signal` (`STOP`, `CONT`) to the connector (through `kill(1)`).
fn signal(running: &Running, signal: &str) -> Result<()> {
    util::run(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(running.pid().to_string()),
    )
}

/// The ids of the points in time open on a server (`GET /_search/point_in_time/_all`).
fn open_pits(http: &mut Http) -> Result<Vec<String>> {
    let answer = http.json("GET", "/_search/point_in_time/_all", "")?;
    Ok(answer["pits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["pit_id"].as_str().map(str::to_string))
        .collect())
}

/// The point in time expires under a running connector, mid-pass.
///
/// What this proves: on a private server (so every point in time on it is
/// this connector's), the connector is paused (SIGSTOP) once 1000 of 5000
/// documents are written, its open point in time is deleted through the PIT
/// API, and it is resumed (SIGCONT). Its next page meets the missing context:
/// it logs that the search context expired, opens a new point in time and
/// goes on from its cursor: all 5000 documents arrive, with at most one batch
/// delivered twice, and SIGTERM exits 0 with `total_documents_fetched` equal
/// to the lines written. The pause only makes the deletion land mid-pass (a
/// fast connector would otherwise finish, and close its point in time, first).
pub fn expired_pit(cx: &mut Cx) -> Result<()> {
    const DOCS: u64 = 5_000;
    const BATCH: usize = 100;
    const EXPIRED: &str = "search context expired";
    let mut server = private_osmem(cx, "expired-pit-osmem.log")?;
    let url = server.url();
    let index = format!("xtask-e2e-{}-expired-pit", cx.run_id).to_lowercase();
    let (cfg, out) = cx.source_config(
        "expired-pit",
        &url,
        &index,
        BATCH as u32,
        "search_after",
        None,
    )?;
    cx.step("load 5000 documents (250 per timestamp) into it", |_| {
        create_logs_index(&mut Http::new(&url)?, &index)?;
        load(&url, &index, DOCS, |n| n / 250)
    })?;
    let mut running = cx.step(
        "start `run`; at >= 1000 lines pause it and delete its open point in time",
        |cx| {
            let mut running = Running::spawn(&cx.connector, &["run", "--config", &cfg], ECHO)?;
            let seen = wait_lines(&out, 1_000, Duration::from_secs(120), &mut running)?;
            signal(&running, "STOP")?;
            let paused_at = line_count(&out);
            let mut http = Http::new(&url)?;
            let pits = open_pits(&mut http)?;
            step!(
                "  paused at {paused_at} lines (seen {seen}); {} point(s) in time open",
                pits.len()
            );
            ensure!(
                !pits.is_empty(),
                "no point in time open at {paused_at} of {DOCS} lines: the pass was not in \
                 progress"
            );
            let body = serde_json::json!({ "pit_id": pits }).to_string();
            let answer = http.json("DELETE", "/_search/point_in_time", &body)?;
            let left = open_pits(&mut http)?;
            step!("  deleted: {}; {} left open", answer["pits"], left.len());
            ensure!(left.is_empty(), "points in time still open: {left:?}");
            signal(&running, "CONT")?;
            Ok(running)
        },
    )?;
    cx.step(
        "the connector logs the expired context, reopens and writes all 5000 ids",
        |_| {
            wait_lines(&out, DOCS as usize, Duration::from_secs(120), &mut running)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let stats = read_output(&out)?;
                let logged = running.lines().iter().any(|l| l.contains(EXPIRED));
                if stats.ids as u64 >= DOCS && logged {
                    step!("  {} distinct ids; the expiry was logged", stats.ids);
                    return Ok(());
                }
                ensure!(
                    running.alive(),
                    "es-connector exited:\n{}",
                    source_kit::last(&running.lines(), 15)
                );
                ensure!(
                    Instant::now() < deadline,
                    "{} distinct ids, expiry logged: {logged}, after 60s:\n{}",
                    stats.ids,
                    source_kit::last(&running.lines(), 15)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        },
    )?;
    cx.step(
        "SIGTERM: exit 0, 5000 distinct ids, duplicates <= one batch, state counted",
        |cx| {
            let lines = running.stop()?;
            let expired = lines.iter().filter(|l| l.contains(EXPIRED)).count();
            ensure!(expired >= 1, "no `{EXPIRED}` line was logged");
            let stats = read_output(&out)?;
            let dups = stats.duplicates();
            step!(
                "  {} lines, {} distinct ids, {dups} duplicates (bound {BATCH}), {} bad, \
                 {expired} expiry line(s)",
                stats.lines,
                stats.ids,
                stats.bad
            );
            ensure_resumed_output(&stats, DOCS, BATCH, &format!("one batch ({BATCH})"))?;
            let state = source_kit::state_show(&cx.connector, &cfg)?;
            let fetched = state["data"]["total_documents_fetched"]
                .as_u64()
                .unwrap_or(0);
            step!(
                "  state: cursor {}, total_documents_fetched {fetched}",
                state["data"]["cursor"]["sort"]
            );
            ensure!(
                fetched == stats.lines as u64,
                "total_documents_fetched is {fetched}, the output has {} lines",
                stats.lines
            );
            Ok(())
        },
    )?;
    server.kill()?;
    step!(
        "  proven: a point in time deleted mid-pass was noticed on the next page (logged as \
         expired), reopened, and reading went on from the cursor: every document delivered, \
         none lost, at most one batch repeated, and SIGTERM exited 0"
    );
    Ok(())
}

/// Documents stream into an index with its default refresh (1 s: nothing here
/// refreshes or waits for one) while `run` reads; each document is delivered
/// exactly once, by `event_id` and by `_shard_doc` inside a point in time.
pub fn streaming_default_refresh(cx: &mut Cx) -> Result<()> {
    // Enough that the stream spans several refreshes (about 5 s here).
    const DOCS: u64 = 30_000;
    // 97 per request: requests cut through the groups of ten documents that
    // share a timestamp, so a group becomes visible in two refreshes.
    const PER_REQUEST: u64 = 97;
    // Without `_shard_doc` a source needs `tiebreaker_field` (that refusal is
    // asserted by source-shared-timestamps).
    let tiebreakers: &[Option<&str>] = if has_shard_doc(&cx.es_url)? {
        &[Some("event_id"), None]
    } else {
        step!("  this server has no _shard_doc: by event_id only");
        &[Some("event_id")]
    };
    for &tiebreaker in tiebreakers {
        let name = format!("stream-{}", tiebreaker.unwrap_or("shard-doc"));
        let label = tiebreaker.unwrap_or("_shard_doc");
        cx.step(
            &format!(
                "{DOCS} documents streamed in on the default refresh while `run` reads \
                 (tiebreaker {label}): each delivered exactly once"
            ),
            |cx| {
                let index = cx.logs_index(&name)?;
                let es_url = cx.es_url.clone();
                let (cfg, out) =
                    cx.source_config(&name, &es_url, &index, 100, "search_after", tiebreaker)?;
                let mut running = Running::spawn(&cx.connector, &["run", "--config", &cfg], ECHO)?;
                let started = Instant::now();
                let mut http = Http::new(&es_url)?;
                // Ten documents per second of timestamps, in indexing order.
                load_logs(&mut http, &index, 0, DOCS, PER_REQUEST, |n| n / 10, |_| {})?;
                step!(
                    "  streamed {DOCS} documents in {:.1}s, {} delivered meanwhile",
                    started.elapsed().as_secs_f64(),
                    line_count(&out)
                );
                wait_lines(&out, DOCS as usize, Duration::from_secs(120), &mut running)?;
                running.stop()?;
                let stats = read_output(&out)?;
                step!(
                    "  {} lines, {} distinct ids, {} duplicates, {:.1}s",
                    stats.lines,
                    stats.ids,
                    stats.duplicates(),
                    started.elapsed().as_secs_f64()
                );
                ensure!(stats.bad == 0, "{} lines are not messages", stats.bad);
                ensure_all_events(&stats, DOCS)?;
                ensure!(
                    stats.duplicates() == 0 && stats.lines as u64 == DOCS,
                    "{} lines for {DOCS} documents: {} duplicates",
                    stats.lines,
                    stats.duplicates()
                );
                Ok(())
            },
        )?;
    }
    Ok(())
}
