//! An in-memory [`StateStore`]: for tests, and for running without persistence.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{Result, StateError};
use crate::id::StateId;
use crate::model::ConnectorState;
use crate::store::{Precondition, Revision, StateEntry, StateStore, Stored};

/// Keeps states in a map; revisions come from one counter, so a state deleted
/// and created again never reuses an old revision.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_revision: u64,
    states: BTreeMap<StateId, (Vec<u8>, Revision)>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl StateStore for InMemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn load(&self, id: &StateId) -> Result<Stored> {
        let inner = self.lock();
        let (bytes, revision) = inner.states.get(id).ok_or(StateError::NotFound {
            id: id.to_string(),
            backend: "memory",
        })?;
        Ok(Stored {
            state: ConnectorState::from_slice(bytes, id.as_str(), &format!("memory:{id}"))?,
            revision: revision.clone(),
            size_bytes: bytes.len() as u64,
        })
    }

    async fn save(&self, state: &ConnectorState, expect: &Precondition) -> Result<Revision> {
        let id = StateId::new(state.id.as_str())?;
        let bytes = state.to_json();
        let mut inner = self.lock();
        let current = inner.states.get(&id).map(|(_, r)| r);
        check_precondition(id.as_str(), current, expect)?;
        inner.next_revision += 1;
        let revision = Revision::new(inner.next_revision.to_string());
        inner.states.insert(id, (bytes, revision.clone()));
        Ok(revision)
    }

    async fn delete(&self, id: &StateId) -> Result<bool> {
        Ok(self.lock().states.remove(id).is_some())
    }

    async fn list(&self) -> Result<Vec<StateEntry>> {
        let inner = self.lock();
        inner
            .states
            .iter()
            .map(|(id, (bytes, _))| {
                let state =
                    ConnectorState::from_slice(bytes, id.as_str(), &format!("memory:{id}"))?;
                Ok(StateEntry::new(
                    id.clone(),
                    state.last_updated,
                    bytes.len() as u64,
                ))
            })
            .collect()
    }
}

/// Checks `expect` against the revision a store currently holds; shared by
/// backends that compare revisions themselves under a lock.
pub fn check_precondition(
    id: &str,
    current: Option<&Revision>,
    expect: &Precondition,
) -> Result<()> {
    match (expect, current) {
        (Precondition::Any, _) | (Precondition::Absent, None) => Ok(()),
        (Precondition::Revision(want), Some(have)) if want == have => Ok(()),
        (Precondition::Absent, Some(have)) => Err(StateError::conflict(
            id,
            format!("expected no stored state, found revision {have}"),
        )),
        (Precondition::Revision(want), Some(have)) => Err(StateError::conflict(
            id,
            format!("expected revision {want}, found revision {have}"),
        )),
        (Precondition::Revision(want), None) => Err(StateError::conflict(
            id,
            format!("expected revision {want}, but the state was deleted"),
        )),
    }
}
