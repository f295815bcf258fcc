//! What the file store promises beyond the shared conformance suite: the file
//! layout, corrupt files left alone, no temp files, and compare-and-set
//! between independent stores on one directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use state_core::conformance::sample_state;
use state_core::{Precondition, StateError, StateStore, StateStoreExt};
use state_file::FileStore;

use common::{id, names_in, temp_file_store};

#[tokio::test]
async fn state_is_one_pretty_json_file_named_after_its_id() {
    let t = temp_file_store();
    let state = sample_state("c1");
    t.store
        .save(&state, &Precondition::Absent)
        .await
        .expect("save");

    let path = t.store.path_of(&id("c1"));
    assert_eq!(path, t.store.base_path().join("c1.json"));
    let bytes = std::fs::read(&path).expect("read the state file");
    assert_eq!(
        bytes,
        state.to_pretty_json(),
        "the file must be the pretty JSON document"
    );
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "state files are private to their owner");
    assert_eq!(names_in(t.store.base_path()), [".lock", "c1.json"]);
    let loaded = t.store.load(&id("c1")).await.expect("load");
    assert_eq!(loaded.size_bytes, bytes.len() as u64);
}

#[tokio::test]
async fn missing_base_path_is_created_with_parents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().join("a").join("b").join("states");
    let store = FileStore::new(&base).expect("store");
    assert!(base.is_dir());
    store
        .save(&sample_state("c1"), &Precondition::Absent)
        .await
        .expect("save");
    assert!(base.join("c1.json").is_file());
}

