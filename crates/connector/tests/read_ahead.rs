//! The run loop reads the next batch while the output writes the current one,
//! and still commits a batch only once the output acknowledged it, in poll
//! order. The source is a scripted local server and the output is held by the
//! test: no service needed, nothing timed.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "common/fake_server.rs"]
mod fake_server;

use std::time::Duration;

use connector::{Message, Output, OutputError, RunOptions, RunSummary};
use fake_server::{FakeServer, page};
use serde_json::json;
use state_core::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

/// Bound on a wait that only a broken read-ahead makes long (a hang guard).
const DEADLINE: Duration = Duration::from_secs(60);

/// An output that, on its first send, says so and then waits for the test to
/// release it; it records every batch it took.
#[derive(Debug)]
struct Held {
    started: Option<oneshot::Sender<()>>,
    release: Option<oneshot::Receiver<()>>,
    taken: mpsc::UnboundedSender<Vec<String>>,
}

#[async_trait]
impl Output for Held {
    async fn send(&mut self, batch: &[Message]) -> Result<(), OutputError> {
        if let (Some(started), Some(release)) = (self.started.take(), self.release.take()) {
            let _ = started.send(());
            let _ = release.await;
        }
        let ids = batch
            .iter()
            .map(|m| m.headers.get("es_id").cloned().unwrap_or_default())
            .collect();
        let _ = self.taken.send(ids);
        Ok(())
    }

    /// Like the file output: a send once begun is finished and committed.
    fn cancel_on_stop(&self) -> bool {
        false
    }
}

struct Harness {
    server: FakeServer,
    started: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
    taken: mpsc::UnboundedReceiver<Vec<String>>,
    stop: watch::Sender<bool>,
    run: tokio::task::JoinHandle<connector::Result<RunSummary>>,
}

/// A `--once` run over two pages of two documents, its output held at the first send.
async fn start() -> Harness {
    let server = FakeServer::start();
    server.push(200, page(&["a", "b"]));
    server.push(200, page(&["c", "d"]));
    let mut source = fake_server::open_source(&server).await;
    let (started_tx, started) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    let (taken_tx, taken) = mpsc::unbounded_channel();
    let mut output = Held {
        started: Some(started_tx),
        release: Some(release_rx),
        taken: taken_tx,
    };
    let (stop, shutdown) = watch::channel(false);
    let options = RunOptions::default().once(true).with_shutdown(shutdown);
    let run = tokio::spawn(async move { connector::run(&mut source, &mut output, options).await });
    Harness {
        server,
        started,
        release,
        taken,
        stop,
        run,
    }
}

/// Waits (off the runtime) until the server has had `n` searches.
async fn searches_reach(server: &FakeServer, n: usize) -> bool {
    let server = server.clone();
    tokio::task::spawn_blocking(move || server.wait_for_searches(n, DEADLINE))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_next_page_is_fetched_while_the_output_holds_the_batch() {
    let mut h = start().await;
    h.started.await.unwrap();
    // The first batch is neither acknowledged nor committed, and the second
    // page is asked for already.
    assert!(
        searches_reach(&h.server, 2).await,
        "the run did not ask for the next page while the output held the batch:\n{}",
        h.server.log()
    );
    h.release.send(()).unwrap();
    let summary = h.run.await.unwrap().unwrap();
    assert_eq!((summary.documents, summary.batches), (4, 2), "{summary:?}");
    assert!(!summary.interrupted);
    assert_eq!(
        summary.cursor.map(|c| c.sort),
        Some(vec![json!(1000), json!("d")])
    );
    let mut taken = Vec::new();
    while let Ok(batch) = h.taken.try_recv() {
        taken.push(batch);
    }
    assert_eq!(taken, [["a", "b"], ["c", "d"]]);
}

#[tokio::test]
async fn a_batch_read_ahead_is_not_committed_when_the_run_stops() {
    let mut h = start().await;
    h.started.await.unwrap();
    assert!(searches_reach(&h.server, 2).await, "{}", h.server.log());
    // Asked to stop while the first batch is being written and the second
    // one is read: the write is finished and committed, the second batch is
    // left for the next start.
    h.stop.send(true).unwrap();
    h.release.send(()).unwrap();
    let summary = h.run.await.unwrap().unwrap();
    assert!(summary.interrupted, "{summary:?}");
    assert_eq!((summary.documents, summary.batches), (2, 1), "{summary:?}");
    assert_eq!(
        summary.cursor.map(|c| c.sort),
        Some(vec![json!(1000), json!("b")])
    );
    assert_eq!(h.taken.recv().await, Some(vec!["a".into(), "b".into()]));
    assert_eq!(h.taken.recv().await, None);
}
