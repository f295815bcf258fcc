//! A child process whose stderr lines arrive on a channel as it writes them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// Spawns `cmd` with stdout discarded and stderr piped: the child, and its
/// stderr lines (the channel ends when the child closes stderr).
pub fn spawn_reading_stderr(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}