#[tokio::test]
async fn base_path_that_is_a_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    match FileStore::new(&file) {
        Err(e @ StateError::InvalidConfig { .. }) => {
            assert!(e.to_string().contains(&file.display().to_string()), "{e}")
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_files_are_reported_with_their_path_and_left_untouched() {
    let t = temp_file_store();
    let good = sample_state("c1");
    let pretty = good.to_pretty_json();
    let truncated = pretty[..pretty.len() / 2].to_vec();
    let bad_contents: [(&str, Vec<u8>); 3] = [
        ("truncated", truncated),
        ("garbage", b"<html>502 Bad Gateway</html>".to_vec()),
        ("empty", Vec::new()),
    ];
    let path = t.store.path_of(&id("c1"));
    for (what, bad) in bad_contents {
        // A revision that was valid before the file went bad.
        t.store
            .save(&good, &Precondition::Any)
            .await
            .expect("save good");
        let before = t.store.load(&id("c1")).await.expect("load good").revision;
        std::fs::write(&path, &bad).expect("corrupt the file");

        match t.store.load(&id("c1")).await {
            Err(e @ StateError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
                assert!(
                    msg.contains("delete it"),
                    "{what}: the way out is missing: {msg}"
                );
            }
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
        for expect in [Precondition::Absent, Precondition::Revision(before)] {
            match t.store.save(&good, &expect).await {
                Err(StateError::Corrupt { .. } | StateError::Conflict { .. }) => {}
                other => {
                    panic!("{what}: saving with {expect:?} over a corrupt file gave {other:?}")
                }
            }
            assert_eq!(
                std::fs::read(&path).expect("read"),
                bad,
                "{what}: the corrupt file was changed"
            );
        }
        // One bad file does not break listing or stats.
        assert!(t.store.list().await.expect("list").is_empty(), "{what}");
        assert_eq!(
            t.store.stats().await.expect("stats").total_states,
            0,
            "{what}"
        );
        // Only an explicit overwrite replaces it.
        t.store
            .save(&good, &Precondition::Any)
            .await
            .expect("overwrite with Any");
        assert_eq!(
            t.store.load(&id("c1")).await.expect("load").state,
            good,
            "{what}"
        );
    }
}

#[tokio::test]
async fn no_temp_files_are_left_after_saves_and_deletes() {
    let t = temp_file_store();
    let mut state = sample_state("busy");
    let mut revision = t
        .store
        .save(&state, &Precondition::Absent)
        .await
        .expect("create");
    for n in 0..20 {
        state.data.poll_count = n;
        revision = t
            .store
            .save(&state, &Precondition::Revision(revision))
            .await
            .expect("save");
    }
    t.store
        .save(&sample_state("gone"), &Precondition::Absent)
        .await
        .expect("save");
    assert!(t.store.delete(&id("gone")).await.expect("delete"));
    assert_eq!(names_in(t.store.base_path()), [".lock", "busy.json"]);
}

#[tokio::test]
async fn stale_temp_files_are_removed_when_a_store_opens() {
    let t = temp_file_store();
    let stale = t.store.base_path().join(".state-file-4242-7.tmp");
    std::fs::write(&stale, b"{\"half\": ").expect("write stale temp");
    t.store
        .save(&sample_state("c1"), &Precondition::Absent)
        .await
        .expect("save");
    let _reopened = FileStore::new(t.store.base_path()).expect("reopen");
    assert_eq!(names_in(t.store.base_path()), [".lock", "c1.json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_directory_conflict_on_a_stale_revision() {
    // Two stores with their own lock file handles behave like two processes.
    let t = temp_file_store();
    let a = t.store.clone();
    let b = FileStore::new(t.store.base_path()).expect("second store");
    let mut state = sample_state("shared");
    let r1 = a
        .save(&state, &Precondition::Absent)
        .await
        .expect("a creates");
    assert!(matches!(
        b.save(&state, &Precondition::Absent).await,
        Err(StateError::Conflict { .. })
    ));
    let seen_by_b = b.load(&id("shared")).await.expect("b loads");
    assert_eq!(
        seen_by_b.revision, r1,
        "both stores must see the same revision"
    );
    state.data.poll_count = 2;
    let r2 = b
        .save(&state, &Precondition::Revision(r1.clone()))
        .await
        .expect("b updates");
    match a.save(&state, &Precondition::Revision(r1)).await {
        Err(StateError::Conflict { id, .. }) => assert_eq!(id, "shared"),
        other => panic!("a saved over b's update with a stale revision: {other:?}"),
    }

    // Writers on both stores race with one revision: exactly one wins.
    let stores: [Arc<dyn StateStore>; 2] = [Arc::new(a), Arc::new(b)];
    let mut tasks = Vec::new();
    for n in 0..16u64 {
        let store = stores[(n % 2) as usize].clone();
        let expect = Precondition::Revision(r2.clone());
        let mut s = state.clone();
        s.data.poll_count = 100 + n;
        tasks.push(tokio::spawn(async move { store.save(&s, &expect).await }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => winners += 1,
            Err(StateError::Conflict { .. }) => {}
            Err(e) => panic!("racing save failed: {e}"),
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn saving_identical_content_still_gives_a_new_revision() {
    // Revisions are not a bare content hash: an old revision of identical bytes must not win.
    let t = temp_file_store();
    let state = sample_state("same");
    let r1 = t
        .store
        .save(&state, &Precondition::Absent)
        .await
        .expect("create");
    let r2 = t
        .store
        .save(&state, &Precondition::Revision(r1.clone()))
        .await
        .expect("2");
    let r3 = t
        .store
        .save(&state, &Precondition::Revision(r2.clone()))
        .await
        .expect("3");
    assert!(r1 != r2 && r2 != r3 && r1 != r3, "{r1} {r2} {r3}");
    for stale in [r1, r2] {
        assert!(matches!(
            t.store.save(&state, &Precondition::Revision(stale)).await,
            Err(StateError::Conflict { .. })
        ));
    }
    assert_eq!(t.store.load(&id("same")).await.expect("load").revision, r3);
}

#[tokio::test]
async fn a_hand_edited_file_invalidates_revisions_read_before() {
    let t = temp_file_store();
    let state = sample_state("edited");
    let r1 = t
        .store
        .save(&state, &Precondition::Absent)
        .await
        .expect("create");
    let mut edited = state.clone();
    edited.data.last_offset = 99;
    std::fs::write(t.store.path_of(&id("edited")), edited.to_pretty_json()).expect("edit");
    assert!(matches!(
        t.store.save(&state, &Precondition::Revision(r1)).await,
        Err(StateError::Conflict { .. })
    ));
    assert_eq!(
        t.store.load(&id("edited")).await.expect("load").state,
        edited
    );
}

#[tokio::test]
async fn long_ids_get_a_shortened_file_name_and_list_their_real_id() {
    let t = temp_file_store();
    let longest = "x".repeat(state_core::MAX_STATE_ID_BYTES);
    let almost = "x".repeat(state_core::MAX_STATE_ID_BYTES - 1) + "y";
    for long in [&longest, &almost] {
        let name = t
            .store
            .path_of(&id(long))
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.len() <= 255, "{} bytes", name.len());
        assert!(name.ends_with(".json") && name.contains(".."), "{name}");
        t.store
            .save(&sample_state(long), &Precondition::Absent)
            .await
            .expect("save long id");
    }
    assert_ne!(
        t.store.path_of(&id(&longest)),
        t.store.path_of(&id(&almost))
    );
    let mut listed: Vec<_> = t
        .store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.id)
        .collect();
    listed.sort();
    assert_eq!(listed, [longest.clone(), almost.clone()]);
    assert_eq!(
        t.store.load(&id(&almost)).await.expect("load").state.id,
        almost
    );
    assert!(t.store.delete(&id(&longest)).await.expect("delete"));
    assert_eq!(t.store.list().await.expect("list").len(), 1);
}

#[tokio::test]
async fn list_skips_foreign_hidden_and_misnamed_files() {
    let t = temp_file_store();
    let base = t.store.base_path().to_owned();
    t.store
        .save(&sample_state("real"), &Precondition::Absent)
        .await
        .expect("save");
    std::fs::write(base.join("notes.txt"), b"not a state").expect("write");
    std::fs::write(
        base.join(".hidden.json"),
        sample_state("hidden").to_pretty_json(),
    )
    .expect("write");
    std::fs::write(base.join("broken.json"), b"{").expect("write");
    // A copy of `real` under another name: it holds another id's state.
    std::fs::copy(base.join("real.json"), base.join("copy.json")).expect("copy");
    std::fs::create_dir(base.join("folder.json")).expect("mkdir");

    let listed: Vec<_> = t
        .store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, ["real"]);
    match t.store.load(&id("copy")).await {
        Err(e @ StateError::Corrupt { .. }) => {
            assert!(
                e.to_string().contains("\"real\""),
                "the message must name the id inside: {e}"
            )
        }
        other => panic!("loading a copied file gave {other:?}"),
    }
}

#[tokio::test]
async fn an_unreadable_state_path_is_a_backend_error_naming_it() {
    let t = temp_file_store();
    let path = t.store.path_of(&id("dir"));
    std::fs::create_dir(&path).expect("a directory where the file should be");
    match t.store.load(&id("dir")).await {
        Err(e @ StateError::Backend { .. }) => {
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected Backend, got {other:?}"),
    }
    assert!(matches!(
        t.store.save(&sample_state("dir"), &Precondition::Any).await,
        Err(StateError::Backend { .. })
    ));
    assert!(path.is_dir(), "the directory must be left alone");
}

/// Files that do not hold a valid state id sit next to real states: a cleanup
/// and a migration over the directory still do their work on every real state.
#[tokio::test]
async fn odd_files_neither_abort_a_cleanup_nor_a_migration() {
    let t = temp_file_store();
    let base = t.store.base_path().to_owned();
    let long_ago = chrono::Utc::now() - chrono::Duration::days(90);
    for name in ["old-a", "old-b", "fresh"] {
        let mut state = sample_state(name);
        if name.starts_with("old") {
            state.last_updated = long_ago;
        }
        t.store
            .save(&state, &Precondition::Absent)
            .await
            .expect("save");
    }
    // Named like state files, but the ids inside are not valid state ids.
    for (file, inner_id) in [("a..b.json", "a..b"), ("tab\tid.json", "tab\tid")] {
        let mut odd = sample_state("placeholder");
        odd.id = inner_id.to_owned();
        odd.last_updated = long_ago;
        std::fs::write(base.join(file), odd.to_pretty_json()).expect("write");
    }

    let target = state_core::InMemoryStore::new();
    let report = t
        .store
        .migrate_to(&target, false)
        .await
        .expect("one odd file must not abort the migration");
    let mut copied = report.copied;
    copied.sort();
    assert_eq!(copied, ["fresh", "old-a", "old-b"]);

    let store: Arc<dyn StateStore> = Arc::new(t.store);
    let manager = state_core::StateManager::new(
        store.clone(),
        id("fresh"),
        state_core::ManagerOptions::default(),
    )
    .expect("manager");
    assert_eq!(
        manager
            .cleanup_old_states(30)
            .await
            .expect("one odd file must not abort the cleanup"),
        2
    );
    let mut left: Vec<_> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.id)
        .collect();
    left.sort();
    assert_eq!(left, ["fresh"]);
    assert!(base.join("a..b.json").is_file(), "odd files are left alone");
    assert!(
        base.join("tab\tid.json").is_file(),
        "odd files are left alone"
    );
}
