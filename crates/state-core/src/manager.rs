//! [`StateManager`]: one connector's state over any [`StateStore`]: load, update,
//! compare-and-set saves, auto-save, export/import/reset, and its view of the
//! store-wide [`StateStoreExt`](crate::StateStoreExt) conveniences (stats, cleanup).

use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::config::{StateConfig, TRACKABLE_FIELDS};
use crate::error::{Result, StateError};
use crate::ext::StateStoreExt;
use crate::id::StateId;
use crate::model::{ConnectorState, StateMetadata};
use crate::store::{Precondition, Revision, StateStore, StoreStats};

/// How a [`StateManager`] behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagerOptions {
    /// Save a changed state in the background this often; `None` disables auto-save.
    pub auto_save_interval: Option<Duration>,
    /// `data` fields whose change marks the state for auto-save; empty means all.
    pub tracked_fields: Vec<String>,
}

impl ManagerOptions {
    /// The options a `state` block describes.
    pub fn from_config(config: &StateConfig) -> Self {
        ManagerOptions {
            auto_save_interval: Some(config.auto_save_interval).filter(|d| !d.is_zero()),
            tracked_fields: config.tracked_fields.clone(),
        }
    }
}

/// Manages one state id in one store. Cheap to clone: clones share the state.
///
/// Saves are compare-and-set on the revision last read or written, so two
/// managers of one state id cannot silently overwrite each other: the slower
/// one gets [`StateError::Conflict`] and must reload.
#[derive(Clone, Debug)]
pub struct StateManager {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn StateStore>,
    id: StateId,
    options: ManagerOptions,
    inner: Mutex<Inner>,
    auto_save: StdMutex<Option<JoinHandle<()>>>,
    saves: watch::Sender<u64>,
}

#[derive(Debug)]
struct Inner {
    state: ConnectorState,
    revision: Option<Revision>,
    /// A tracked field changed since the last save: auto-save will save.
    dirty: bool,
    /// Anything changed since the last save: close will save.
    changed: bool,
    /// Set when auto-save met an error it must not retry (a conflict).
    auto_save_error: Option<String>,
    /// The state of a save whose outcome is unknown (the store became
    /// unavailable after it may have applied it), until a save settles it.
    unsettled: Option<ConnectorState>,
}

impl StateManager {
    /// A manager of `id` in `store`. Nothing is read until [`StateManager::load`].
    pub fn new(store: Arc<dyn StateStore>, id: StateId, options: ManagerOptions) -> Result<Self> {
        for field in &options.tracked_fields {
            if !TRACKABLE_FIELDS.contains(&field.as_str()) {
                return Err(StateError::invalid_config(
                    "state.tracked_fields",
                    format!(
                        "{field:?} is not a state field; choose from {}",
                        TRACKABLE_FIELDS.join(", ")
                    ),
                ));
            }
        }
        let state = ConnectorState::new(id.as_str());
        Ok(StateManager {
            shared: Arc::new(Shared {
                store,
                id,
                options,
                inner: Mutex::new(Inner {
                    state,
                    revision: None,
                    dirty: false,
                    changed: false,
                    auto_save_error: None,
                    unsettled: None,
                }),
                auto_save: StdMutex::new(None),
                saves: watch::channel(0).0,
            }),
        })
    }

    /// A manager as a validated `state` block describes it.
    pub fn from_config(store: Arc<dyn StateStore>, config: &StateConfig) -> Result<Self> {
        let id = StateId::new(config.state_id.as_str())?;
        Self::new(store, id, ManagerOptions::from_config(config))
    }

    /// The managed state id.
    pub fn state_id(&self) -> &StateId {
        &self.shared.id
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.shared.store
    }

    /// Reads the stored state. A missing state starts fresh (keeping the
    /// metadata set so far); a corrupt or newer one is an error, never replaced.
    pub async fn load(&self) -> Result<ConnectorState> {
        let mut inner = self.shared.inner.lock().await;
        match self.shared.store.load(&self.shared.id).await {
            Ok(stored) => {
                if stored.state.id != self.shared.id.as_str() {
                    return Err(StateError::Corrupt {
                        id: self.shared.id.to_string(),
                        location: format!("{} store", self.shared.store.backend()),
                        reason: format!("the stored document says its id is {:?}", stored.state.id),
                    });
                }
                inner.state = stored.state;
                inner.revision = Some(stored.revision);
            }
            Err(StateError::NotFound { .. }) => {
                let metadata = inner.state.metadata.clone();
                inner.state = ConnectorState::new(self.shared.id.as_str());
                inner.state.metadata = metadata;
                inner.revision = None;
            }
            Err(e) => return Err(e),
        }
        inner.dirty = false;
        inner.changed = false;
        Ok(inner.state.clone())
    }

