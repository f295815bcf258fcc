//! StateManager behaviour that needs a clock: auto-save, tracked fields, close.
//! Time is tokio's paused clock: nothing here sleeps for real.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use state_core::{
    ConnectorState, InMemoryStore, ManagerOptions, Precondition, Revision, StateEntry, StateError,
    StateId, StateManager, StateStore, Stored, async_trait,
};

/// Counts the saves that reach the store; fails the next `fail` of them
/// before writing; when told to, loses the answer of the next one after
/// applying it (a time-out or a reset after the write).
#[derive(Debug, Default)]
struct Counting {
    inner: InMemoryStore,
    saves: AtomicUsize,
    fail: AtomicUsize,
    lose_next: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl StateStore for Counting {
    fn backend(&self) -> &'static str {
        "counting"
    }
    async fn load(&self, id: &StateId) -> state_core::Result<Stored> {
        self.inner.load(id).await
    }
    async fn save(&self, s: &ConnectorState, e: &Precondition) -> state_core::Result<Revision> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StateError::unavailable("counting", "the disk is full"));
        }
        let applied = self.inner.save(s, e).await?;
        if self.lose_next.swap(false, Ordering::SeqCst) {
            return Err(StateError::unavailable("counting", "timed out"));
        }
        Ok(applied)
    }
    async fn delete(&self, id: &StateId) -> state_core::Result<bool> {
        self.inner.delete(id).await
    }
    async fn list(&self) -> state_core::Result<Vec<StateEntry>> {
        self.inner.list().await
    }
}

fn id() -> StateId {
    StateId::new("auto").unwrap_or_else(|e| panic!("{e}"))
}

fn manager(store: Arc<Counting>, every: u64, tracked: &[&str]) -> StateManager {
    let options = ManagerOptions {
        auto_save_interval: Some(Duration::from_secs(every)),
        tracked_fields: tracked.iter().map(|s| s.to_string()).collect(),
    };
    StateManager::new(store, id(), options).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(start_paused = true)]
async fn auto_save_writes_a_dirty_state_after_one_interval() {
    let store = Arc::new(Counting::default());
    let m = manager(store.clone(), 5, &[]);
    m.load().await.unwrap_or_else(|e| panic!("{e}"));
    m.start_auto_save();
    let mut saves = m.subscribe_saves();
    let started = tokio::time::Instant::now();
    m.update(|s| s.data.total_documents_fetched = 42).await;
    saves.changed().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "saved before the interval: {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let stored = store.load(&id()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.state.data.total_documents_fetched, 42);
    assert!(!m.is_dirty().await);
}

