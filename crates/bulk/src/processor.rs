//! The processor: a dispatcher that cuts batches, workers that send them.
//!
//! ```text
//! add ──(memory permits)──▶ cmd channel ──▶ dispatcher ──batches──▶ workers ──▶ Transport
//!                                       Batcher: count / bytes / interval / flush  │
//!                          every request ends once: success · failure handler · handed back
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::{Backoff, JitterRng};
use crate::batcher::{Batcher, Cut};
use crate::error::BulkError;
use crate::limiter::{AdaptiveConcurrency, Cause, Change, Gate, Limiter, Pushback, Signal};
use crate::outcome::{CloseReport, FailedItem, FailureKind};
use crate::policy::{DEFAULT_ITEM_RETRY_STATUSES, RetryPolicy};
use crate::request::{BulkRequest, OpType, Resend};
use crate::response::{Decision, ItemDecision, decide, decide_unanswered, reconcile};
use crate::stats::{BulkStats, Counters, WorkerCounters};
use crate::transport::Transport;

/// Called before each `_bulk` call: (execution id, the requests).
pub type BeforeFn = Arc<dyn Fn(u64, &[BulkRequest]) + Send + Sync>;
/// Called after each `_bulk` call: (execution id, the requests, what happened).
pub type AfterFn = Arc<dyn Fn(u64, &[BulkRequest], &Decision) + Send + Sync>;
/// Called once for every request that failed for good.
pub type FailureFn = Arc<dyn Fn(FailedItem) + Send + Sync>;

/// Default `bulk_actions`.
pub const DEFAULT_BULK_ACTIONS: usize = 1000;
/// Default `bulk_size`: 5 MiB.
pub const DEFAULT_BULK_SIZE: usize = 5 << 20;
/// Renamed [`DEFAULT_ITEM_RETRY_STATUSES`](crate::DEFAULT_ITEM_RETRY_STATUSES)
/// (which now holds 502 and 504 too).
#[deprecated(note = "use `RetryPolicy::default()` or `DEFAULT_ITEM_RETRY_STATUSES`")]
pub const DEFAULT_RETRY_STATUSES: [u16; 6] = DEFAULT_ITEM_RETRY_STATUSES;

/// Builds a [`BulkProcessor`]; every setting has a documented default.
pub struct BulkProcessorBuilder {
    transport: Arc<dyn Transport>,
    name: String,
    workers: usize,
    bulk_actions: usize,
    bulk_size: usize,
    flush_interval: Option<Duration>,
    backoff: Backoff,
    retry: RetryPolicy,
    max_buffered_bytes: Option<usize>,
    before: Option<BeforeFn>,
    after: Option<AfterFn>,
    on_failure: Option<FailureFn>,
    stats: bool,
    jitter_seed: Option<u64>,
    adaptive: Option<AdaptiveConcurrency>,
}

impl fmt::Debug for BulkProcessorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkProcessorBuilder")
            .field("transport", &self.transport)
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("bulk_actions", &self.bulk_actions)
            .field("bulk_size", &self.bulk_size)
            .field("flush_interval", &self.flush_interval)
            .field("backoff", &self.backoff)
            .field("retry", &self.retry)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("stats", &self.stats)
            .field("adaptive", &self.adaptive)
            .finish_non_exhaustive()
    }
}

impl BulkProcessorBuilder {
    /// A builder sending through `transport` (e.g. [`HttpTransport`](crate::HttpTransport)).
    pub fn new(transport: impl Transport) -> Self {
        Self::with_transport(Arc::new(transport))
    }

    /// As [`BulkProcessorBuilder::new`] with a shared transport.
    pub fn with_transport(transport: Arc<dyn Transport>) -> Self {
        BulkProcessorBuilder {
            transport,
            name: "bulk-processor".into(),
            workers: 1,
            bulk_actions: DEFAULT_BULK_ACTIONS,
            bulk_size: DEFAULT_BULK_SIZE,
            flush_interval: None,
            backoff: Backoff::default(),
            retry: RetryPolicy::default(),
            max_buffered_bytes: None,
            before: None,
            after: None,
            on_failure: None,
            stats: true,
            jitter_seed: None,
            adaptive: None,
        }
    }

