//! Stopping a run: the first SIGINT/SIGTERM stops at the next safe point with the
//! state saved, even while the output is down; a second one exits at once.
//! The source is a scripted local server: no service needed.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "common/child.rs"]
mod child;
#[path = "common/fake_server.rs"]
mod fake_server;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use connector::{Message, Output, OutputError, RunOptions};
use fake_server::{FakeServer, page};
use state_core::async_trait;
use tokio::sync::watch;

/// Generous bound on every wait; a prompt stop takes well under a second.
const DEADLINE: Duration = Duration::from_secs(60);

/// A configuration reading `logs` at `source_url` (two documents per batch) into
/// `output` (TOML), state in `<dir>/states/stop.json`.
fn config_file(dir: &Path, source_url: &str, output: &str) -> PathBuf {
    let text = format!(
        "{output}\n[plugin_config]\nurl = \"{source_url}\"\nindex = \"logs\"\npagination = \"cursor\"\ntiebreaker_field = \"id\"\nbatch_size = 2\npolling_interval = \"1h\"\nrequest_timeout = \"5s\"\n\
         [plugin_config.state]\nstorage_type = \"file\"\nstate_id = \"stop\"\nauto_save_interval = \"0s\"\n\
         [plugin_config.state.storage_config]\nbase_path = \"{}\"\n",
        dir.join("states").display()
    );
    let path = dir.join("connector.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `es-connector run` in the background: its stderr line by line, its exit.
struct Running {
    pid: u32,
    lines: mpsc::Receiver<String>,
    exited: mpsc::Receiver<ExitStatus>,
    seen: String,
    status: Option<ExitStatus>,
}

impl Running {
    fn start(config: &Path) -> Running {
        let (mut child, lines) = child::spawn_reading_stderr(
            Command::new(env!("CARGO_BIN_EXE_es-connector"))
                .args(["run", "--no-progress", "--config"])
                .arg(config)
                .env("ES_CONNECTOR_LOG", "warn,connector=debug"),
        );
        let (exit_tx, exited) = mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        Running {
            pid,
            lines,
            exited,
            seen: String::new(),
            status: None,
        }
    }

    /// Reads stderr until a line contains `needle`.
    fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(needle) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {needle:?} on stderr within {DEADLINE:?}:\n{}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "es-connector ended before saying {needle:?}:\n{}",
                        self.seen
                    )
                }
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid);
    }

    /// Waits for the exit; on a timeout kills the process and fails saying `when`.
    fn wait_exit(&mut self, when: &str) -> ExitStatus {
        match self.exited.recv_timeout(DEADLINE) {
            Ok(status) => {
                self.status = Some(status);
                // Everything it wrote: the pipe ends with the process.
                while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                status
            }
            Err(_) => {
                self.signal("KILL");
                while let Ok(line) = self.lines.try_recv() {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                panic!(
                    "es-connector was still running {DEADLINE:?} {when}; stderr:\n{}",
                    self.seen
                )
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

fn stored_state(dir: &Path) -> serde_json::Value {
    let path = dir.join("states/stop.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn sigterm_during_an_output_outage_stops_promptly_with_the_state_saved() {
    let server = FakeServer::start();
    server.push(200, page(&["a", "b"]));
    let dir = tempfile::tempdir().unwrap();
    let output = format!(
        "[output]\nkind = \"elasticsearch\"\nurl = \"http://127.0.0.1:{}\"\nindex = \"out\"\n",
        closed_port()
    );
    let config = config_file(dir.path(), &server.url, &output);
    let mut run = Running::start(&config);
    // The batch is read; the output cannot take it.
    run.wait_for_line("sending the batch to the output");
    run.signal("TERM");
    let status = run.wait_exit("after SIGTERM, with the output down");
    assert!(status.success(), "{status:?}:\n{}", run.seen);
    assert!(run.seen.contains("stopped: 0 documents"), "{}", run.seen);
    let state = stored_state(dir.path());
    assert_eq!(state["data"]["total_documents_fetched"], 0, "{state}");
    assert!(
        state["data"].get("cursor").is_none(),
        "the batch never reached the output: {state}"
    );
}

#[test]
fn a_second_signal_exits_at_once_saying_so() {
    let server = FakeServer::start();
    server.push(200, page(&["a", "b"]));
    let dir = tempfile::tempdir().unwrap();
    // Another writer holds the file store's lock: the state save waits for it.
    std::fs::create_dir_all(dir.path().join("states")).unwrap();
    let lock = std::fs::File::create(dir.path().join("states/.lock")).unwrap();
    lock.lock().unwrap();
    let output = format!(
        "[output]\nkind = \"file\"\npath = \"{}\"\n",
        dir.path().join("out.jsonl").display()
    );
    let config = config_file(dir.path(), &server.url, &output);
    let mut run = Running::start(&config);
    run.wait_for_line("committing it");
    run.signal("TERM");
    // A save in progress is finished, not cut: the first signal waits for it.
    run.wait_for_line("shutdown requested");
    run.signal("TERM");
    let status = run.wait_exit("after the second SIGTERM");
    assert!(!status.success(), "{status:?}:\n{}", run.seen);
    assert!(run.seen.contains("exiting at once"), "{}", run.seen);
    drop(lock);
}

/// An output that is down: every send fails (retryable), each attempt reported.
#[derive(Debug)]
struct Down {
    attempts: tokio::sync::mpsc::UnboundedSender<()>,
}

#[async_trait]
impl Output for Down {
    async fn send(&mut self, _batch: &[Message]) -> Result<(), OutputError> {
        let _ = self.attempts.send(());
        Err(OutputError::Unavailable {
            output: "down".into(),
            reason: "unreachable".into(),
        })
    }
}

#[tokio::test]
async fn the_run_loop_stops_waiting_for_a_down_output_when_asked() {
    let server = FakeServer::start();
    server.push(200, page(&["a", "b"]));
    let mut source = fake_server::open_source(&server).await;
    let (attempts_tx, mut attempts) = tokio::sync::mpsc::unbounded_channel();
    let mut output = Down {
        attempts: attempts_tx,
    };
    let (stop, shutdown) = watch::channel(false);
    // The pause after a failure is an hour: only the shutdown request can end it.
    let hour = Duration::from_secs(3600);
    let options = RunOptions::default()
        .with_shutdown(shutdown)
        .with_backoff(hour, hour);
    let run = tokio::spawn(async move { connector::run(&mut source, &mut output, options).await });
    attempts.recv().await.unwrap();
    stop.send(true).unwrap();
    let summary = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| {
            panic!("the run went on waiting for the output {DEADLINE:?} after the shutdown request")
        })
        .unwrap()
        .unwrap();
    assert!(summary.interrupted, "{summary:?}");
    assert_eq!(summary.documents, 0);
}
