//! The run loop: poll, send, commit; sleep when caught up; retry with backoff.
//!
//! # Stopping
//!
//! A shutdown request ([`RunOptions::with_shutdown`]) is honoured at the next safe
//! point: between batches, during any pause (caught up, or waiting to retry a
//! failed search, send or save), and during a search or a send in flight, which
//! are abandoned (the batch is not acknowledged, so the cursor stays put and the
//! batch is read again at the next start) unless the output says a send must end
//! ([`Output::cancel_on_stop`]: a local file write is finished and committed). A state save in progress is finished,
//! never cut: its outcome must be known. Retries go on for as long as the output
//! or the store is down (nothing is dropped), but never past a shutdown request.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use es_query::Cursor;
use tokio::sync::watch;

use crate::error::{ConnectorError, Result};
use crate::message::{HEADER_TIMESTAMP, Message, MessageId};
use crate::metrics::Metrics;
use crate::output::Output;
use crate::progress::RunObserver;
use crate::source::{Ack, Batch, ElasticsearchSource};

/// Shortest pause after a failure.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause after repeated failures.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How [`run`] behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop after the first empty poll (caught up) instead of waiting for more.
    pub once: bool,
    /// When the value becomes `true`: stop at the next safe point (see the module
    /// docs) and return; the caller closes the source, which saves the state.
    pub shutdown: Option<watch::Receiver<bool>>,
    /// Pause after the first failure; doubled (with jitter) up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
    /// Counters updated per batch, error and state save (see [`crate::metrics`]).
    pub metrics: Option<Metrics>,
    /// Told about each committed batch (e.g. a progress bar).
    pub observer: Option<Arc<dyn RunObserver>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            once: false,
            shutdown: None,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            metrics: None,
            observer: None,
        }
    }
}

impl RunOptions {
    /// Stop once caught up.
    pub fn once(mut self, once: bool) -> Self {
        self.once = once;
        self
    }

    /// Stop cleanly when `shutdown` turns `true`.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Backoff bounds.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Update `metrics` as the run goes.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Tell `observer` about each committed batch.
    pub fn with_observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Documents delivered and committed.
    pub documents: u64,
    /// Of those, documents `late_window` found behind the cursor.
    pub late: u64,
    /// Non-empty batches delivered and committed.
    pub batches: u64,
    /// Errors met and retried.
    pub errors: u64,
    /// Documents not sent because the output already held them (see
    /// [`Output::recently_delivered`]); they count in `documents` too.
    pub skipped: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The cursor of the last committed batch.
    pub cursor: Option<Cursor>,
    /// Whether the run ended because shutdown was requested.
    pub interrupted: bool,
}

impl RunSummary {
    /// Documents per second over the whole run.
    pub fn docs_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.documents as f64 / secs
        } else {
            0.0
        }
    }
}

/// Exponential backoff with jitter: `min`, then doubling up to `max`, each pause
/// drawn from [pause/2, pause].
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next pause.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Whether a shutdown request may cut an attempt in flight short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Drop it: nothing is stored unless it completes.
    Abandon,
    /// Let it end; only the pauses between attempts are cut.
    Finish,
}