    /// A name for logs. Default `bulk-processor`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Concurrent `_bulk` calls. Default 1. (With [`adaptive`](Self::adaptive),
    /// its `max` takes this place.)
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }
    /// Send a batch once it holds this many requests. Default 1000.
    pub fn bulk_actions(mut self, actions: usize) -> Self {
        self.bulk_actions = actions;
        self
    }
    /// Send a batch before its NDJSON body would exceed this many bytes. Default 5 MiB.
    pub fn bulk_size(mut self, bytes: usize) -> Self {
        self.bulk_size = bytes;
        self
    }
    /// Send a non-empty batch this long after its first request arrived. Default off.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = Some(interval).filter(|d| !d.is_zero());
        self
    }
    /// Retry policy. Default: exponential from 100 ms to 10 s, jitter 0.5, at most 10 retries within 2 min.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
    /// Which statuses are sent again, for whole requests and for items.
    /// Default [`RetryPolicy::default`]: whole requests as
    /// [`classify_status`](crate::classify_status) says (408, 429, 502, 503,
    /// 504, and connections lost), items refused with 408, 429, 502, 503, 504
    /// or 507.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Item statuses retried: the same as
    /// `retry_policy(RetryPolicy::new().with_item_statuses(statuses))`.
    #[deprecated(note = "use `retry_policy(RetryPolicy::new().with_item_statuses(..))`")]
    pub fn retry_statuses(mut self, statuses: impl Into<Vec<u16>>) -> Self {
        self.retry = self.retry.with_item_statuses(statuses);
        self
    }
    /// Bound on NDJSON bytes added and not yet finished (buffered + in flight);
    /// `add` waits when it is reached. Each worker also holds the body of its
    /// current call (up to `bulk_size`) outside this bound, in a buffer it
    /// keeps for its next call.
    /// Default: the larger of 64 MiB and `bulk_size * (workers + 2)`.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_bytes = Some(bytes);
        self
    }
    /// Called before each `_bulk` call.
    pub fn before(mut self, f: impl Fn(u64, &[BulkRequest]) + Send + Sync + 'static) -> Self {
        self.before = Some(Arc::new(f));
        self
    }
    /// Called after each `_bulk` call, with the decision taken for it.
    pub fn after(
        mut self,
        f: impl Fn(u64, &[BulkRequest], &Decision) + Send + Sync + 'static,
    ) -> Self {
        self.after = Some(Arc::new(f));
        self
    }
    /// Called once per request that failed for good (route it to a dead-letter store).
    /// Without a handler, failures are logged at `error` level and counted.
    pub fn on_failure(mut self, f: impl Fn(FailedItem) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(Arc::new(f));
        self
    }
    /// Collect statistics. Default on.
    pub fn stats(mut self, enabled: bool) -> Self {
        self.stats = enabled;
        self
    }
    /// Seed of the jitter generator (deterministic tests). Default: from the clock.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }
    /// Adaptive concurrency: the `_bulk` calls in flight are lowered when the
    /// cluster answers `429` (whole calls or items) and raised again as it
    /// recovers (additive increase, multiplicative decrease), within
    /// `config.min..=config.max`; `config.max` workers run, in place of
    /// [`workers`](Self::workers). Default off: `workers` calls at most, always.
    /// See [`AdaptiveConcurrency`] for the rule and its defaults.
    pub fn adaptive(mut self, config: AdaptiveConcurrency) -> Self {
        self.adaptive = Some(config);
        self
    }

    /// Checks the settings and starts the dispatcher and the workers (needs a tokio runtime).
    pub fn build(mut self) -> Result<BulkProcessor, BulkError> {
        let invalid = |key: &str, reason: &str| BulkError::InvalidConfig {
            key: key.into(),
            reason: reason.into(),
        };
        let limiter = match &self.adaptive {
            Some(config) => {
                config.validate()?;
                self.workers = config.max;
                Limiter::adaptive(config)
            }
            None => Limiter::fixed(self.workers),
        };
        if self.workers == 0 {
            return Err(invalid("workers", "must be at least 1"));
        }
        if self.bulk_actions == 0 {
            return Err(invalid("bulk_actions", "must be at least 1"));
        }
        if self.bulk_size < 64 {
            return Err(invalid("bulk_size", "must be at least 64 bytes"));
        }
        let max_buffered = self
            .max_buffered_bytes
            .unwrap_or_else(|| (64 << 20).max(self.bulk_size.saturating_mul(self.workers + 2)));
        if max_buffered < self.bulk_size {
            return Err(invalid(
                "max_buffered_bytes",
                "must be at least bulk_size, or no full batch could ever be built",
            ));
        }
        if max_buffered > Semaphore::MAX_PERMITS {
            return Err(invalid("max_buffered_bytes", "is too large"));
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(self.workers);
        let (cancel_tx, _) = watch::channel(false);
        let (watermark_tx, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            name: self.name,
            transport: self.transport,
            bulk_actions: self.bulk_actions,
            bulk_size: self.bulk_size,
            flush_interval: self.flush_interval,
            backoff: self.backoff,
            retry: self.retry,
            max_buffered,
            before: self.before,
            after: self.after,
            on_failure: self.on_failure,
            stats_on: self.stats,
            memory: Arc::new(Semaphore::new(max_buffered)),
            gate: Gate::new(limiter),
            adaptive: self.adaptive.is_some(),
            counters: Counters::default(),
            worker_counters: (0..self.workers)
                .map(|_| WorkerCounters::default())
                .collect(),
            execution: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            cancel: cancel_tx,
            tracker: StdMutex::new(Tracker::default()),
            watermark: watermark_tx,
            unsent: StdMutex::new(Vec::new()),
        });
        let batch_rx = Arc::new(Mutex::new(batch_rx));
        let mut tasks = Vec::with_capacity(self.workers + 1);
        tasks.push(tokio::spawn(dispatch(shared.clone(), cmd_rx, batch_tx)));
        let seed = self
            .jitter_seed
            .unwrap_or_else(|| JitterRng::from_entropy().unit().to_bits());
        for w in 0..self.workers {
            let rng = JitterRng::seeded(seed.wrapping_add(w as u64 * 0x9E37_79B9));
            tasks.push(tokio::spawn(work(shared.clone(), w, batch_rx.clone(), rng)));
        }
        let (limit, _) = shared.gate.snapshot();
        tracing::debug!(name = %shared.name, workers = self.workers, limit, adaptive = shared.adaptive, "bulk processor started");
        Ok(BulkProcessor {
            shared,
            cmd_tx: StdMutex::new(Some(cmd_tx)),
            tasks: Mutex::new(tasks),
            batch_rx,
        })
    }
}

