//! The run loop: poll, send, commit; sleep when caught up; retry with backoff.
//! The next batch is polled while the output writes the current one (one batch
//! of read-ahead), so the server is not idle while we write; a batch is still
//! committed only after the output acknowledged it, in poll order.
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

use bulk::JitterRng;
use es_query::Cursor;
use state_core::{StateManager, StateStore, StateStoreExt};
use tokio::sync::watch;

use crate::error::{ConnectorError, Result};
use crate::message::{HEADER_TIMESTAMP, Message, MessageId};
use crate::metrics::{Metrics, STORE_SAMPLE_INTERVAL};
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

/// Exponential backoff with jitter, and where it stands: `min`, then doubling up
/// to `max`, each pause drawn from [pause/2, pause]. The policy is
/// [`bulk::Backoff`]'s (the one the bulk processor retries requests with),
/// without a limit on retries; the jitter comes from a [`JitterRng`], seeded
/// from the clock by [`Backoff::new`] or given by [`Backoff::with_rng`] (tests).
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: bulk::Backoff,
    retry: u32,
    rng: JitterRng,
}

impl Backoff {
    /// A backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self::with_rng(min, max, JitterRng::from_entropy())
    }

    /// A backoff between `min` and `max` drawing its jitter from `rng`.
    pub fn with_rng(min: Duration, max: Duration, rng: JitterRng) -> Self {
        Backoff {
            policy: bulk::Backoff {
                initial: min,
                max_delay: max.max(min),
                multiplier: 2.0,
                jitter: 0.5,
                max_retries: u32::MAX,
                max_elapsed: Duration::MAX,
            },
            retry: 0,
            rng,
        }
    }

    /// The next pause.
    pub fn next_delay(&mut self) -> Duration {
        self.retry = self.retry.saturating_add(1);
        self.policy
            .next_delay(self.retry, Duration::ZERO, self.rng.unit())
            .unwrap_or(self.policy.max_delay)
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.retry = 0;
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

/// The one retry loop of the run loop, `es-connector sink` and the sink plugin:
/// runs an operation until it succeeds, fails for good, or a shutdown request
/// comes first. Each failure it retries is counted once, in the caller's count
/// and in the metrics when there are some (an operation that also records its
/// error in the state does so itself, once), logged, and followed by a pause
/// from the [`Backoff`], which a success resets.
///
/// ```text
/// let retry = Retry::new(&mut backoff, &mut shutdown, &mut summary.errors)
///     .metrics(metrics.as_ref());
/// let sent = retried!(retry, "output failed; sending the batch again", output.send(batch))?;
/// // None: a shutdown request came first
/// ```
#[derive(Debug)]
pub struct Retry<'a> {
    backoff: &'a mut Backoff,
    shutdown: &'a mut Option<watch::Receiver<bool>>,
    errors: &'a mut u64,
    metrics: Option<&'a Metrics>,
    attempt: Attempt,
    retry_if: fn(&ConnectorError) -> bool,
}

impl<'a> Retry<'a> {
    /// Retries what [`ConnectorError::is_retryable`] says may pass, abandoning an
    /// attempt in flight at a shutdown request, counting in `errors`.
    pub fn new(
        backoff: &'a mut Backoff,
        shutdown: &'a mut Option<watch::Receiver<bool>>,
        errors: &'a mut u64,
    ) -> Self {
        Retry {
            backoff,
            shutdown,
            errors,
            metrics: None,
            attempt: Attempt::Abandon,
            retry_if: ConnectorError::is_retryable,
        }
    }

    /// What a shutdown request does to an attempt in flight.
    pub fn attempt(mut self, attempt: Attempt) -> Self {
        self.attempt = attempt;
        self
    }

