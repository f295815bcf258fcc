//! Timing the state store: [`MeteredStore`] wraps the configured store and
//! records each load and save, by outcome, in the metrics of the run that
//! uses it. Every save and load goes through it, whoever makes it: a batch's
//! commit, an auto-save, the final save of `close`, the read-back after a save
//! whose answer was lost.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use state_core::{
    ConnectorState, Precondition, Result, Revision, StateEntry, StateId, StateStore, Stored,
};

use super::{Metrics, StoreOutcome};

/// Where a store reports: empty until a run with metrics starts (the store is
/// opened before the run is given its metrics). Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MetricsSlot(Arc<RwLock<Option<Metrics>>>);

impl MetricsSlot {
    /// Reports go to `metrics` from now on.
    pub fn set(&self, metrics: Metrics) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(metrics);
    }

    /// Where reports go now.
    pub fn get(&self) -> Option<Metrics> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A [`StateStore`] that records the latency and outcome of every `load` and
/// `save` of the store it wraps in the [`MetricsSlot`]'s metrics. Not a
/// backend: it adds nothing to what the store does.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn StateStore>,
    slot: MetricsSlot,
}

impl MeteredStore {
    /// Wraps `inner`, reporting to `slot`.
    pub fn new(inner: Arc<dyn StateStore>, slot: MetricsSlot) -> Self {
        MeteredStore { inner, slot }
    }
}

#[async_trait]
impl StateStore for MeteredStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn load(&self, id: &StateId) -> Result<Stored> {
        let started = Instant::now();
        let loaded = self.inner.load(id).await;
        if let Some(metrics) = self.slot.get() {
            metrics.record_state_load(StoreOutcome::of(&loaded), started.elapsed());
        }
        loaded
    }

    async fn save(&self, state: &ConnectorState, expect: &Precondition) -> Result<Revision> {
        let started = Instant::now();
        let saved = self.inner.save(state, expect).await;
        if let Some(metrics) = self.slot.get() {
            metrics.record_state_save(StoreOutcome::of(&saved), started.elapsed());
        }
        saved
    }

    async fn delete(&self, id: &StateId) -> Result<bool> {
        self.inner.delete(id).await
    }

    async fn list(&self) -> Result<Vec<StateEntry>> {
        self.inner.list().await
    }
}