    /// A copy of the current in-memory state.
    pub async fn get(&self) -> ConnectorState {
        self.shared.inner.lock().await.state.clone()
    }

    /// Changes the in-memory state; it is saved by the next save, auto-save or close.
    pub async fn update<R>(&self, change: impl FnOnce(&mut ConnectorState) -> R) -> R {
        let mut inner = self.shared.inner.lock().await;
        let tracked = &self.shared.options.tracked_fields;
        let before = (!tracked.is_empty()).then(|| tracked_values(&inner.state, tracked));
        let out = change(&mut inner.state);
        // The id is the storage key: an update cannot move the state elsewhere.
        inner.state.id = self.shared.id.to_string();
        let tracked_changed = match before {
            Some(before) => before != tracked_values(&inner.state, tracked),
            None => true,
        };
        inner.dirty |= tracked_changed;
        inner.changed = true;
        out
    }

    /// Sets the metadata (connector type, id, index, url) of the state.
    pub async fn set_metadata(&self, metadata: StateMetadata) {
        self.update(|s| s.metadata = metadata).await;
    }

    /// Whether a tracked field changed since the last save.
    pub async fn is_dirty(&self) -> bool {
        self.shared.inner.lock().await.dirty
    }

    /// Saves now (compare-and-set), stamping `last_updated`. A failed save (this
    /// one, an auto-save's or close's) counts in `data.error_count` and
    /// `data.last_error`.
    pub async fn save(&self) -> Result<Revision> {
        let mut inner = self.shared.inner.lock().await;
        inner.state.last_updated = Utc::now();
        self.write_locked(&mut inner).await
    }

