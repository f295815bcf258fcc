//! Behaviour specific to the sled backend: reopening, the directory lock, damaged values.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use state_core::conformance::sample_state;
use state_core::{Precondition, StateError, StateId, StateStore};
use state_sled::SledStore;

fn id(s: &str) -> StateId {
    StateId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("nested/dirs/states.db");
    let state = sample_state("survivor");
    let revision = {
        let store = SledStore::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
        store
            .save(&state, &Precondition::Absent)
            .await
            .unwrap_or_else(|e| panic!("save: {e}"))
    };
    let store = SledStore::open(&path).unwrap_or_else(|e| panic!("reopen: {e}"));
    let stored = store
        .load(&id("survivor"))
        .await
        .unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(stored.state, state);
    assert_eq!(
        stored.revision, revision,
        "the revision must survive reopening too"
    );
    // The revision counter continues after reopening: an old revision is stale.
    let next = store
        .save(&state, &Precondition::Revision(revision.clone()))
        .await
        .unwrap_or_else(|e| panic!("save after reopen: {e}"));
    assert_ne!(next, revision);
    assert!(matches!(
        store.save(&state, &Precondition::Revision(revision)).await,
        Err(StateError::Conflict { .. })
    ));
    let listed = store.list().await.unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].last_updated, state.last_updated,
        "list reads the exact timestamp from the header"
    );
}

#[tokio::test]
async fn second_open_of_a_locked_path_says_who_holds_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("states.db");
    let _first = SledStore::open(&path).unwrap_or_else(|e| panic!("first open: {e}"));
    match SledStore::open(&path) {
        Err(e @ StateError::Unavailable { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "must name the path: {msg}"
            );
            assert!(
                msg.contains("another process"),
                "must say who holds it: {msg}"
            );
            assert!(e.is_retryable());
        }
        other => panic!("second open of a locked sled database gave {other:?}"),
    }
}

#[tokio::test]
async fn damaged_value_is_corrupt_naming_the_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("states.db");
    {
        // No background flusher, so the lock is released when `db` is dropped.
        let db = sled::Config::new()
            .path(&path)
            .flush_every_ms(None)
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let tree = db.open_tree("states").unwrap_or_else(|e| panic!("{e}"));
        tree.insert("short", b"xx".as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
        db.flush().unwrap_or_else(|e| panic!("{e}"));
    }
    let store = SledStore::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
    match store.load(&id("short")).await {
        Err(StateError::Corrupt {
            id,
            location,
            reason,
        }) => {
            assert_eq!(id, "short");
            assert!(
                location.contains("short") && location.contains("states.db"),
                "{location}"
            );
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("loading a damaged value gave {other:?}"),
    }
    // A damaged value is never overwritten by a compare-and-set save.
    let state = sample_state("short");
    assert!(
        store
            .save(
                &state,
                &Precondition::Revision(state_core::Revision::new("1"))
            )
            .await
            .is_err()
    );
    assert!(matches!(
        store.save(&state, &Precondition::Absent).await,
        Err(StateError::Conflict { .. })
    ));
}

/// A key that is not a valid state id, holding a well-formed record, sits next
/// to real states: a cleanup and a migration still do their work on every real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odd_key_neither_aborts_a_cleanup_nor_a_migration() {
    use state_core::{InMemoryStore, ManagerOptions, StateManager, StateStoreExt};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("states.db");
    let long_ago = chrono_days_ago(90);
    {
        let store = SledStore::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
        for name in ["old", "fresh"] {
            let mut state = sample_state(name);
            if name == "old" {
                state.last_updated = long_ago;
            }
            store
                .save(&state, &Precondition::Absent)
                .await
                .unwrap_or_else(|e| panic!("save: {e}"));
        }
    }
    {
        let db = sled::Config::new()
            .path(&path)
            .flush_every_ms(None)
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let tree = db.open_tree("states").unwrap_or_else(|e| panic!("{e}"));
        let record = tree
            .get("old")
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the saved record is missing"));
        tree.insert("../escape", record)
            .unwrap_or_else(|e| panic!("{e}"));
        db.flush().unwrap_or_else(|e| panic!("{e}"));
    }
    let store: Arc<SledStore> =
        Arc::new(SledStore::open(&path).unwrap_or_else(|e| panic!("reopen: {e}")));

    let target = InMemoryStore::new();
    let report = store
        .migrate_to(&target, false)
        .await
        .unwrap_or_else(|e| panic!("one odd key must not abort the migration: {e}"));
    let mut copied = report.copied;
    copied.sort();
    assert_eq!(copied, ["fresh", "old"]);

    let manager = StateManager::new(store.clone(), id("fresh"), ManagerOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let deleted = manager
        .cleanup_old_states(30)
        .await
        .unwrap_or_else(|e| panic!("one odd key must not abort the cleanup: {e}"));
    assert_eq!(deleted, 1);
    let left: Vec<_> = store
        .list()
        .await
        .unwrap_or_else(|e| panic!("list: {e}"))
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ["fresh"]);
}

fn chrono_days_ago(days: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::days(days)
}
