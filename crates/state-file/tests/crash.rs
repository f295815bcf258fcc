//! Crash safety: a child process saving in a loop is killed with SIGKILL at
//! random moments, 200 times; every load afterwards succeeds and returns one of
//! the states that was saved, never a partial one.
//!
//! The child is this test binary itself, re-run with `--exact
//! sigkill_during_saves_never_leaves_a_partial_state` and [`CHILD_DIR_VAR`] set:
//! in the child the same test runs [`child_saves_until_killed`] instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use state_core::conformance::sample_state;
use state_core::{ConnectorState, Precondition, StateError, StateStore};
use state_file::FileStore;

use common::{id, names_in};

/// Set in the child's environment: the state directory it saves into.
const CHILD_DIR_VAR: &str = "STATE_FILE_CRASH_CHILD_DIR";
const STATE_ID: &str = "crash";
/// Starts the child's report lines (the test harness may print on the same line).
const MARK: &str = "CRASH-CHILD ";
/// A safety net against a child that never starts, not a synchronisation.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const KILLS: usize = 200;
/// Upper bound of the random wait between the child's start and the kill.
const MAX_KILL_DELAY_MS: u64 = 30;

/// The state saved for counter `n`: its content, and its size, depend on `n`
/// only, so the parent can tell exactly which save a file holds.
fn deterministic_state(n: u64) -> ConnectorState {
    let mut state = sample_state(STATE_ID);
    state.last_updated += chrono::TimeDelta::seconds(n as i64);
    state.data.poll_count = n;
    state.data.total_documents_fetched = n * 1000;
    state.data.last_document_id = Some(format!("doc-{n}"));
    let padding = "x".repeat(1000 + (n % 97) as usize * 40);
    state.data.extra.insert("padding".into(), padding.into());
    state
}

/// Child mode: saves `deterministic_state(n)` for n = stored + 1, + 2, ...
/// chaining revisions, printing `saved <n>` after each save returns, until killed.
fn child_saves_until_killed(dir: std::ffi::OsString) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = FileStore::new(dir).expect("store");
        let (mut n, mut revision) = match store.load(&id(STATE_ID)).await {
            Ok(stored) => (stored.state.data.poll_count, Some(stored.revision)),
            Err(StateError::NotFound { .. }) => (0, None),
            Err(e) => panic!("child could not load: {e}"),
        };
        println!("\n{MARK}started {n}");
        loop {
            n += 1;
            let expect = Precondition::from_known(revision.as_ref());
            revision = Some(
                store
                    .save(&deterministic_state(n), &expect)
                    .await
                    .expect("child save"),
            );
            println!("{MARK}saved {n}");
        }
    });
}

#[test]
fn sigkill_during_saves_never_leaves_a_partial_state() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_VAR) {
        return child_saves_until_killed(dir); // We are the child: save until killed.
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().join("states");
    let exe = std::env::current_exe().expect("own test binary");
    let mut rng = rand::rng();
    let mut last_loaded = 0u64;
    let mut kills_mid_save = 0;

    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "sigkill_during_saves_never_leaves_a_partial_state",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_VAR, &base)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = loop {
            match lines.recv_timeout(START_TIMEOUT) {
                Ok(line) => {
                    if let Some(n) = report(&line, "started ") {
                        break n;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("round {round}: the child did not report its start: {e}");
                }
            }
        };
        assert_eq!(
            started, last_loaded,
            "round {round}: the child started from another state"
        );

        // The fault injection: a random moment in the save loop.
        std::thread::sleep(Duration::from_millis(
            rng.random_range(0..MAX_KILL_DELAY_MS),
        ));
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        reader.join().expect("reader thread");
        let reported = lines
            .try_iter()
            .filter_map(|line| report(&line, "saved "))
            .max()
            .unwrap_or(last_loaded);

        // Only the state file, the lock file and at most one temp file of the killed save.
        let names = names_in(&base);
        let temps = names
            .iter()
            .filter(|n| n.starts_with(".state-file-") && n.ends_with(".tmp"))
            .count();
        kills_mid_save += temps;
        assert!(temps <= 1, "round {round}: {names:?}");
        let others: Vec<_> = names
            .iter()
            .filter(|n| !(n.starts_with(".state-file-") && n.ends_with(".tmp")))
            .collect();
        assert!(
            others.is_empty() || others == [".lock"] || others == [".lock", "crash.json"],
            "round {round}: stray files {names:?}"
        );

        let Some(loaded) = load_after_crash(&base, round) else {
            assert_eq!(
                reported, 0,
                "round {round}: save {reported} was reported done, the state is missing"
            );
            continue;
        };
        let n = loaded.data.poll_count;
        assert!(
            n == reported || n == reported + 1,
            "round {round}: the child reported save {reported} done, the file holds {n}"
        );
        assert_eq!(
            loaded,
            deterministic_state(n),
            "round {round}: state {n} differs from what was saved"
        );
        last_loaded = n;
    }
    // The temp files were removed when the parent's store opened.
    assert!(names_in(&base).iter().all(|n| !n.ends_with(".tmp")));
    assert!(
        last_loaded >= KILLS as u64,
        "only {last_loaded} saves in {KILLS} rounds: the child barely ran"
    );
    eprintln!("{KILLS} kills, {last_loaded} saves, {kills_mid_save} kills left a temp file behind");
}

/// The counter of a child's report line `<MARK><what><n>`.
fn report(line: &str, what: &str) -> Option<u64> {
    let (_, tail) = line.split_once(MARK)?;
    tail.strip_prefix(what)?.trim().parse().ok()
}

/// The stored state; `None` only when no save ever completed.
fn load_after_crash(base: &Path, round: usize) -> Option<ConnectorState> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = FileStore::new(base).expect("store");
        match store.load(&id(STATE_ID)).await {
            Ok(stored) => Some(stored.state),
            Err(StateError::NotFound { .. }) => None,
            Err(e) => panic!("round {round}: load after SIGKILL failed: {e}"),
        }
    })
}
