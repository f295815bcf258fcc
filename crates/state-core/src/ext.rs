//! [`StateStoreExt`]: conveniences over any [`StateStore`], built only from its
//! five methods, so no backend implements (or can get wrong) any of them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Result, StateError};
use crate::id::StateId;
use crate::store::{Precondition, StateStore, StoreStats};

/// Outcome of [`StateStoreExt::migrate_to`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// States written to the target and read back identical.
    pub copied: Vec<StateId>,
    /// States left alone because the target already had them (without `overwrite`).
    pub skipped: Vec<StateId>,
}

/// Conveniences over any [`StateStore`] (`dyn StateStore` and `Arc<dyn StateStore>`
/// included): implemented for every store, never by a backend.
///
/// ```
/// use state_core::{InMemoryStore, StateStoreExt};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), state_core::StateError> {
/// let store = InMemoryStore::new();
/// assert_eq!(store.stats().await?.total_states, 0);
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait StateStoreExt: StateStore {
    /// Aggregate figures over [`StateStore::list`].
    async fn stats(&self) -> Result<StoreStats>;

    /// Deletes every listed state whose `last_updated` is before `cutoff`,
    /// except `keep`; returns how many were deleted.
    async fn cleanup_before(&self, cutoff: DateTime<Utc>, keep: Option<&StateId>) -> Result<usize>;

    /// Copies every listed state into `to`, verifying each by reading it back.
    ///
    /// States already in `to` are skipped unless `overwrite`. This store is left
    /// untouched, so a failed migration loses nothing and can be run again.
    async fn migrate_to(&self, to: &dyn StateStore, overwrite: bool) -> Result<MigrationReport>;
}

#[async_trait]
impl<S: StateStore + ?Sized> StateStoreExt for S {
    async fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats::from_entries(&self.list().await?))
    }

    async fn cleanup_before(&self, cutoff: DateTime<Utc>, keep: Option<&StateId>) -> Result<usize> {
        let mut deleted = 0;
        for entry in self.list().await? {
            if entry.last_updated >= cutoff || keep == Some(&entry.id) {
                continue;
            }
            if self.delete(&entry.id).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn migrate_to(&self, to: &dyn StateStore, overwrite: bool) -> Result<MigrationReport> {
        let expect = if overwrite {
            Precondition::Any
        } else {
            Precondition::Absent
        };
        let mut report = MigrationReport::default();
        for entry in self.list().await? {
            let id = entry.id;
            let source = self.load(&id).await?;
            match to.save(&source.state, &expect).await {
                Ok(_) => {}
                Err(StateError::Conflict { .. }) if !overwrite => {
                    report.skipped.push(id);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let copy = to.load(&id).await?;
            if copy.state != source.state {
                return Err(StateError::backend(
                    to.backend(),
                    format!(
                        "state `{id}` read back from the target differs from the source; the source is untouched"
                    ),
                ));
            }
            report.copied.push(id);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Duration;

    use super::*;
    use crate::memory::InMemoryStore;
    use crate::model::ConnectorState;

    async fn store_with(states: &[(&str, i64)]) -> InMemoryStore {
        let store = InMemoryStore::new();
        for (id, days_ago) in states {
            let mut state = ConnectorState::new(*id);
            state.last_updated = Utc::now() - Duration::days(*days_ago);
            store.save(&state, &Precondition::Absent).await.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn cleanup_before_deletes_only_older_states_and_spares_keep() {
        let states = [("a", 10), ("b", 10), ("c", 1)];
        let cutoff = Utc::now() - Duration::days(5);

        let store = store_with(&states).await;
        let keep = StateId::new("a").unwrap();
        assert_eq!(store.cleanup_before(cutoff, Some(&keep)).await.unwrap(), 1);
        let left: Vec<_> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, ["a", "c"]);

        let store = store_with(&states).await;
        assert_eq!(store.cleanup_before(cutoff, None).await.unwrap(), 2);
        assert_eq!(store.stats().await.unwrap().total_states, 1);
    }

    #[tokio::test]
    async fn migrate_to_overwrites_only_when_asked() {
        let from = store_with(&[("a", 1), ("b", 1)]).await;
        let to = store_with(&[("a", 3)]).await;
        let report = from.migrate_to(&to, false).await.unwrap();
        assert_eq!(report.copied, ["b"]);
        assert_eq!(report.skipped, ["a"]);
        let a = StateId::new("a").unwrap();
        assert_ne!(
            to.load(&a).await.unwrap().state,
            from.load(&a).await.unwrap().state
        );

        let report = from.migrate_to(&to, true).await.unwrap();
        assert_eq!(report.copied, ["a", "b"]);
        assert!(report.skipped.is_empty());
        assert_eq!(
            to.load(&a).await.unwrap().state,
            from.load(&a).await.unwrap().state
        );
    }
}
