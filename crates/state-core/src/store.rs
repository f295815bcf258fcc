//! The storage contract every backend implements.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::id::StateId;
use crate::model::ConnectorState;

/// An opaque marker of one stored version of a state, used for compare-and-set.
///
/// Each backend chooses its own representation (a content hash, a counter,
/// `seq_no:primary_term`); callers only compare and hand it back.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Revision(String);

impl Revision {
    /// Wraps a backend's revision text.
    pub fn new(revision: impl Into<String>) -> Self {
        Revision(revision.into())
    }

    /// The backend's revision text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Revision({})", self.0)
    }
}

/// What a save expects to find in the store; when it finds something else the
/// save fails with [`StateError::Conflict`](crate::StateError::Conflict) and writes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The state must not exist yet.
    Absent,
    /// The stored state must still be at this revision.
    Revision(Revision),
    /// Overwrite whatever is there (imports and migrations that were asked to).
    Any,
}

impl Precondition {
    /// `Revision(r)` when a revision is known, else `Absent`.
    pub fn from_known(revision: Option<&Revision>) -> Self {
        match revision {
            Some(r) => Precondition::Revision(r.clone()),
            None => Precondition::Absent,
        }
    }
}

/// A state as read from a store.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The decoded document.
    pub state: ConnectorState,
    /// The revision to pass to the next save.
    pub revision: Revision,
    /// Size of the stored document in bytes.
    pub size_bytes: u64,
}

/// One entry of [`StateStore::list`].
///
/// The id is a [`StateId`]: a backend that finds a stored state under a name
/// that is not a valid id leaves it out of the listing (with a `tracing`
/// warning naming it), so callers going through a listing (a cleanup, a
/// migration) never stop at one odd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateEntry {
    /// The state id.
    pub id: StateId,
    /// The document's `last_updated`.
    pub last_updated: DateTime<Utc>,
    /// Size of the stored document in bytes.
    pub size_bytes: u64,
}

impl StateEntry {
    /// Builds an entry (backends outside this crate need a constructor: the struct is non-exhaustive).
    pub fn new(id: StateId, last_updated: DateTime<Utc>, size_bytes: u64) -> Self {
        StateEntry {
            id,
            last_updated,
            size_bytes,
        }
    }
}

/// Aggregate figures over every state in a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Number of states stored.
    pub total_states: usize,
    /// The smallest `last_updated`, if any state exists.
    pub oldest_update: Option<DateTime<Utc>>,
    /// The largest `last_updated`, if any state exists.
    pub newest_update: Option<DateTime<Utc>>,
    /// Bytes of all stored documents together.
    pub total_bytes: u64,
}

impl StoreStats {
    /// Aggregates a listing.
    pub fn from_entries(entries: &[StateEntry]) -> Self {
        StoreStats {
            total_states: entries.len(),
            oldest_update: entries.iter().map(|e| e.last_updated).min(),
            newest_update: entries.iter().map(|e| e.last_updated).max(),
            total_bytes: entries.iter().map(|e| e.size_bytes).sum(),
        }
    }
}

/// Where connector states live. Small and object-safe: a backend implements
/// these five methods and nothing else. Conveniences over any store (stats,
/// cleanup, migration) are [`StateStoreExt`](crate::StateStoreExt), implemented
/// for every `StateStore`; those of one connector's state are on
/// [`StateManager`](crate::StateManager).
///
/// Contract (checked by the conformance suite):
/// - `load` of a missing id is `NotFound`; of unreadable bytes `Corrupt`, never a fresh state.
/// - `save` validates `state.id` as a [`StateId`], honours the [`Precondition`]
///   atomically (two writers never both win) and is durable when it returns.
/// - `list` returns each stored state once; a stored name that is not a valid
///   [`StateId`] is left out with a `tracing::warn!` naming it, never an error.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Short backend name used in messages: `memory`, `file`, `sled`, `redis`, `elasticsearch`.
    fn backend(&self) -> &'static str;

    /// Reads one state.
    async fn load(&self, id: &StateId) -> Result<Stored>;

    /// Writes one state if `expect` holds; returns the new revision.
    async fn save(&self, state: &ConnectorState, expect: &Precondition) -> Result<Revision>;

    /// Removes one state; `false` when there was nothing to remove.
    async fn delete(&self, id: &StateId) -> Result<bool>;

    /// Every stored state with its `last_updated` and size.
    async fn list(&self) -> Result<Vec<StateEntry>>;
}
