//! [`ElasticsearchSourcePlugin`]: the SDK's [`Source`] over [`ElasticsearchSource`].

use std::time::Duration;

use async_trait::async_trait;
use connector::{Ack, ConnectorError, ElasticsearchSource, PluginConfig};
use iggy_connector_sdk::source::SourceBatchResult;
use iggy_connector_sdk::{ConnectorState, Error, ProducedMessages, Schema, Source};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::messages::to_produced;
use crate::owner::{self, CursorOwner};

/// The connector's name in the SDK's state log lines.
pub const CONNECTOR_NAME: &str = "Elasticsearch source";

/// Smallest pause after a failed poll; doubles up to `polling_interval` (1s to 60s).
const MIN_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The plugin the runtime loads: `new` parses, `open` connects, `poll` reads one
/// batch, `on_batch_result` moves the cursor (or puts the source back), `close`
/// closes points in time and saves.
#[derive(Debug)]
pub struct ElasticsearchSourcePlugin {
    id: u32,
    /// The parsed `[plugin_config]`, or why it is not acceptable (reported by `open`:
    /// the SDK does not log parse errors of source configurations).
    config: Result<PluginConfig, String>,
    /// The state the runtime passed in (used only when it owns the cursor).
    runtime_state: Option<ConnectorState>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `None` until connected (at `open`, or at a later `poll` if the server was
    /// unreachable at `open`).
    source: Option<ElasticsearchSource>,
    /// The state document restored from the runtime, adopted once connected.
    restore: Option<Value>,
    /// The batch the runtime has not reported on yet (the SDK has one in flight).
    in_flight: Option<InFlight>,
    /// Store owner: a batch the runtime acknowledged whose save failed; saved again
    /// before anything new is read.
    unsaved: Option<Ack>,
    /// The last poll found nothing new: wait `polling_interval` before the next.
    caught_up: bool,
    /// Consecutive failed polls (the retry delay doubles with each).
    failures: u32,
}

#[derive(Debug)]
enum InFlight {
    /// Store owner: commit this on `Ack`, rewind on `Nack`.
    Store(Ack),
    /// Runtime owner: committed in memory already; on `Nack` go back to `before`.
    Runtime { before: Value },
}

impl ElasticsearchSourcePlugin {
    /// What the SDK's `source_connector!` calls with the runtime's `plugin_config`
    /// (as JSON) and the state it saved last. No IO.
    pub fn new(id: u32, config: Value, state: Option<ConnectorState>) -> Self {
        let config = serde_json::from_value::<PluginConfig>(config)
            .map_err(|e| format!("invalid plugin_config: {e}"))
            .and_then(|c| match c.validate() {
                Ok(_) => Ok(c),
                Err(e) => Err(e.to_string()),
            });
        ElasticsearchSourcePlugin {
            id,
            config,
            runtime_state: state,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Who owns the cursor (`None` while the configuration is invalid).
    pub fn owner(&self) -> Option<CursorOwner> {
        self.config.as_ref().ok().map(CursorOwner::of)
    }

    fn config(&self) -> Result<&PluginConfig, Error> {
        self.config
            .as_ref()
            .map_err(|reason| Error::InvalidConfigValue(reason.clone()))
    }

    fn retry_delay(&self, failures: u32) -> Duration {
        let max = self
            .config
            .as_ref()
            .map(|c| c.polling_interval)
            .unwrap_or(MAX_RETRY_DELAY)
            .clamp(MIN_RETRY_DELAY, MAX_RETRY_DELAY);
        MIN_RETRY_DELAY
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(max)
    }

    /// Opens a fresh source (loading the store's state when it owns the cursor) and
    /// adopts the runtime's state when the runtime owns it.
    async fn connect(&self, inner: &mut Inner) -> Result<(), ConnectorError> {
        let config = match &self.config {
            Ok(config) => config.clone(),
            Err(reason) => {
                return Err(ConnectorError::InvalidConfig {
                    key: "plugin_config".into(),
                    reason: reason.clone(),
                });
            }
        };
        let mut source = ElasticsearchSource::new(u64::from(self.id), config);
        source.open().await?;
        if let Some(mut document) = inner.restore.clone() {
            // The in-memory state is named after this plugin id, which the runtime may
            // assign differently from one start to the next; the runtime's state file
            // is per connector key, so the document is this connector's whatever its id.
            let current = source.get_state().await?;
            if let Some(object) = document.as_object_mut() {
                object.insert("id".into(), Value::String(current.id));
            }
            source.import_state(document).await?;
            tracing::info!(
                "Elasticsearch source {}: resumed from the runtime's state at cursor {:?}",
                self.id,
                source.committed_cursors()
            );
            inner.restore = None;
        }
        inner.source = Some(source);
        Ok(())
    }

    /// Waits before the next attempt after a failure, and returns the SDK error.
    async fn failed(&self, inner: &mut Inner, error: ConnectorError) -> Error {
        inner.failures = inner.failures.saturating_add(1);
        let delay = self.retry_delay(inner.failures);
        tracing::warn!(
            "Elasticsearch source {}: poll failed, retrying in {delay:?}: {error}",
            self.id
        );
        tokio::time::sleep(delay).await;
        sdk_error(&error)
    }

    /// A poll with no result for the batch before it: the SDK gave up on that
    /// result (timeout or shutdown race). Treated as a `Nack`.
    async fn forget_in_flight(&self, inner: &mut Inner) -> Result<(), Error> {
        if inner.in_flight.is_some() {
            tracing::warn!(
                "Elasticsearch source {}: no result for the previous batch, reading it again",
                self.id
            );
            self.apply(inner, SourceBatchResult::Nack).await?;
        }
        Ok(())
    }

    async fn apply(&self, inner: &mut Inner, result: SourceBatchResult) -> Result<(), Error> {
        let Some(in_flight) = inner.in_flight.take() else {
            return Ok(()); // an empty batch: nothing to move
        };
        let Some(source) = inner.source.as_mut() else {
            return Err(Error::InvalidState);
        };
        match (in_flight, result) {
            (InFlight::Store(ack), SourceBatchResult::Ack) => match source.commit(&ack).await {
                Ok(()) => Ok(()),
                Err(e) if e.is_conflict() => {
                    tracing::error!(
                        "Elasticsearch source {}: stopping, another instance owns this state_id: {e}",
                        self.id
                    );
                    Err(sdk_error(&e))
                }
                Err(e) => {
                    tracing::error!(
                        "Elasticsearch source {}: the batch was sent but its cursor could not be saved, saving again before reading on: {e}",
                        self.id
                    );
                    inner.unsaved = Some(ack);
                    Ok(())
                }
            },
            (InFlight::Store(_), SourceBatchResult::Nack) => {
                source.rewind().await;
                Ok(())
            }
            (InFlight::Runtime { .. }, SourceBatchResult::Ack) => Ok(()),
            (InFlight::Runtime { before }, SourceBatchResult::Nack) => {
                source.import_state(before).await.map_err(|e| sdk_error(&e))
            }
        }
    }

    /// One poll, without the retry delay.
    async fn poll_once(&self, inner: &mut Inner) -> Result<ProducedMessages, ConnectorError> {
        if inner.source.is_none() {
            self.connect(inner).await?;
        }
        let owner = self.owner().ok_or_else(|| ConnectorError::InvalidConfig {
            key: "plugin_config".into(),
            reason: "not parsed".into(),
        })?;
        let Some(source) = inner.source.as_mut() else {
            return Err(ConnectorError::NotOpen);
        };
        if let Some(ack) = inner.unsaved.take()
            && let Err(e) = source.commit(&ack).await
        {
            inner.unsaved = Some(ack);
            return Err(e);
        }
        let batch = source.poll_batch().await?;
        inner.caught_up = batch.ack.is_none();
        let Some(ack) = batch.ack else {
            return Ok(empty());
        };
        let state = match owner {
            CursorOwner::Store => {
                inner.in_flight = Some(InFlight::Store(ack));
                None
            }
            CursorOwner::Runtime => {
                let before = source.export_state().await?;
                source.commit(&ack).await?;
                let after = source.export_state().await?;
                let Some(state) = owner::encode(&after, self.id) else {
                    source.import_state(before).await?;
                    return Err(ConnectorError::InvalidConfig {
                        key: "state".into(),
                        reason: "the state document could not be encoded for the runtime".into(),
                    });
                };
                inner.in_flight = Some(InFlight::Runtime { before });
                Some(state)
            }
        };
        Ok(ProducedMessages {
            schema: Schema::Json,
            messages: batch.messages.into_iter().map(to_produced).collect(),
            state,
        })
    }
}

fn empty() -> ProducedMessages {
    ProducedMessages {
        schema: Schema::Json,
        messages: Vec::new(),
        state: None,
    }
}

/// The SDK error for a connector error (the message keeps the connector's words).
fn sdk_error(error: &ConnectorError) -> Error {
    match error {
        ConnectorError::InvalidConfig { .. } => Error::InvalidConfigValue(error.to_string()),
        ConnectorError::State(_) => Error::Storage(error.to_string()),
        ConnectorError::Unreachable { .. } => Error::Connection(error.to_string()),
        _ => Error::HttpRequestFailed(error.to_string()),
    }
}

#[async_trait]
impl Source for ElasticsearchSourcePlugin {
    async fn open(&mut self) -> Result<(), Error> {
        let owner = match &self.config {
            Ok(config) => CursorOwner::of(config),
            Err(reason) => {
                tracing::error!("Elasticsearch source {}: {reason}", self.id);
                return Err(Error::InvalidConfigValue(reason.clone()));
            }
        };
        let mut restore = None;
        match (owner, self.runtime_state.take()) {
            (CursorOwner::Store, Some(_)) => tracing::warn!(
                "Elasticsearch source {}: ignoring the runtime's saved state: plugin_config.state is enabled, so its store owns the cursor",
                self.id
            ),
            (CursorOwner::Runtime, Some(state)) => match owner::decode(state, self.id) {
                Ok(document) => restore = Some(document),
                Err(reason) => {
                    tracing::error!("Elasticsearch source {}: {reason}", self.id);
                    return Err(Error::InvalidState);
                }
            },
            (_, None) => {}
        }
        let inner = self.inner.get_mut();
        inner.restore = restore;
        match self.connect_now().await {
            Ok(()) => {
                tracing::info!(
                    "Elasticsearch source {} opened; the cursor is owned by {}",
                    self.id,
                    owner.describe()
                );
                Ok(())
            }
            Err(e) if e.is_retryable() => {
                // Not fatal: the first poll connects, retrying with backoff.
                tracing::warn!(
                    "Elasticsearch source {}: cannot open yet, polls will retry: {e}",
                    self.id
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!("Elasticsearch source {}: cannot open: {e}", self.id);
                Err(sdk_error(&e))
            }
        }
    }

    async fn poll(&self) -> Result<ProducedMessages, Error> {
        let mut inner = self.inner.lock().await;
        self.forget_in_flight(&mut inner).await?;
        if inner.caught_up {
            let interval = self.config()?.polling_interval;
            tokio::time::sleep(interval).await;
        }
        match self.poll_once(&mut inner).await {
            Ok(messages) => {
                inner.failures = 0;
                Ok(messages)
            }
            Err(e) => Err(self.failed(&mut inner, e).await),
        }
    }

    async fn on_batch_result(&self, result: SourceBatchResult) -> Result<(), Error> {
        let mut inner = self.inner.lock().await;
        self.apply(&mut inner, result).await
    }

    async fn close(&mut self) -> Result<(), Error> {
        let inner = self.inner.get_mut();
        if let Some(mut source) = inner.source.take() {
            // A batch without a result is not committed: it is read again next time.
            source.close().await.map_err(|e| sdk_error(&e))?;
        }
        tracing::info!("Elasticsearch source {} closed", self.id);
        Ok(())
    }
}

impl ElasticsearchSourcePlugin {
    async fn connect_now(&mut self) -> Result<(), ConnectorError> {
        let mut inner = std::mem::take(self.inner.get_mut());
        let result = self.connect(&mut inner).await;
        *self.inner.get_mut() = inner;
        result
    }
}