/// A background bulk processor. See the crate documentation.
pub struct BulkProcessor {
    shared: Arc<Shared>,
    cmd_tx: StdMutex<Option<mpsc::Sender<Cmd>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    batch_rx: Arc<Mutex<mpsc::Receiver<Batch>>>,
}

impl fmt::Debug for BulkProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkProcessor")
            .field("name", &self.shared.name)
            .field("closed", &self.shared.closed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

struct Shared {
    name: String,
    transport: Arc<dyn Transport>,
    bulk_actions: usize,
    bulk_size: usize,
    flush_interval: Option<Duration>,
    backoff: Backoff,
    retry: RetryPolicy,
    max_buffered: usize,
    before: Option<BeforeFn>,
    after: Option<AfterFn>,
    on_failure: Option<FailureFn>,
    stats_on: bool,
    memory: Arc<Semaphore>,
    /// The calls in flight, held to the (fixed or adaptive) limit.
    gate: Gate,
    adaptive: bool,
    counters: Counters,
    worker_counters: Vec<WorkerCounters>,
    execution: AtomicU64,
    closed: AtomicBool,
    cancel: watch::Sender<bool>,
    tracker: StdMutex<Tracker>,
    watermark: watch::Sender<u64>,
    unsent: StdMutex<Vec<BulkRequest>>,
}

/// Which batches are still in progress; `watermark` = every batch below it is finished.
#[derive(Default)]
struct Tracker {
    next_batch: u64,
    unfinished: BTreeSet<u64>,
}

// Nearly every command is an `Add`: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    Add(BulkRequest),
    Flush(oneshot::Sender<()>),
}

struct Batch {
    id: u64,
    requests: Vec<BulkRequest>,
}