#[tokio::test(start_paused = true)]
async fn auto_save_skips_clean_states() {
    let store = Arc::new(Counting::default());
    let m = manager(store.clone(), 5, &[]);
    m.load().await.unwrap_or_else(|e| panic!("{e}"));
    m.start_auto_save();
    // Twelve intervals pass with nothing to save. On the paused clock this
    // sleep is simulated: the runtime jumps from timer to timer, running the
    // auto-save task at each tick, and no real time passes.
    tokio::time::sleep(Duration::from_secs(62)).await;
    // ...then one change, and its save is the first that reaches the store.
    let mut saves = m.subscribe_saves();
    m.update(|s| s.data.poll_count = 1).await;
    saves.changed().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn untracked_changes_wait_for_close() {
    let store = Arc::new(Counting::default());
    let m = manager(store.clone(), 5, &["total_documents_fetched"]);
    m.load().await.unwrap_or_else(|e| panic!("{e}"));
    m.update(|s| s.data.error_count = 3).await;
    assert!(
        !m.is_dirty().await,
        "an untracked field must not mark the state dirty"
    );
    m.update(|s| s.data.total_documents_fetched = 1).await;
    assert!(m.is_dirty().await);
    m.save().await.unwrap_or_else(|e| panic!("{e}"));
    m.update(|s| s.data.error_count = 4).await;
    m.close().await.unwrap_or_else(|e| panic!("{e}"));
    let stored = store.load(&id()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored.state.data.error_count, 4,
        "close saves untracked changes too"
    );
    assert_eq!(store.saves.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn close_without_changes_writes_nothing() {
    let store = Arc::new(Counting::default());
    let m = manager(store.clone(), 5, &[]);
    m.load().await.unwrap_or_else(|e| panic!("{e}"));
    m.close().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.saves.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn auto_save_conflict_surfaces_at_close() {
    let store = Arc::new(Counting::default());
    let a = manager(store.clone(), 5, &[]);
    let b = manager(store.clone(), 5, &[]);
    a.load().await.unwrap_or_else(|e| panic!("{e}"));
    b.load().await.unwrap_or_else(|e| panic!("{e}"));
    b.update(|s| s.data.poll_count = 7).await;
    b.save().await.unwrap_or_else(|e| panic!("{e}"));
    a.start_auto_save();
    a.update(|s| s.data.poll_count = 1).await;
    tokio::time::advance(Duration::from_secs(6)).await;
    match a.close().await {
        Err(StateError::Conflict { id, .. }) => assert_eq!(id, "auto"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let stored = store.load(&id()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored.state.data.poll_count, 7,
        "the other writer's state must stand"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_saves_count_in_error_count() {
    let store = Arc::new(Counting::default());
    let m = manager(store.clone(), 5, &[]);
    m.load().await.unwrap_or_else(|e| panic!("{e}"));
    // An explicit save (as every commit does) fails once.
    store.fail.store(1, Ordering::SeqCst);
    m.update(|s| s.data.total_documents_fetched = 1).await;
    assert!(m.save().await.is_err());
    let data = m.get().await.data;
    assert_eq!(data.error_count, 1);
    assert!(
        data.last_error
            .as_deref()
            .is_some_and(|e| e.contains("the disk is full")),
        "{:?}",
        data.last_error
    );
    // An auto-save fails once; the next interval's save stores both failures.
    store.fail.store(1, Ordering::SeqCst);
    m.start_auto_save();
    let mut saves = m.subscribe_saves();
    saves.changed().await.unwrap_or_else(|e| panic!("{e}"));
    let stored = store.load(&id()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.state.data.error_count, 2);
    assert_eq!(stored.state.data.total_documents_fetched, 1);
}

#[tokio::test]
async fn unknown_tracked_field_is_refused() {
    let options = ManagerOptions {
        auto_save_interval: None,
        tracked_fields: vec!["nope".into()],
    };
    match StateManager::new(Arc::new(InMemoryStore::new()), id(), options) {
        Err(StateError::InvalidConfig { key, reason }) => {
            assert_eq!(key, "state.tracked_fields");
            assert!(reason.contains("nope"));
        }
        other => panic!("{other:?}"),
    }
}

fn plain(store: Arc<Counting>) -> StateManager {
    StateManager::new(store, id(), ManagerOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The save after one whose answer was lost finds its own write, not another
/// instance's: it carries on, and the stored state is the latest.
#[tokio::test]
async fn a_save_applied_before_its_answer_was_lost_is_recognised_as_ours() {
    let store = Arc::new(Counting::default());
    let m = plain(store.clone());
    m.load().await.unwrap();
    m.save().await.unwrap();
    m.update(|s| s.data.total_documents_fetched = 10).await;
    store.lose_next.store(true, Ordering::SeqCst);
    let lost = m.save().await;
    assert!(
        matches!(lost, Err(StateError::Unavailable { .. })),
        "{lost:?}"
    );
    m.update(|s| s.data.total_documents_fetched = 20).await;
    m.save()
        .await
        .unwrap_or_else(|e| panic!("our own applied write is no conflict: {e}"));
    let stored = store.load(&id()).await.unwrap();
    assert_eq!(stored.state.data.total_documents_fetched, 20);
    // And the next saves go on as usual.
    m.update(|s| s.data.total_documents_fetched = 30).await;
    m.save().await.unwrap();
}

/// When another instance wrote after the lost answer, the conflict stands.
#[tokio::test]
async fn another_writer_after_a_lost_answer_is_still_a_conflict() {
    let store = Arc::new(Counting::default());
    let m = plain(store.clone());
    m.load().await.unwrap();
    m.save().await.unwrap();
    store.lose_next.store(true, Ordering::SeqCst);
    assert!(m.save().await.is_err());
    let other = plain(store.clone());
    other.load().await.unwrap();
    other.update(|s| s.data.total_documents_fetched = 99).await;
    other.save().await.unwrap();
    let again = m.save().await;
    assert!(
        matches!(again, Err(StateError::Conflict { .. })),
        "{again:?}"
    );
    let stored = store.load(&id()).await.unwrap();
    assert_eq!(stored.state.data.total_documents_fetched, 99);
}