    /// Also counts each retried failure in `es_connector_errors_total` (by
    /// kind and retryability).
    pub fn metrics(mut self, metrics: Option<&'a Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Which failures are retried (the others end the loop with the error).
    pub fn retry_if(mut self, retry_if: fn(&ConnectorError) -> bool) -> Self {
        self.retry_if = retry_if;
        self
    }

    /// One attempt: awaits `attempt` (abandoned at a shutdown request, per
    /// [`Attempt`]); a failure that is retried is counted, logged (at `warn`, or
    /// `error` for one that will not pass by itself) headed by `what`, and
    /// followed by the pause. [`retried!`](crate::retried) loops over it.
    pub async fn step<T, E: Into<ConnectorError>>(
        &mut self,
        what: &str,
        attempt: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<Step<T>> {
        let outcome = match self.attempt {
            Attempt::Abandon => match until_stopped(attempt, self.shutdown).await {
                Some(outcome) => outcome,
                None => return Ok(Step::Stopped),
            },
            Attempt::Finish => attempt.await,
        };
        match outcome.map_err(Into::into) {
            Ok(value) => {
                self.backoff.reset();
                Ok(Step::Done(value))
            }
            Err(e) if (self.retry_if)(&e) => {
                *self.errors += 1;
                if let Some(metrics) = self.metrics {
                    metrics.record_connector_error(&e);
                }
                let delay = self.backoff.next_delay();
                if e.is_retryable() {
                    tracing::warn!(error = %e, retry_in = ?delay, "{what}");
                } else {
                    tracing::error!(error = %e, retry_in = ?delay, "{what}");
                }
                if pause(delay, self.shutdown).await {
                    Ok(Step::Again)
                } else {
                    Ok(Step::Stopped)
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// What one [`Retry::step`] came to.
#[derive(Debug)]
pub enum Step<T> {
    /// The attempt succeeded.
    Done(T),
    /// It failed and is to be made again (the pause is over).
    Again,
    /// A shutdown request came first.
    Stopped,
}

/// Makes the attempt `$attempt` (an expression giving a future of a `Result`,
/// evaluated anew for each attempt) through the [`Retry`] `$retry` until it
/// succeeds (`Ok(Some(value))`), fails for good (`Err`), or a shutdown request
/// comes first (`Ok(None)`); `$what` heads each retry's log line. A macro, not a
/// function taking an async closure: the attempt borrows the caller's state
/// anew each time, and the future stays `Send` (rustc cannot yet prove that of
/// an async closure's borrows).
#[macro_export]
macro_rules! retried {
    ($retry:expr, $what:expr, $attempt:expr) => {{
        let mut retry = $retry;
        loop {
            match retry.step($what, $attempt).await {
                Ok($crate::run::Step::Done(value)) => break Ok(Some(value)),
                Ok($crate::run::Step::Again) => {}
                Ok($crate::run::Step::Stopped) => break Ok(None),
                Err(e) => break Err(e),
            }
        }
    }};
}

/// Opens `source`, retrying with backoff while the server is unreachable or
/// failing (counted in the metrics only: the state is not loaded yet). Returns
/// `false` when shutdown was requested before it could open.
pub async fn open_with_retry(
    source: &mut ElasticsearchSource,
    options: &mut RunOptions,
) -> Result<bool> {
    if let Some(metrics) = &options.metrics {
        source.set_metrics(metrics.clone());
    }
    let mut backoff = Backoff::new(options.min_backoff, options.max_backoff);
    let mut errors = 0;
    let retry = Retry::new(&mut backoff, &mut options.shutdown, &mut errors)
        .metrics(options.metrics.as_ref());
    let opened = retried!(retry, "cannot open the source yet", source.open());
    if let (Err(e), Some(metrics)) = (&opened, &options.metrics) {
        metrics.record_connector_error(e);
    }
    Ok(opened?.is_some())
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
    let metrics = options.metrics.clone();
    if let Some(metrics) = &metrics {
        source.set_metrics(metrics.clone());
    }
    let outcome = run_loop(source, output, options).await;
    if let (Err(e), Some(metrics)) = (&outcome, &metrics) {
        // The error that ended the run (those retried are counted as they come).
        metrics.record_connector_error(e);
    }
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
        persistent: source.is_persistent(),
    };
    let mut summary = RunSummary::default();
    // The state store's size, sampled while the run lasts and once at its end.
    let store = match (&hooks.metrics, source.get_state_manager()) {
        (Some(metrics), Some(manager)) if hooks.persistent => {
            Some((metrics.clone(), manager.store().clone()))
        }
        _ => None,
    };
    let _sampler = store
        .clone()
        .map(|(metrics, store)| StoreSampler::start(metrics, store));
    let mut backoff = Backoff::new(options.min_backoff, options.max_backoff);
    let polling_interval = source.config().polling_interval;
    // One batch per slice can be sent and not yet committed; read twice that.
    let window = 2 * source.config().batch_size * source.config().slices.max(1) as usize;
    let Some(mut delivered) = recently_delivered(
        source,
        output,
        window,
        &mut backoff,
        &mut options.shutdown,
        &hooks,
        &mut summary,
    )
    .await?
    else {
        summary.interrupted = true;
        summary.elapsed = started.elapsed();
        return Ok(summary);
    };
    let mut reading = Backoff::new(options.min_backoff, options.max_backoff);
    // The next batch, read while the one before it was being delivered.
    let mut ahead: Option<Batch> = None;
    // A caught-up poll made before the last batch was committed does not look
    // behind the cursor (`late_window` waits until everything handed out is
    // committed): such a poll is made again.
    let looks_behind = !source.config().late_window.is_zero();
    loop {
        if stop_requested(&options.shutdown) {
            summary.interrupted = true;
            break;
        }
        // `--once` reads what is there: a missing index is an error, not a wait.
        let retry_if: fn(&ConnectorError) -> bool = if options.once {
            |e| e.is_retryable() && !e.is_missing_index()
        } else {
            ConnectorError::is_retryable
        };
        let batch = match ahead.take() {
            Some(batch) => batch,
            None => {
                // The source counts its failures in the state itself.
                let retry = Retry::new(&mut reading, &mut options.shutdown, &mut summary.errors)
                    .metrics(hooks.metrics.as_ref())
                    .retry_if(retry_if);
                let polled = retried!(retry, "poll failed", source.poll_batch())?;
                let Some(batch) = polled else {
                    summary.interrupted = true;
                    break;
                };
                batch
            }
        };
        if batch.is_empty() {
            if let Some(metrics) = &hooks.metrics {
                metrics.record_empty_poll();
            }
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
        let delivery = deliver(
            source,
            output,
            &batch,
            messages,
            Lanes {
                sending: &mut backoff,
                reading: &mut reading,
                retry_if,
            },
            &mut summary,
            &hooks,
            &mut options.shutdown,
        )
        .await?;
        if !delivery.committed {
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
                .and_then(|ts| crate::message::timestamp_millis(ts));
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
        match delivery.next {
            // Shutdown requested while reading ahead: the batch just committed
            // was the last.
            Some(Ok(None)) => {
                summary.interrupted = true;
                break;
            }
            Some(Ok(Some(next))) => {
                if next.is_empty() && looks_behind {
                    if let Some(metrics) = &hooks.metrics {
                        metrics.record_empty_poll();
                    }
                } else {
                    ahead = Some(next);
                }
            }
            // A poll that failed for good, after the batch before it is committed.
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    summary.cursor = source.committed_cursor().cloned();
    summary.elapsed = started.elapsed();
    if let Some((metrics, store)) = &store {
        sample_store(metrics, store.as_ref()).await;
    }
    Ok(summary)
}

/// Samples a state store's size into the metrics every
/// [`STORE_SAMPLE_INTERVAL`], first at once; the task ends when this is dropped.
struct StoreSampler(tokio::task::JoinHandle<()>);

impl StoreSampler {
    fn start(metrics: Metrics, store: Arc<dyn StateStore>) -> Self {
        StoreSampler(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(STORE_SAMPLE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                sample_store(&metrics, store.as_ref()).await;
            }
        }))
    }
}

impl Drop for StoreSampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One sample of the store's size (`StateStoreExt::stats`: a listing), given
/// at most [`STORE_SAMPLE_INTERVAL`]; a failure is logged and the figures kept.
async fn sample_store(metrics: &Metrics, store: &dyn StateStore) {
    match tokio::time::timeout(STORE_SAMPLE_INTERVAL, store.stats()).await {
        Ok(Ok(stats)) => metrics.set_store_size(stats.total_states as u64, stats.total_bytes),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the state store's size"),
        Err(_) => tracing::warn!(
            timeout = ?STORE_SAMPLE_INTERVAL,
            "reading the state store's size took too long"
        ),
    }
}

/// Asks the output which messages it already holds (see
/// [`Output::recently_delivered`]), retrying while it is unavailable. `None` when a
/// shutdown was requested meanwhile.
async fn recently_delivered(
    source: &ElasticsearchSource,
    output: &mut dyn Output,
    window: usize,
    backoff: &mut Backoff,
    shutdown: &mut Option<watch::Receiver<bool>>,
    hooks: &Hooks,
    summary: &mut RunSummary,
) -> Result<Option<HashSet<MessageId>>> {
    let retry = Retry::new(backoff, shutdown, &mut summary.errors).metrics(hooks.metrics.as_ref());
    retried!(
        retry,
        "cannot read what the output already holds",
        source.recording_error(output.recently_delivered(window))
    )
}

/// The retry state of the two things a delivery does at once.
struct Lanes<'a> {
    /// Sending the batch and committing it.
    sending: &'a mut Backoff,
    /// Reading the next batch meanwhile.
    reading: &'a mut Backoff,
    /// Which poll failures are retried.
    retry_if: fn(&ConnectorError) -> bool,
}

/// How a delivery ended.
struct Delivery {
    /// Whether the batch was acknowledged and committed (`false`: a shutdown
    /// request came first).
    committed: bool,
    /// The next poll, made while the batch was sent: `None` when it was not
    /// made to the end (the send ended first: stopped), `Ok(None)` when a
    /// shutdown request ended it.
    next: Option<Result<Option<Batch>>>,
}

/// Sends until the output acknowledges, reading the next batch meanwhile, then
/// commits. The server answers the next search while the output writes, and
/// the cursor still moves only after the acknowledgement, in poll order: the
/// batch read ahead is handed out after this one and committed after it (the
/// source allows polls ahead of commits), and is dropped, never committed, when
/// this one fails or a shutdown request comes first.
///
/// A send in flight is abandoned at a shutdown request (the batch is not
/// acknowledged) unless the output says it must finish; a save in flight is
/// finished, and a failed one left to the final save of `close`. A send that
/// fails for good abandons the read ahead; a read that fails for good is
/// returned once this batch is committed.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    source: &mut ElasticsearchSource,
    output: &mut dyn Output,
    batch: &Batch,
    messages: &[Message],
    lanes: Lanes<'_>,
    summary: &mut RunSummary,
    hooks: &Hooks,
    shutdown: &mut Option<watch::Receiver<bool>>,
) -> Result<Delivery> {
    let Lanes {
        sending,
        reading,
        retry_if,
    } = lanes;
    // The read holds the source: the send's failures go to its state directly.
    let state = source.get_state_manager().cloned();
    let mut read_shutdown = shutdown.clone();
    let (mut send_errors, mut read_errors) = (0, 0);
    let (sent, next) = {
        let send = async {
            if messages.is_empty() {
                return Ok(Some(()));
            }
            tracing::debug!(
                documents = messages.len(),
                "sending the batch to the output"
            );
            let attempt = if output.cancel_on_stop() {
                Attempt::Abandon
            } else {
                Attempt::Finish
            };
            let retry = Retry::new(sending, shutdown, &mut send_errors)
                .metrics(hooks.metrics.as_ref())
                .attempt(attempt);
            retried!(
                retry,
                "output failed; sending the batch again",
                recording_error(state.as_ref(), output.send(messages))
            )
        };
        // The source counts its failures in the state itself.
        let read = async {
            let retry = Retry::new(reading, &mut read_shutdown, &mut read_errors)
                .metrics(hooks.metrics.as_ref())
                .retry_if(retry_if);
            retried!(retry, "poll failed", source.poll_batch())
        };
        tokio::pin!(send, read);
        let mut next = None;
        let sent = loop {
            tokio::select! {
                sent = &mut send => break sent,
                polled = &mut read, if next.is_none() => next = Some(polled),
            }
        };
        // Sent: the read is awaited. Refused or stopped: it is dropped.
        if matches!(sent, Ok(Some(()))) && next.is_none() {
            next = Some(read.await);
        }
        (sent, next)
    };
    summary.errors += send_errors + read_errors;
    if sent?.is_none() {
        return Ok(Delivery {
            committed: false,
            next: None,
        });
    }
    let Some(ack) = &batch.ack else {
        return Ok(Delivery {
            committed: true,
            next,
        });
    };
    tracing::debug!("the output acknowledged the batch; committing it");
    // The state manager counts failed saves in the state itself.
    let retry = Retry::new(sending, shutdown, &mut summary.errors)
        .metrics(hooks.metrics.as_ref())
        .attempt(Attempt::Finish);
    // The store records the save in the metrics (`MeteredStore`).
    let saved = retried!(
        retry,
        "saving the state failed; retrying",
        source.commit(ack)
    )?;
    // Not saved: committed in memory, and the final save of `close` tries again.
    Ok(Delivery {
        committed: saved.is_some(),
        next,
    })
}

/// Awaits an output's `attempt`, counting its failure in the state's
/// `error_count`/`last_error` like [`ElasticsearchSource::record_error`] (which
/// cannot be called while the source reads ahead).
async fn recording_error<T, E: Into<ConnectorError>>(
    state: Option<&StateManager>,
    attempt: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    let error = match attempt.await {
        Ok(value) => return Ok(value),
        Err(e) => e.into(),
    };
    if let Some(state) = state {
        crate::source::count_error(state, &error).await;
    }
    Err(error)
}

/// The run's metrics hooks.
struct Hooks {
    metrics: Option<Metrics>,
    persistent: bool,
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

    #[test]
    fn a_backoff_given_its_jitter_source_is_reproducible() {
        let delays = |seed| {
            let mut b = Backoff::with_rng(
                Duration::from_millis(100),
                Duration::from_secs(10),
                JitterRng::seeded(seed),
            );
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
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
    async fn a_retry_ends_at_a_shutdown_request_in_a_pause_or_an_attempt() {
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
        let retry = Retry::new(&mut backoff, &mut shutdown, &mut errors).attempt(Attempt::Finish);
        let outcome: Result<Option<()>> = retried!(retry, "down", async {
            attempts += 1;
            Err::<(), _>(OutputError::Unavailable {
                output: "test".into(),
                reason: "down".into(),
            })
        });
        assert!(matches!(outcome, Ok(None)), "{outcome:?}");
        assert_eq!((attempts, errors), (1, 1));
        let stop = stopper.await.unwrap_or_else(|e| panic!("{e}"));
        // An attempt that never ends is abandoned.
        let _ = stop.send(false);
        let stopper = stop_in_a_minute(stop);
        let retry = Retry::new(&mut backoff, &mut shutdown, &mut errors);
        let outcome = retried!(
            retry,
            "hangs",
            std::future::pending::<std::result::Result<(), OutputError>>()
        );
        assert!(matches!(outcome, Ok(None)), "{outcome:?}");
        drop(stopper);
    }
}