impl BulkProcessor {
    /// Adds a request. Waits while the memory bound is reached.
    ///
    /// Errors hand the request back: `InvalidRequest` (incomplete or
    /// unserialisable), `TooLarge` (larger than the memory bound), `Closed`.
    pub async fn add(&self, mut request: BulkRequest) -> Result<(), BulkError> {
        if self.shared.closed.load(Relaxed) {
            return Err(BulkError::Closed(Box::new(request)));
        }
        let size = match request.encode() {
            Ok(size) => size,
            Err(reason) => {
                return Err(BulkError::InvalidRequest {
                    reason,
                    request: Box::new(request),
                });
            }
        };
        if size > self.shared.max_buffered || size > u32::MAX as usize {
            return Err(BulkError::TooLarge {
                size,
                limit: self.shared.max_buffered,
                request: Box::new(request),
            });
        }
        match self.shared.memory.acquire_many(size as u32).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(BulkError::Closed(Box::new(request))),
        }
        let tx = self
            .cmd_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(tx) = tx else {
            self.shared.memory.add_permits(size);
            return Err(BulkError::Closed(Box::new(request)));
        };
        match tx.send(Cmd::Add(request)).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(cmd)) => {
                self.shared.memory.add_permits(size);
                match cmd {
                    Cmd::Add(request) => Err(BulkError::Closed(Box::new(request))),
                    Cmd::Flush(_) => Err(BulkError::Cancelled),
                }
            }
        }
    }

    /// Sends what is buffered and returns once every request added before this
    /// call has succeeded or failed for good.
    pub async fn flush(&self) -> Result<(), BulkError> {
        let tx = self
            .cmd_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Closed: `close` already flushed everything.
        let Some(tx) = tx else { return Ok(()) };
        let (ack_tx, ack_rx) = oneshot::channel();
        if tx.send(Cmd::Flush(ack_tx)).await.is_err() {
            return Err(BulkError::Cancelled);
        }
        drop(tx);
        ack_rx.await.map_err(|_| BulkError::Cancelled)?;
        if *self.shared.cancel.borrow() {
            Err(BulkError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Flushes, then stops the workers. Later `add`s fail with `Closed`.
    pub async fn close(&self) -> Result<(), BulkError> {
        self.shared.closed.store(true, Relaxed);
        let flushed = self.flush().await;
        // Closing the command channel lets the dispatcher drain and end; the
        // workers end when the batch channel is empty and closed.
        let _ = self.cmd_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.join_tasks().await;
        tracing::debug!(name = %self.shared.name, "bulk processor closed");
        flushed
    }

    /// Like [`BulkProcessor::close`], but gives up after `deadline`: whatever is
    /// not finished by then (buffered, queued, waiting for a retry or in flight)
    /// is handed back in the report. Requests that were in flight may have been
    /// applied by the server.
    pub async fn close_with_deadline(&self, deadline: Duration) -> CloseReport {
        if tokio::time::timeout(deadline, self.close()).await.is_ok() {
            return CloseReport::default();
        }
        self.shared.cancel.send_replace(true);
        self.shared.memory.close();
        let _ = self.cmd_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.join_tasks().await;
        let mut unsent =
            std::mem::take(&mut *self.shared.unsent.lock().unwrap_or_else(|p| p.into_inner()));
        let mut rx = self.batch_rx.lock().await;
        while let Ok(batch) = rx.try_recv() {
            unsent.extend(batch.requests);
        }
        tracing::warn!(name = %self.shared.name, unsent = unsent.len(), "bulk processor closed at its deadline");
        CloseReport { unsent }
    }

    /// Waits for the dispatcher and the workers. Cancel-safe: a handle is
    /// removed only once its task has ended, so an interrupted join (a close
    /// deadline) can be resumed.
    async fn join_tasks(&self) {
        let mut tasks = self.tasks.lock().await;
        while let Some(task) = tasks.last_mut() {
            let _ = task.await;
            tasks.pop();
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BulkStats {
        self.shared.stats()
    }

    /// A handle reading this processor's stats for as long as it lives.
    #[cfg(feature = "prometheus")]
    pub(crate) fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::downgrade(&self.shared))
    }

    /// The memory bound in bytes.
    pub fn max_buffered_bytes(&self) -> usize {
        self.shared.max_buffered
    }
}

/// Reads a processor's stats without keeping it alive.
#[cfg(feature = "prometheus")]
#[derive(Clone)]
pub(crate) struct StatsHandle(std::sync::Weak<Shared>);

#[cfg(feature = "prometheus")]
impl StatsHandle {
    /// The stats, or `None` once the processor is dropped.
    pub(crate) fn stats(&self) -> Option<BulkStats> {
        self.0.upgrade().map(|shared| shared.stats())
    }
}

impl Shared {
    fn stats(&self) -> BulkStats {
        let buffered = if self.memory.is_closed() {
            0
        } else {
            (self.max_buffered - self.memory.available_permits().min(self.max_buffered)) as u64
        };
        let (limit, in_flight) = self.gate.snapshot();
        let mut stats = self.counters.snapshot(&self.worker_counters, buffered);
        stats.concurrency_limit = limit as u64;
        stats.in_flight = in_flight as u64;
        stats
    }

    fn count(&self, counter: &AtomicU64, n: u64) {
        if self.stats_on {
            counter.fetch_add(n, Relaxed);
        }
    }

    /// Counts a batch handed to a worker, by why it was cut.
    fn count_cut(&self, cut: Cut) {
        if cut.is_flush() {
            self.count(&self.counters.batches_flushed, 1);
        }
    }

    /// Counts the `429`s of an answer.
    fn count_signal(&self, signal: Signal) {
        match signal {
            Signal::Pushback(Pushback::Request) => self.count(&self.counters.calls_rejected_429, 1),
            Signal::Pushback(Pushback::Items(n)) => {
                self.count(&self.counters.items_rejected_429, n as u64)
            }
            Signal::Clean | Signal::Other => {}
        }
    }

    /// Counts and logs a change of the adaptive limit; `sent` is the number of
    /// requests of the call whose answer caused it.
    fn limit_changed(&self, change: Change, sent: usize) {
        let Change { from, to, cause } = change;
        match cause {
            Cause::Pushback(how) => {
                self.count(&self.counters.concurrency_decreases, 1);
                let why = match how {
                    Pushback::Request => "a _bulk call was answered 429".to_string(),
                    Pushback::Items(n) => format!("{n} of {sent} items were refused with 429"),
                };
                tracing::warn!(
                    name = %self.name,
                    from,
                    to,
                    "bulk concurrency lowered from {from} to {to} calls in flight: the cluster pushed back ({why})"
                );
            }
            Cause::Clean(run) => {
                self.count(&self.counters.concurrency_increases, 1);
                tracing::info!(
                    name = %self.name,
                    from,
                    to,
                    "bulk concurrency raised from {from} to {to} calls in flight: {run} answers in a row without 429"
                );
            }
        }
    }

    fn new_batch(&self, requests: Vec<BulkRequest>) -> Batch {
        let mut t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        let id = t.next_batch;
        t.next_batch += 1;
        t.unfinished.insert(id);
        Batch { id, requests }
    }

    fn finish_batch(&self, id: u64) {
        let mut t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        t.unfinished.remove(&id);
        let watermark = t.unfinished.first().copied().unwrap_or(t.next_batch);
        self.watermark.send_replace(watermark);
    }

    /// Gives memory back. Called only by `commit`, once per attempt, with the
    /// bytes of every request that left the batch in it (one semaphore
    /// operation, not one per request).
    fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.memory.add_permits(bytes);
        }
    }

    /// Reports a request that failed for good. `commit` releases its memory.
    fn fail(&self, request: BulkRequest, kind: FailureKind, error: String, attempts: u32) {
        self.count(&self.counters.failed, 1);
        if matches!(kind, FailureKind::OutcomeUnknown { .. }) {
            self.count(&self.counters.outcome_unknown, 1);
        }
        let item = FailedItem {
            request,
            error,
            attempts,
            kind,
        };
        match &self.on_failure {
            Some(handler) => {
                if catch_unwind(AssertUnwindSafe(|| handler(item))).is_err() {
                    tracing::error!(name = %self.name, "the failure handler panicked");
                }
            }
            None => tracing::error!(
                name = %self.name,
                index = item.request.index_name().unwrap_or(""),
                id = item.request.doc_id().unwrap_or(""),
                kind = ?item.kind,
                status = ?item.status(),
                tag = ?item.caller_tag(),
                error = %item.error,
                "bulk request failed for good"
            ),
        }
    }

    /// Counts the successes of one attempt, by operation.
    fn succeeded(&self, by_op: [u64; 4]) {
        let [index, create, update, delete] = by_op;
        let c = &self.counters;
        for (counter, n) in [
            (&c.indexed, index),
            (&c.created, create),
            (&c.updated, update),
            (&c.deleted, delete),
        ] {
            if n > 0 {
                self.count(counter, n);
            }
        }
        self.count(&c.succeeded, index + create + update + delete);
    }

    fn hand_back(&self, requests: impl IntoIterator<Item = BulkRequest>) {
        self.unsent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(requests);
    }
}

