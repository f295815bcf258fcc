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