/// Runs `op` until it succeeds or fails for good ([`ConnectorError::is_retryable`]),
/// pausing with `backoff` after each retryable failure (counted in `errors`;
/// `what` is the log message). `None` when a shutdown request came first (see
/// [`Attempt`]). The one retry loop of the sink, the run loop's outputs and the
/// sink plugin.
pub async fn retrying<T, E: Into<ConnectorError>>(
    backoff: &mut Backoff,
    errors: &mut u64,
    shutdown: &mut Option<watch::Receiver<bool>>,
    attempt: Attempt,
    what: &str,
    mut op: impl AsyncFnMut() -> std::result::Result<T, E>,
) -> Result<Option<T>> {
    loop {
        let outcome = match attempt {
            Attempt::Abandon => match until_stopped(op(), shutdown).await {
                Some(outcome) => outcome,
                None => return Ok(None),
            },
            Attempt::Finish => op().await,
        };
        match outcome.map_err(Into::into) {
            Ok(value) => {
                backoff.reset();
                return Ok(Some(value));
            }
            Err(e) if e.is_retryable() => {
                *errors += 1;
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "{what}");
                if !pause(delay, shutdown).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens `source`, retrying with backoff while the server is unreachable or
/// failing (counted nowhere yet: the state is not loaded). Returns `false` when
/// shutdown was requested before it could open.
pub async fn open_with_retry(
    source: &mut ElasticsearchSource,
    options: &mut RunOptions,
) -> Result<bool> {
    let mut backoff = Backoff::new(options.min_backoff, options.max_backoff);
    loop {
        let Some(opened) = until_stopped(source.open(), &mut options.shutdown).await else {
            return Ok(false);
        };
        match opened {
            Ok(()) => return Ok(true),
            Err(e) if e.is_retryable() => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot open the source yet");
                if !pause(delay, &mut options.shutdown).await {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls `source`, sends each batch to `output`, commits it once sent, until
/// shutdown (or, with `once`, until caught up). Errors from Elasticsearch and
/// retryable output errors are counted in the state and retried with backoff; a
/// state conflict (another instance owns the state), an invalid configuration or a
/// refused batch stop the run with the error. The source is not closed.
pub async fn run(
    source: &mut ElasticsearchSource,
    output: &mut dyn Output,
    options: RunOptions,
) -> Result<RunSummary> {
    let observer = options.observer.clone();
    let outcome = run_loop(source, output, options).await;
    if let Some(observer) = &observer {
        observer.finished();
    }
    outcome
}

async fn run_loop(
    source: &mut ElasticsearchSource,
    output: &mut dyn Output,
    mut options: RunOptions,
) -> Result<RunSummary> {
    let started = Instant::now();
    let hooks = Hooks {
        metrics: options.metrics.take(),
        // Saves happen in commit only when a state block is enabled.
        persistent: matches!(source.config().state_settings(), Ok(Some(_))),
    };
    let mut summary = RunSummary::default();
    let mut backoff = Backoff::new(options.min_backoff, options.max_backoff);
    let polling_interval = source.config().polling_interval;
    // One batch per slice can be sent and not yet committed; read twice that.
    let window = 2 * source.config().batch_size * source.config().slices.max(1) as usize;
    let Some(mut delivered) = recently_delivered(
        source,
        output,
        window,
        &mut backoff,
        &mut options,
        &mut summary,
    )
    .await?
    else {
        summary.interrupted = true;
        summary.elapsed = started.elapsed();
        return Ok(summary);
    };
    loop {
        if stop_requested(&options.shutdown) {
            summary.interrupted = true;
            break;
        }
        let Some(polled) = until_stopped(source.poll_batch(), &mut options.shutdown).await else {
            summary.interrupted = true;
            break;
        };
        let batch = match polled {
            Ok(batch) => batch,
            // `--once` reads what is there: a missing index is an error, not a wait.
            Err(e) if options.once && e.is_missing_index() => return Err(e),
            Err(e) if e.is_retryable() => {
                summary.errors += 1;
                hooks.error();
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "poll failed");
                if !pause(delay, &mut options.shutdown).await {
                    summary.interrupted = true;
                    break;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        backoff.reset();
        if batch.is_empty() {
            if options.once {
                break;
            }
            tracing::debug!(wait = ?polling_interval, "caught up");
            if !pause(polling_interval, &mut options.shutdown).await {
                summary.interrupted = true;
                break;
            }
            continue;
        }
        let fresh: Vec<Message>;
        let messages = if delivered.is_empty() {
            &batch.messages[..]
        } else {
            // Each id is skipped once and then forgotten; the rest stays known
            // for as long as it may still come: the re-read need not equal what
            // was in flight (documents arriving inside its range, another order
            // within a timestamp under a new point in time). A later version of
            // a document has another id (its `_seq_no` is part of it), so the
            // set (at most `window` ids, only shrinking) never hides new data.
            fresh = batch
                .messages
                .iter()
                .filter(|m| !delivered.remove(&m.id))
                .cloned()
                .collect();
            let skipped = batch.len() - fresh.len();
            if skipped > 0 {
                summary.skipped += skipped as u64;
                tracing::info!(
                    skipped,
                    "documents already at the output (sent before a crash, not yet acknowledged in the state) are not sent again"
                );
            }
            &fresh[..]
        };
        let committed = deliver(
            source,
            output,
            &batch,
            messages,
            &mut backoff,
            &mut summary,
            &hooks,
            &mut options.shutdown,
        )
        .await?;
        if !committed {
            tracing::warn!(
                documents = batch.len(),
                "stopping: the batch in flight is not acknowledged; it is read again at the next start"
            );
            summary.interrupted = true;
            break;
        }
        summary.documents += batch.len() as u64;
        summary.batches += 1;
        let bytes = batch.ack.as_ref().map_or(0, |a| a.bytes);
        let late = batch.ack.as_ref().is_some_and(Ack::is_late);
        if let Some(metrics) = &hooks.metrics {
            metrics.record_batch(batch.len() as u64, bytes);
            if late {
                // Old documents: the lag is the cursor's, which did not move.
                metrics.record_late(batch.len() as u64);
            } else if let Some(ts) = batch
                .messages
                .last()
                .and_then(|m| m.headers.get(HEADER_TIMESTAMP))
            {
                metrics.observe_timestamp(ts);
            }
        }
        if late {
            summary.late += batch.len() as u64;
        }
        if let Some(observer) = &options.observer {
            observer.batch_committed(batch.len() as u64, bytes);
            let last = batch
                .messages
                .last()
                .and_then(|m| m.headers.get(HEADER_TIMESTAMP))
                .and_then(|ts| crate::metrics::parse_timestamp_millis(ts));
            if let (false, Some(millis)) = (late, last) {
                let now = chrono::Utc::now().timestamp_millis();
                observer.lag(now.saturating_sub(millis) as f64 / 1000.0);
            }
        }
        tracing::info!(
            documents = summary.documents,
            batches = summary.batches,
            batch = batch.len(),
            "batch committed"
        );
    }
    summary.cursor = source.committed_cursor().cloned();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Asks the output which messages it already holds (see
/// [`Output::recently_delivered`]), retrying while it is unavailable. `None` when a
/// shutdown was requested meanwhile.
async fn recently_delivered(
    source: &ElasticsearchSource,
    output: &mut dyn Output,
    window: usize,
    backoff: &mut Backoff,
    options: &mut RunOptions,
    summary: &mut RunSummary,
) -> Result<Option<HashSet<MessageId>>> {
    loop {
        let Some(asked) =
            until_stopped(output.recently_delivered(window), &mut options.shutdown).await
        else {
            return Ok(None);
        };
        match asked {
            Ok(ids) => {
                backoff.reset();
                return Ok(Some(ids));
            }
            Err(e) if e.is_retryable() => {
                summary.errors += 1;
                let e = source.record_error(ConnectorError::from(e)).await;
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot read what the output already holds");
                if !pause(delay, &mut options.shutdown).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(source.record_error(ConnectorError::from(e)).await),
        }
    }
}

/// Sends until the output acknowledges, then commits; `false` when a shutdown
/// request came first. A send in flight is abandoned then (the batch is not
/// acknowledged); a save in flight is finished, and a failed one left to the
/// final save of `close`.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    source: &mut ElasticsearchSource,
    output: &mut dyn Output,
    batch: &Batch,
    messages: &[Message],
    backoff: &mut Backoff,
    summary: &mut RunSummary,
    hooks: &Hooks,
    shutdown: &mut Option<watch::Receiver<bool>>,
) -> Result<bool> {
    loop {
        if messages.is_empty() {
            break;
        }
        tracing::debug!(
            documents = messages.len(),
            "sending the batch to the output"
        );
        let sent = if output.cancel_on_stop() {
            match until_stopped(output.send(messages), shutdown).await {
                Some(sent) => sent,
                None => return Ok(false),
            }
        } else {
            output.send(messages).await
        };
        match sent {
            Ok(()) => break,
            Err(e) if e.is_retryable() => {
                summary.errors += 1;
                hooks.error();
                let e = source.record_error(ConnectorError::from(e)).await;
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "output failed; sending the batch again");
                if !pause(delay, shutdown).await {
                    return Ok(false);
                }
            }
            Err(e) => return Err(source.record_error(ConnectorError::from(e)).await),
        }
    }
    backoff.reset();
    let Some(ack) = &batch.ack else {
        return Ok(true);
    };
    tracing::debug!("the output acknowledged the batch; committing it");
    loop {
        let saving = Instant::now();
        match source.commit(ack).await {
            Ok(()) => {
                hooks.saved(saving.elapsed());
                return Ok(true);
            }
            Err(e) if e.is_retryable() => {
                summary.errors += 1;
                hooks.error();
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "saving the state failed; retrying");
                if !pause(delay, shutdown).await {
                    // Committed in memory: the final save of `close` tries again.
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The run's metrics hooks.
struct Hooks {
    metrics: Option<Metrics>,
    persistent: bool,
}

impl Hooks {
    fn error(&self) {
        if let Some(m) = &self.metrics {
            m.record_error();
        }
    }

    fn saved(&self, took: Duration) {
        if let Some(m) = &self.metrics
            && self.persistent
        {
            m.record_state_save(took);
        }
    }
}

fn stop_requested(shutdown: &Option<watch::Receiver<bool>>) -> bool {
    shutdown.as_ref().is_some_and(|rx| *rx.borrow())
}

/// Runs `work` unless shutdown is requested first (or already was): `None` then,
/// and `work` is dropped. Only for work that may be abandoned half-way.
pub(crate) async fn until_stopped<T>(
    work: impl Future<Output = T>,
    shutdown: &mut Option<watch::Receiver<bool>>,
) -> Option<T> {
    let Some(rx) = shutdown else {
        return Some(work.await);
    };
    if *rx.borrow() {
        return None;
    }
    tokio::select! {
        out = work => Some(out),
        // `Err`: nobody can ask for a shutdown any more; the work goes on.
        Ok(_) = rx.wait_for(|stop| *stop) => None,
    }
}

/// Waits `delay`; `false` when shutdown was requested meanwhile.
pub(crate) async fn pause(delay: Duration, shutdown: &mut Option<watch::Receiver<bool>>) -> bool {
    match shutdown {
        None => {
            tokio::time::sleep(delay).await;
            true
        }
        Some(rx) => {
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            let stopped = tokio::select! {
                () = &mut sleep => None,
                changed = rx.wait_for(|stop| *stop) => Some(changed.is_ok()),
            };
            match stopped {
                Some(true) => false,
                // Nobody can ask for a shutdown any more: just wait.
                Some(false) => {
                    sleep.await;
                    true
                }
                None => !*rx.borrow(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::OutputError;

    #[test]
    fn backoff_grows_within_bounds_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        for (d, ceiling) in delays.iter().zip([100u64, 200, 400, 800, 800, 800]) {
            assert!(*d <= Duration::from_millis(ceiling), "{d:?} > {ceiling}ms");
            assert!(
                *d >= Duration::from_millis(ceiling / 2),
                "{d:?} < {ceiling}/2 ms"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn until_stopped_abandons_work_in_flight_on_shutdown() {
        let (tx, rx) = watch::channel(false);
        let mut rx = Some(rx);
        assert_eq!(until_stopped(async { 7 }, &mut rx).await, Some(7));
        let waiter =
            tokio::spawn(async move { until_stopped(std::future::pending::<()>(), &mut rx).await });
        tokio::task::yield_now().await;
        let _ = tx.send(true);
        assert_eq!(waiter.await.ok(), Some(None));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_ends_early_on_shutdown() {
        let (tx, rx) = watch::channel(false);
        let mut rx = Some(rx);
        let waiter = tokio::spawn(async move { pause(Duration::from_secs(3600), &mut rx).await });
        tokio::task::yield_now().await;
        let _ = tx.send(true);
        assert_eq!(waiter.await.ok(), Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_ends_at_a_shutdown_request_in_a_pause_or_an_attempt() {
        let (stop, rx) = watch::channel(false);
        let mut shutdown = Some(rx);
        let mut backoff = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let mut errors = 0;
        let mut attempts = 0;
        // Asks for a shutdown a minute (of paused time) from now; hands the sender back.
        let stop_in_a_minute = |stop: watch::Sender<bool>| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let _ = stop.send(true);
                stop
            })
        };
        let stopper = stop_in_a_minute(stop);
        // Fails (retryably) at once: the run waits an hour to retry; the request ends the wait.
        let outcome = retrying(
            &mut backoff,
            &mut errors,
            &mut shutdown,
            Attempt::Finish,
            "down",
            async || {
                attempts += 1;
                Err::<(), _>(OutputError::Unavailable {
                    output: "test".into(),
                    reason: "down".into(),
                })
            },
        )
        .await;
        assert!(matches!(outcome, Ok(None)), "{outcome:?}");
        assert_eq!((attempts, errors), (1, 1));
        let stop = stopper.await.unwrap_or_else(|e| panic!("{e}"));
        // An attempt that never ends is abandoned.
        let _ = stop.send(false);
        let stopper = stop_in_a_minute(stop);
        let outcome = retrying(
            &mut backoff,
            &mut errors,
            &mut shutdown,
            Attempt::Abandon,
            "hangs",
            async || std::future::pending::<std::result::Result<(), OutputError>>().await,
        )
        .await;
        assert!(matches!(outcome, Ok(None)), "{outcome:?}");
        drop(stopper);
    }
}