async fn cancelled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

/// Hands batches to the workers, cut where the [`Batcher`] says: by count,
/// bytes, interval and flush.
async fn dispatch(
    shared: Arc<Shared>,
    mut cmds: mpsc::Receiver<Cmd>,
    batches: mpsc::Sender<Batch>,
) {
    let mut cancel = shared.cancel.subscribe();
    let mut batcher = Batcher::new(shared.bulk_actions, shared.bulk_size, shared.flush_interval);
    let mut current: Vec<BulkRequest> = Vec::new();
    loop {
        let due = batcher.due();
        let timer = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancelled(&mut cancel) => break,
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Add(request)) => {
                    let cut = batcher.push(request.encoded_len(), Instant::now());
                    if cut.is_some_and(|c| c.before())
                        && !send(&shared, &batches, &mut current, &mut cancel).await
                    {
                        shared.hand_back([request]);
                        break;
                    }
                    current.push(request);
                    if cut.is_some_and(|c| c.after())
                        && !send(&shared, &batches, &mut current, &mut cancel).await
                    {
                        break;
                    }
                }
                Some(Cmd::Flush(ack)) => {
                    if let Some(cut) = batcher.flush() {
                        if !send(&shared, &batches, &mut current, &mut cancel).await {
                            break;
                        }
                        shared.count_cut(cut);
                    }
                    let target = shared.tracker.lock().unwrap_or_else(|p| p.into_inner()).next_batch;
                    let mut watermark = shared.watermark.subscribe();
                    let mut cancel = shared.cancel.subscribe();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = watermark.wait_for(|w| *w >= target) => {}
                            _ = cancelled(&mut cancel) => {}
                        }
                        let _ = ack.send(());
                    });
                }
                None => {
                    if let Some(cut) = batcher.flush() {
                        shared.count_cut(cut);
                        send(&shared, &batches, &mut current, &mut cancel).await;
                    }
                    break;
                }
            },
            _ = timer => {
                if let Some(cut) = batcher.tick(Instant::now()) {
                    if !send(&shared, &batches, &mut current, &mut cancel).await {
                        break;
                    }
                    shared.count_cut(cut);
                }
            }
        }
    }
    // Cancelled (or the workers are gone): everything still here goes back to the caller.
    shared.hand_back(current.drain(..));
    cmds.close();
    while let Ok(cmd) = cmds.try_recv() {
        match cmd {
            Cmd::Add(request) => shared.hand_back([request]),
            Cmd::Flush(ack) => drop(ack),
        }
    }
}