    async fn write_locked(&self, inner: &mut Inner) -> Result<Revision> {
        let expect = Precondition::from_known(inner.revision.as_ref());
        let saved = match self.shared.store.save(&inner.state, &expect).await {
            Ok(revision) => Ok(revision),
            Err(e @ StateError::Unavailable { .. }) => {
                // The write may have been applied before the answer was lost.
                inner.unsettled = Some(inner.state.clone());
                Err(e)
            }
            Err(e @ StateError::Conflict { .. }) => match inner.unsettled.take() {
                Some(attempted) => {
                    let settled = self.settle(inner, attempted, e).await;
                    if settled.as_ref().is_err_and(StateError::is_retryable)
                        && inner.unsettled.is_none()
                    {
                        inner.unsettled = Some(inner.state.clone());
                    }
                    settled
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        };
        let revision = match saved {
            Ok(revision) => revision,
            Err(e) => {
                // An error like any other (`error_count`, `last_error`), stored by the
                // next save that succeeds; what was not saved is still to save.
                let data = &mut inner.state.data;
                data.error_count += 1;
                data.last_error = Some(format!("saving the state failed: {e}"));
                inner.dirty = true;
                inner.changed = true;
                return Err(e);
            }
        };
        inner.unsettled = None;
        inner.revision = Some(revision.clone());
        inner.dirty = false;
        inner.changed = false;
        self.shared.saves.send_modify(|n| *n += 1);
        Ok(revision)
    }

    /// A conflict after a save of unknown outcome: reads the stored state back.
    /// If it is the state that save carried, the store had applied our own
    /// write: save again on top of it. Anything else is another writer's, and
    /// the conflict stands.
    async fn settle(
        &self,
        inner: &mut Inner,
        attempted: ConnectorState,
        conflict: StateError,
    ) -> Result<Revision> {
        let stored = match self.shared.store.load(&self.shared.id).await {
            Ok(stored) => stored,
            Err(StateError::NotFound { .. }) => return Err(conflict),
            Err(e) => {
                // Still unknown: keep what the unsettled save carried.
                inner.unsettled = Some(attempted);
                return Err(e);
            }
        };
        if stored.state != attempted {
            return Err(conflict);
        }
        tracing::info!(
            state_id = %self.shared.id,
            "a save whose answer was lost had been applied; saving on top of it"
        );
        let expect = Precondition::Revision(stored.revision);
        self.shared.store.save(&inner.state, &expect).await
    }

    /// Counts successful saves; `changed()` on the receiver wakes after each one.
    pub fn subscribe_saves(&self) -> watch::Receiver<u64> {
        self.shared.saves.subscribe()
    }

    /// Starts saving in the background every `auto_save_interval` while dirty.
    /// Transient errors are logged and retried at the next tick; a conflict stops
    /// auto-saving and is returned by the next [`StateManager::save`] or [`StateManager::close`].
    /// Does nothing when auto-save is disabled or already running.
    pub fn start_auto_save(&self) {
        let Some(period) = self.shared.options.auto_save_interval else {
            return;
        };
        let mut slot = self
            .shared
            .auto_save
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        *slot = Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let manager = StateManager { shared };
                if !manager.auto_save_once().await {
                    return;
                }
            }
        }));
    }

    /// One auto-save tick; `false` when auto-saving must stop.
    async fn auto_save_once(&self) -> bool {
        let mut inner = self.shared.inner.lock().await;
        if !inner.dirty {
            return true;
        }
        inner.state.last_updated = Utc::now();
        match self.write_locked(&mut inner).await {
            Ok(_) => true,
            Err(e) if e.is_retryable() => {
                tracing::warn!(state_id = %self.shared.id, error = %e, "auto-save failed; retrying at the next interval");
                true
            }
            Err(e) => {
                tracing::error!(state_id = %self.shared.id, error = %e, "auto-save stopped");
                inner.auto_save_error = Some(e.to_string());
                false
            }
        }
    }

    fn stop_auto_save(&self) {
        if let Some(task) = self
            .shared
            .auto_save
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// Stops auto-save and saves whatever changed since the last save.
    pub async fn close(&self) -> Result<()> {
        self.stop_auto_save();
        let mut inner = self.shared.inner.lock().await;
        if let Some(e) = inner.auto_save_error.take() {
            tracing::warn!(state_id = %self.shared.id, error = %e, "closing after an auto-save error");
        }
        if inner.changed {
            inner.state.last_updated = Utc::now();
            self.write_locked(&mut inner).await?;
        }
        Ok(())
    }

    /// The current in-memory state as a JSON document (call [`StateManager::load`] first to see the stored one).
    pub async fn export_state(&self) -> Result<Value> {
        Ok(self.get().await.to_value())
    }

    /// Replaces the state with `document` (validated: format version, shape, and
    /// its `id` must be this manager's), written verbatim, `last_updated` included.
    pub async fn import_state(&self, document: Value) -> Result<()> {
        let state = ConnectorState::from_value(document, "imported document")?;
        if state.id != self.shared.id.as_str() {
            return Err(StateError::invalid_config(
                "id",
                format!(
                    "the imported document is the state of {:?}, but this connector's state_id is {:?}; \
                     edit the document's id or the state_id",
                    state.id,
                    self.shared.id.as_str()
                ),
            ));
        }
        let mut inner = self.shared.inner.lock().await;
        let current = match self.shared.store.load(&self.shared.id).await {
            Ok(stored) => Some(stored.revision),
            Err(StateError::NotFound { .. }) => None,
            // A corrupt stored state is exactly what an import repairs.
            Err(StateError::Corrupt { .. } | StateError::UnsupportedVersion { .. }) => {
                let revision = self.shared.store.save(&state, &Precondition::Any).await?;
                return self.adopt(&mut inner, state, revision);
            }
            Err(e) => return Err(e),
        };
        if inner.revision.is_some() && inner.revision != current {
            return Err(StateError::conflict(
                self.shared.id.as_str(),
                "the stored state changed since this connector read it",
            ));
        }
        let revision = self
            .shared
            .store
            .save(&state, &Precondition::from_known(current.as_ref()))
            .await?;
        self.adopt(&mut inner, state, revision)
    }

    fn adopt(&self, inner: &mut Inner, state: ConnectorState, revision: Revision) -> Result<()> {
        inner.state = state;
        inner.revision = Some(revision);
        inner.dirty = false;
        inner.changed = false;
        self.shared.saves.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Starts over: a fresh state (metadata kept), saved at once.
    pub async fn reset_state(&self) -> Result<()> {
        let mut inner = self.shared.inner.lock().await;
        let metadata = inner.state.metadata.clone();
        inner.state = ConnectorState::new(self.shared.id.as_str());
        inner.state.metadata = metadata;
        self.write_locked(&mut inner).await.map(drop)
    }

    /// Figures over every state in the store.
    pub async fn get_state_stats(&self) -> Result<StoreStats> {
        self.shared.store.stats().await
    }

    /// Deletes every state not updated in the last `days` days, except this
    /// manager's own; returns how many were deleted.
    pub async fn cleanup_old_states(&self, days: u32) -> Result<usize> {
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
        self.cleanup_states_before(cutoff).await
    }

    /// Deletes every state whose `last_updated` is before `cutoff`, except this manager's own.
    pub async fn cleanup_states_before(&self, cutoff: DateTime<Utc>) -> Result<usize> {
        self.shared
            .store
            .cleanup_before(cutoff, Some(&self.shared.id))
            .await
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self
            .auto_save
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

fn tracked_values(state: &ConnectorState, tracked: &[String]) -> Vec<Value> {
    tracked.iter().map(|f| state.data.field(f)).collect()
}