/// Hands the current batch to a worker; `false` if cancelled (the batch is handed back).
async fn send(
    shared: &Shared,
    batches: &mpsc::Sender<Batch>,
    current: &mut Vec<BulkRequest>,
    cancel: &mut watch::Receiver<bool>,
) -> bool {
    if current.is_empty() {
        return true;
    }
    // Reserve first: a reservation dropped on cancel loses nothing.
    let permit = tokio::select! {
        biased;
        _ = cancelled(cancel) => None,
        permit = batches.reserve() => permit.ok(),
    };
    // The next batch is most likely as long: room for it, rather than growing
    // (and copying) a vector of requests from empty for every batch.
    let requests = std::mem::replace(current, Vec::with_capacity(current.len()));
    match permit {
        Some(permit) => {
            permit.send(shared.new_batch(requests));
            true
        }
        None => {
            shared.hand_back(requests);
            false
        }
    }
}

async fn work(
    shared: Arc<Shared>,
    index: usize,
    batches: Arc<Mutex<mpsc::Receiver<Batch>>>,
    mut rng: JitterRng,
) {
    let mut cancel = shared.cancel.subscribe();
    let mut body = BodyBuffer::new(shared.bulk_size);
    loop {
        let batch = {
            let mut rx = batches.lock().await;
            tokio::select! {
                biased;
                _ = cancelled(&mut cancel) => None,
                batch = rx.recv() => batch,
            }
        };
        let Some(batch) = batch else { return };
        let id = batch.id;
        commit(
            &shared,
            index,
            batch.requests,
            &mut body,
            &mut rng,
            &mut cancel,
        )
        .await;
        shared.finish_batch(id);
    }
}

fn bytes_of(requests: &[BulkRequest]) -> usize {
    requests.iter().map(BulkRequest::encoded_len).sum()
}

/// A worker's buffer for the bodies of its calls, kept from call to call.
///
/// A body written into a fresh allocation of a few MiB pays a page fault for
/// every 4 KiB it writes, as much again as the copy itself; written into memory
/// the worker already has, it costs the copy only. The transport gets a frozen
/// view of the buffer; once it has dropped that (the call is over), the next
/// body reclaims the same memory. A transport that keeps bodies makes the next
/// one a fresh allocation, as before.
struct BodyBuffer {
    buf: BytesMut,
    /// The largest body written into the kept buffer (`bulk_size`): only a
    /// single request larger than that makes a larger body, which gets its own
    /// allocation rather than keeping that much memory for good.
    keep: usize,
}

impl BodyBuffer {
    fn new(keep: usize) -> Self {
        BodyBuffer {
            buf: BytesMut::new(),
            keep,
        }
    }

    /// The NDJSON body of `requests`.
    fn build(&mut self, requests: &[BulkRequest]) -> Bytes {
        // Exact: each request's `encoded_len` is its NDJSON size.
        let len = bytes_of(requests);
        if len > self.keep {
            let mut one = BytesMut::with_capacity(len);
            write_bodies(requests, &mut one);
            return one.freeze();
        }
        if !self.buf.try_reclaim(len) {
            // The next body is most likely about as large: a little room to spare.
            let room = len.saturating_add(len / 4).min(self.keep).max(len);
            self.buf = BytesMut::with_capacity(room);
        }
        write_bodies(requests, &mut self.buf);
        self.buf.split().freeze()
    }
}

fn write_bodies(requests: &[BulkRequest], out: &mut BytesMut) {
    for r in requests {
        r.write_ndjson(out);
    }
}

/// Sends one batch until every request in it has an outcome.
///
/// Each request's bytes go back to the memory bound exactly once, in one
/// place: after each attempt, the batch's bytes shrink to those of the
/// requests still to be sent, and the difference is released, whatever took
/// the others out (success, failure, giving up, or being handed back at a
/// close deadline).
async fn commit(
    shared: &Shared,
    worker: usize,
    mut requests: Vec<BulkRequest>,
    body: &mut BodyBuffer,
    rng: &mut JitterRng,
    cancel: &mut watch::Receiver<bool>,
) {
    let first_attempt = Instant::now();
    let mut attempt: u32 = 0;
    let mut held = bytes_of(&requests);
    let mut delay = None;
    while !requests.is_empty() {
        let retry = match delay.take() {
            Some(delay) => tokio::select! {
                biased;
                _ = cancelled(cancel) => {
                    shared.hand_back(requests);
                    Left::Done
                }
                _ = tokio::time::sleep(delay) => {
                    attempt += 1;
                    attempt_once(shared, worker, requests, body, attempt, cancel).await
                }
            },
            None => {
                attempt += 1;
                attempt_once(shared, worker, requests, body, attempt, cancel).await
            }
        };
        let retry = match retry {
            Left::Done => Vec::new(),
            Left::Retry {
                requests,
                last_error,
            } => match shared
                .backoff
                .next_delay(attempt, first_attempt.elapsed(), rng.unit())
            {
                Some(wait) => {
                    tracing::debug!(name = %shared.name, requests = requests.len(), delay = ?wait, error = %last_error, "retrying");
                    shared.count(&shared.counters.retried, requests.len() as u64);
                    delay = Some(wait);
                    requests
                }
                None => {
                    let why = format!(
                        "gave up after {attempt} attempts in {:.1?}: {last_error}",
                        first_attempt.elapsed()
                    );
                    for request in requests {
                        shared.fail(request, FailureKind::GaveUp, why.clone(), attempt);
                    }
                    Vec::new()
                }
            },
        };
        let kept = bytes_of(&retry);
        shared.release(held.saturating_sub(kept));
        held = kept;
        requests = retry;
    }
    shared.worker_counters[worker].queued.store(0, Relaxed);
}

/// What is left of a batch after an attempt.
enum Left {
    /// Every request has its outcome (or was handed back).
    Done,
    /// These are to be sent again; `last_error` says why.
    Retry {
        requests: Vec<BulkRequest>,
        last_error: String,
    },
}

impl Left {
    fn retry(requests: Vec<BulkRequest>, last_error: String) -> Self {
        if requests.is_empty() {
            Left::Done
        } else {
            Left::Retry {
                requests,
                last_error,
            }
        }
    }
}

/// One `_bulk` call of `requests`: reports what ended (success or failure for
/// good) and returns what is to be sent again.
async fn attempt_once(
    shared: &Shared,
    worker: usize,
    mut requests: Vec<BulkRequest>,
    body: &mut BodyBuffer,
    attempt: u32,
    cancel: &mut watch::Receiver<bool>,
) -> Left {
    let counters = &shared.worker_counters[worker];
    counters.queued.store(requests.len() as u64, Relaxed);
    // A place under the concurrency limit, for this call only (not for the
    // backoff before a retry).
    let place = tokio::select! {
        biased;
        _ = cancelled(cancel) => {
            // Not sent: handed back as it is.
            shared.hand_back(requests);
            return Left::Done;
        }
        place = shared.gate.enter() => place,
    };
    let execution = shared.execution.fetch_add(1, Relaxed) + 1;
    if let Some(before) = &shared.before
        && catch_unwind(AssertUnwindSafe(|| before(execution, &requests))).is_err()
    {
        tracing::error!(name = %shared.name, "the before callback panicked");
    }
    let body = body.build(&requests);
    let sent_bytes = body.len() as u64;
    let started = Instant::now();
    let answer = tokio::select! {
        biased;
        _ = cancelled(cancel) => {
            // Stopped while waiting for the answer: the server may have it.
            requests.iter_mut().for_each(BulkRequest::mark_maybe_applied);
            shared.hand_back(requests);
            return Left::Done;
        }
        answer = shared.transport.bulk(body) => answer,
    };
    counters
        .last_duration_nanos
        .store(started.elapsed().as_nanos() as u64, Relaxed);
    shared.count(&shared.counters.bulk_calls, 1);
    shared.count(&shared.counters.bytes_sent, sent_bytes);
    let decision = match answer {
        Ok(resp) => reconcile(
            decide(resp.status, &resp.body, requests.len(), &shared.retry),
            &requests,
        ),
        Err(e) => decide_unanswered(&e),
    };
    let signal = Signal::of(&decision);
    shared.count_signal(signal);
    if let Some(change) = place.answered(signal) {
        shared.limit_changed(change, requests.len());
    }
    if let Some(after) = &shared.after
        && catch_unwind(AssertUnwindSafe(|| after(execution, &requests, &decision))).is_err()
    {
        tracing::error!(name = %shared.name, "the after callback panicked");
    }
    match decision {
        Decision::Items(items) => {
            let mut retry = Vec::new();
            let mut last_error = String::new();
            let mut by_op = [0u64; 4];
            let mut already_applied = 0u64;
            for (request, item) in requests.into_iter().zip(items) {
                match item {
                    ItemDecision::Success(_) => by_op[op_slot(request.op())] += 1,
                    ItemDecision::AlreadyApplied(_) => {
                        by_op[op_slot(request.op())] += 1;
                        already_applied += 1;
                    }
                    ItemDecision::Fail(r) => {
                        let error = r.error.unwrap_or_else(|| format!("status {}", r.status));
                        let kind = FailureKind::Item { status: r.status };
                        shared.fail(request, kind, error, attempt);
                    }
                    ItemDecision::OutcomeUnknown(r) => {
                        let error = format!(
                            "outcome unknown: an earlier attempt may have been applied and this \
                             conditional {} met a version conflict when sent again, which cannot \
                             be told from another writer's change: {}",
                            request.op().as_str(),
                            r.error.as_deref().unwrap_or("409")
                        );
                        let kind = FailureKind::OutcomeUnknown {
                            status: Some(r.status),
                        };
                        shared.fail(request, kind, error, attempt);
                    }
                    ItemDecision::Retry(r) => {
                        last_error = r.error.unwrap_or_else(|| format!("status {}", r.status));
                        retry.push(request);
                    }
                }
            }
            shared.succeeded(by_op);
            if already_applied > 0 {
                shared.count(&shared.counters.already_applied, already_applied);
            }
            Left::retry(retry, last_error)
        }
        Decision::RetryAll(failure) => Left::retry(requests, failure.to_string()),
        Decision::Ambiguous(failure) => {
            let mut retry = Vec::with_capacity(requests.len());
            for mut request in requests {
                request.mark_maybe_applied();
                if request.resend() == Resend::Never {
                    let error = format!(
                        "outcome unknown: the request may have been applied ({failure}); it was \
                         not sent again because {} could apply it twice",
                        never_resent(&request)
                    );
                    let kind = FailureKind::OutcomeUnknown { status: None };
                    shared.fail(request, kind, error, attempt);
                } else {
                    retry.push(request);
                }
            }
            Left::retry(retry, failure.to_string())
        }
        Decision::FailAll(failure) => {
            let error = failure.to_string();
            let kind = FailureKind::Request {
                status: failure.status,
            };
            for mut request in requests {
                if failure.maybe_applied {
                    request.mark_maybe_applied();
                }
                shared.fail(request, kind, error.clone(), attempt);
            }
            Left::Done
        }
    }
}

/// Why sending `request` again could apply it twice (for [`Resend::Never`]).
fn never_resent(request: &BulkRequest) -> &'static str {
    match request.op() {
        OpType::Update => "a scripted update",
        OpType::Create => "a create without an id",
        _ => "an index without an id",
    }
}

fn op_slot(op: OpType) -> usize {
    match op {
        OpType::Index => 0,
        OpType::Create => 1,
        OpType::Update => 2,
        OpType::Delete => 3,
    }
}

#[cfg(test)]
#[path = "processor_tests.rs"]
mod tests;
