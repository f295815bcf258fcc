//! The ONE conformance suite every [`StateStore`] backend runs (feature `conformance`).
//!
//! Each case is a `pub async fn` taking a fresh, empty, isolated store. A backend's
//! tests call them all through [`conformance_tests!`](crate::conformance_tests),
//! which names each test after its case (`conformance_redis::hostile_ids`, ...).
//! Cases panic with a message naming the broken promise.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::sync::Arc;

use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Value, json};

use crate::error::StateError;
use crate::ext::StateStoreExt;
use crate::id::StateId;
use crate::manager::{ManagerOptions, StateManager};
use crate::model::{ConnectorState, FORMAT_VERSION};
use crate::store::{Precondition, StateStore};

pub use crate::id::HOSTILE_IDS;

/// The documentation's example state (the "State File Format" section).
pub const DOCUMENTED_STATE: &str = include_str!("../tests/fixtures/documented_state.json");

/// Shorthand for a type-erased store.
pub type DynStore = Arc<dyn StateStore>;

fn id(s: &str) -> StateId {
    StateId::new(s).unwrap_or_else(|e| panic!("test id {s:?} refused: {e}"))
}

/// A realistic state with an unknown field at every level.
pub fn sample_state(state_id: &str) -> ConnectorState {
    let mut value: Value = serde_json::from_str(DOCUMENTED_STATE).expect("fixture parses");
    value["id"] = state_id.into();
    value["cursor"] = json!({"sort": [1_705_314_600_000_u64, "doc_12345"], "pit": null});
    value["data"]["future_counter"] = 7.into();
    value["data"]["processing_stats"]["p99_batch_ms"] = 310.25.into();
    value["metadata"]["slice"] = json!({"id": 0, "max": 2});
    ConnectorState::from_value(value, "sample").expect("sample parses")
}

/// A store together with something that must live exactly as long as it (a
/// temporary directory, a guard deleting test keys or an index on drop).
/// Backend tests hand it to the suite instead of writing a delegating wrapper each.
#[derive(Debug)]
pub struct Guarded<S, G> {
    /// The store under test.
    pub store: S,
    /// Dropped with the store.
    pub guard: G,
}

impl<S, G> Guarded<S, G> {
    /// Pairs `store` with `guard`.
    pub fn new(store: S, guard: G) -> Self {
        Guarded { store, guard }
    }
}

#[async_trait::async_trait]
impl<S: StateStore, G: Send + Sync + std::fmt::Debug> StateStore for Guarded<S, G> {
    fn backend(&self) -> &'static str {
        self.store.backend()
    }
    async fn load(&self, id: &StateId) -> crate::Result<crate::Stored> {
        self.store.load(id).await
    }
    async fn save(
        &self,
        state: &ConnectorState,
        expect: &Precondition,
    ) -> crate::Result<crate::Revision> {
        self.store.save(state, expect).await
    }
    async fn delete(&self, id: &StateId) -> crate::Result<bool> {
        self.store.delete(id).await
    }
    async fn list(&self) -> crate::Result<Vec<crate::StateEntry>> {
        self.store.list().await
    }
}

/// Save, load: equal, unknown fields included; the revision moves on each save.
pub async fn round_trip(store: DynStore) {
    let state = sample_state("round-trip");
    let r1 = store
        .save(&state, &Precondition::Absent)
        .await
        .expect("first save");
    let loaded = store
        .load(&id("round-trip"))
        .await
        .expect("load after save");
    assert_eq!(
        loaded.state,
        state,
        "{}: loaded state differs from saved",
        store.backend()
    );
    assert_eq!(
        loaded.revision,
        r1,
        "{}: load must return the revision save returned",
        store.backend()
    );
    assert!(loaded.size_bytes > 0);

    let mut next = state.clone();
    next.data.total_documents_fetched += 100;
    let r2 = store
        .save(&next, &Precondition::Revision(r1.clone()))
        .await
        .expect("second save");
    assert_ne!(
        r1,
        r2,
        "{}: a save must produce a new revision",
        store.backend()
    );
    assert_eq!(
        store.load(&id("round-trip")).await.expect("reload").state,
        next
    );

    // The documented example itself, byte-exact through the JSON model.
    let documented =
        ConnectorState::from_slice(DOCUMENTED_STATE.as_bytes(), "doc", "fixture").expect("fixture");
    store
        .save(&documented, &Precondition::Absent)
        .await
        .expect("save documented");
    let back = store
        .load(&id("elasticsearch_logs_connector"))
        .await
        .expect("load documented");
    assert_eq!(
        String::from_utf8(back.state.to_pretty_json()).expect("utf8"),
        DOCUMENTED_STATE.trim_end()
    );
}

/// A missing id is `NotFound`, deleting it is `false`; delete removes.
pub async fn not_found_and_delete(store: DynStore) {
    match store.load(&id("never-saved")).await {
        Err(StateError::NotFound { id, .. }) => assert_eq!(id, "never-saved"),
        other => panic!(
            "{}: load of a missing state gave {other:?}",
            store.backend()
        ),
    }
    assert!(
        !store
            .delete(&id("never-saved"))
            .await
            .expect("delete missing")
    );
    store
        .save(&sample_state("doomed"), &Precondition::Absent)
        .await
        .expect("save");
    assert!(store.delete(&id("doomed")).await.expect("delete"));
    assert!(matches!(
        store.load(&id("doomed")).await,
        Err(StateError::NotFound { .. })
    ));
    assert!(
        store.list().await.expect("list").is_empty(),
        "{}: deleted state still listed",
        store.backend()
    );
    // A deleted state can be created again from scratch.
    store
        .save(&sample_state("doomed"), &Precondition::Absent)
        .await
        .expect("recreate");
}

/// Compare-and-set: stale revisions and double creates are `Conflict`, and of
/// many concurrent writers holding one revision exactly one wins.
pub async fn compare_and_set(store: DynStore) {
    let state = sample_state("cas");
    let r1 = store
        .save(&state, &Precondition::Absent)
        .await
        .expect("create");
    assert!(
        matches!(
            store.save(&state, &Precondition::Absent).await,
            Err(StateError::Conflict { .. })
        ),
        "{}: creating an existing state must conflict",
        store.backend()
    );
    let r2 = store
        .save(&state, &Precondition::Revision(r1.clone()))
        .await
        .expect("update");
    match store
        .save(&state, &Precondition::Revision(r1.clone()))
        .await
    {
        Err(e @ StateError::Conflict { .. }) => {
            assert!(
                e.to_string().contains("cas"),
                "conflict must name the state: {e}"
            );
            assert!(!e.is_retryable());
        }
        other => panic!(
            "{}: a stale revision must conflict, got {other:?}",
            store.backend()
        ),
    }
    // Many writers race with the same revision: exactly one may win.
    let mut tasks = Vec::new();
    for n in 0..8u64 {
        let store = store.clone();
        let rev = r2.clone();
        let mut s = state.clone();
        s.data.poll_count = n;
        tasks.push(tokio::spawn(async move {
            store.save(&s, &Precondition::Revision(rev)).await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => winners += 1,
            Err(StateError::Conflict { .. }) => {}
            Err(e) => panic!("{}: racing save failed with {e}", store.backend()),
        }
    }
    assert_eq!(
        winners,
        1,
        "{}: {winners} racing writers won, exactly one may",
        store.backend()
    );
    // Overwrite regardless.
    store
        .save(&state, &Precondition::Any)
        .await
        .expect("save Any");
    // A revision of a deleted state does not resurrect it silently.
    let last = store.load(&id("cas")).await.expect("load").revision;
    store.delete(&id("cas")).await.expect("delete");
    assert!(matches!(
        store.save(&state, &Precondition::Revision(last)).await,
        Err(StateError::Conflict { .. })
    ));
}

/// Two managers of one state id: the second to save gets `Conflict`, not a silent overwrite.
pub async fn two_managers_conflict(store: DynStore) {
    let a = StateManager::new(store.clone(), id("shared-id"), ManagerOptions::default())
        .expect("manager a");
    let b = StateManager::new(store.clone(), id("shared-id"), ManagerOptions::default())
        .expect("manager b");
    a.load().await.expect("a loads");
    b.load().await.expect("b loads");
    a.update(|s| s.data.total_documents_fetched = 10).await;
    b.update(|s| s.data.total_documents_fetched = 20).await;
    a.save().await.expect("a saves first");
    match b.save().await {
        Err(StateError::Conflict { id, .. }) => assert_eq!(id, "shared-id"),
        other => panic!("{}: second manager's save gave {other:?}", store.backend()),
    }
    assert_eq!(
        store
            .load(&id("shared-id"))
            .await
            .expect("load")
            .state
            .data
            .total_documents_fetched,
        10,
        "the first writer's state must stand"
    );
    // After reloading, b can go on from a's state.
    assert_eq!(
        b.load().await.expect("reload").data.total_documents_fetched,
        10
    );
    b.update(|s| s.data.total_documents_fetched += 5).await;
    b.save().await.expect("b saves after reload");
    assert!(matches!(a.save().await, Err(StateError::Conflict { .. })));
    // Both race with the same fresh revision: exactly one wins.
    a.load().await.expect("a reloads");
    b.load().await.expect("b reloads");
    a.update(|s| s.data.poll_count = 1).await;
    b.update(|s| s.data.poll_count = 2).await;
    let (ra, rb) = tokio::join!(a.save(), b.save());
    assert_eq!(
        ra.is_ok() as u8 + rb.is_ok() as u8,
        1,
        "{}: {ra:?} / {rb:?}",
        store.backend()
    );
}

/// `list`, `stats` and `cleanup_old_states` agree with what was saved.
pub async fn list_stats_cleanup(store: DynStore) {
    assert!(
        store.list().await.expect("list empty").is_empty(),
        "the factory must give an empty store"
    );
    assert_eq!(store.stats().await.expect("stats empty").total_states, 0);
    let now = Utc::now();
    let ages = [
        ("fresh", 0i64),
        ("week-old", 7),
        ("old", 40),
        ("ancient", 400),
    ];
    for (name, days) in ages {
        let mut s = sample_state(name);
        s.last_updated = now - ChronoDuration::days(days);
        store.save(&s, &Precondition::Absent).await.expect("save");
    }
    let mut listed = store.list().await.expect("list");
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<_> = listed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["ancient", "fresh", "old", "week-old"],
        "{}",
        store.backend()
    );
    for e in &listed {
        let days = ages
            .iter()
            .find(|(n, _)| *n == e.id)
            .map(|(_, d)| *d)
            .unwrap_or_default();
        let want = now - ChronoDuration::days(days);
        assert!(
            (e.last_updated - want).num_milliseconds().abs() <= 1,
            "{}: {e:?}",
            store.backend()
        );
        assert!(e.size_bytes > 100, "{}: size of {e:?}", store.backend());
    }
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.total_states, 4);
    assert_eq!(
        stats.total_bytes,
        listed.iter().map(|e| e.size_bytes).sum::<u64>()
    );
    assert!(stats.oldest_update < stats.newest_update);

    // The manager of "ancient" never deletes its own live state.
    let manager = StateManager::new(store.clone(), id("ancient"), ManagerOptions::default())
        .expect("manager");
    assert_eq!(
        manager.cleanup_old_states(30).await.expect("cleanup"),
        1,
        "only `old` is both old and not own"
    );
    assert_eq!(
        manager.get_state_stats().await.expect("stats").total_states,
        3
    );
    let other =
        StateManager::new(store.clone(), id("fresh"), ManagerOptions::default()).expect("manager");
    assert_eq!(other.cleanup_old_states(5).await.expect("cleanup"), 2);
    assert_eq!(other.cleanup_old_states(5).await.expect("cleanup again"), 0);
    let left: Vec<_> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ["fresh"]);
}

/// A 1 MiB state round-trips.
pub async fn large_state(store: DynStore) {
    let mut state = sample_state("large");
    let blob: String = (0..(1 << 20))
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    state.data.extra.insert("blob".into(), Value::String(blob));
    store
        .save(&state, &Precondition::Absent)
        .await
        .expect("save 1 MiB");
    let loaded = store.load(&id("large")).await.expect("load 1 MiB");
    assert_eq!(loaded.state, state);
    assert!(loaded.size_bytes >= 1 << 20);
}

/// Unicode ids are stored, listed and loaded under their own names.
pub async fn unicode_ids(store: DynStore) {
    let ids = [
        "日本語-状態",
        "émoji-✓-🚀",
        "Ωmega_σ",
        "mixed Case With Spaces",
    ];
    for i in ids {
        store
            .save(&sample_state(i), &Precondition::Absent)
            .await
            .unwrap_or_else(|e| panic!("save {i:?}: {e}"));
    }
    for i in ids {
        assert_eq!(store.load(&id(i)).await.expect("load").state.id, i);
    }
    let mut listed: Vec<_> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.id)
        .collect();
    listed.sort();
    let mut want: Vec<_> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want, "{}", store.backend());
    // 255 bytes is the limit and works.
    let longest = "é".repeat(127) + "x";
    assert_eq!(longest.len(), 255);
    store
        .save(&sample_state(&longest), &Precondition::Absent)
        .await
        .expect("255-byte id");
    assert_eq!(
        store.load(&id(&longest)).await.expect("load").state.id,
        longest
    );
}

/// Hostile ids are refused with `InvalidConfig` naming them, and nothing is written.
pub async fn hostile_ids(store: DynStore) {
    let too_long = "x".repeat(256);
    for bad in HOSTILE_IDS.iter().copied().chain([too_long.as_str()]) {
        let state = sample_state("placeholder");
        let state = ConnectorState {
            id: bad.to_owned(),
            ..state
        };
        match store.save(&state, &Precondition::Any).await {
            Err(StateError::InvalidConfig { key, reason }) => {
                assert_eq!(key, "state_id");
                assert!(reason.contains(&format!("{bad:?}")), "{reason}");
            }
            other => panic!("{}: saving id {bad:?} gave {other:?}", store.backend()),
        }
        assert!(StateId::new(bad).is_err());
    }
    assert!(
        store.list().await.expect("list").is_empty(),
        "{}: a hostile id wrote something",
        store.backend()
    );
}

/// A document of a newer format version is refused on load, naming the version.
pub async fn newer_version_refused(store: DynStore) {
    let mut state = sample_state("from-the-future");
    state.version = u64::from(FORMAT_VERSION) + 1;
    store
        .save(&state, &Precondition::Absent)
        .await
        .expect("store raw");
    match store.load(&id("from-the-future")).await {
        Err(StateError::UnsupportedVersion { found, .. }) => {
            assert_eq!(found, u64::from(FORMAT_VERSION) + 1)
        }
        other => panic!(
            "{}: loading a newer version gave {other:?}",
            store.backend()
        ),
    }
    let manager = StateManager::new(
        store.clone(),
        id("from-the-future"),
        ManagerOptions::default(),
    )
    .expect("m");
    assert!(matches!(
        manager.load().await,
        Err(StateError::UnsupportedVersion { .. })
    ));
}

/// The manager's lifecycle: load fresh, update, save, reload elsewhere, reset, export/import.
pub async fn manager_lifecycle(store: DynStore) {
    let m =
        StateManager::new(store.clone(), id("lifecycle"), ManagerOptions::default()).expect("m");
    let fresh = m.load().await.expect("load fresh");
    assert_eq!(fresh.data.total_documents_fetched, 0);
    m.update(|s| {
        s.data.total_documents_fetched = 15_000;
        s.data.last_document_id = Some("doc_12345".into());
    })
    .await;
    m.save().await.expect("save");
    let other =
        StateManager::new(store.clone(), id("lifecycle"), ManagerOptions::default()).expect("m2");
    assert_eq!(
        other
            .load()
            .await
            .expect("load")
            .data
            .total_documents_fetched,
        15_000
    );

    let exported = m.export_state().await.expect("export");
    m.reset_state().await.expect("reset");
    assert_eq!(
        store
            .load(&id("lifecycle"))
            .await
            .expect("load")
            .state
            .data
            .total_documents_fetched,
        0
    );
    m.import_state(exported.clone()).await.expect("import");
    let back = store.load(&id("lifecycle")).await.expect("load").state;
    assert_eq!(
        back.to_value(),
        exported,
        "{}: import must restore the exported document",
        store.backend()
    );

    // Imports are validated: wrong id, newer version, wrong shape.
    let mut wrong_id = exported.clone();
    wrong_id["id"] = "someone-else".into();
    assert!(matches!(
        m.import_state(wrong_id).await,
        Err(StateError::InvalidConfig { .. })
    ));
    let mut newer = exported.clone();
    newer["version"] = 99.into();
    assert!(matches!(
        m.import_state(newer).await,
        Err(StateError::UnsupportedVersion { .. })
    ));
    let mut bad = exported;
    bad["data"]["poll_count"] = "many".into();
    assert!(matches!(
        m.import_state(bad).await,
        Err(StateError::Corrupt { .. })
    ));
    m.close().await.expect("close");
}

/// Export from `a`, import into `b` (and `migrate_to` a -> b): nothing lost.
pub async fn export_import_between(a: DynStore, b: DynStore) {
    let label = format!("{} -> {}", a.backend(), b.backend());
    for i in ["alpha", "beta", "日本"] {
        a.save(&sample_state(i), &Precondition::Absent)
            .await
            .expect("seed");
    }
    let src = StateManager::new(a.clone(), id("alpha"), ManagerOptions::default()).expect("src");
    src.load().await.expect("load");
    let exported = src.export_state().await.expect("export");
    let dst = StateManager::new(b.clone(), id("alpha"), ManagerOptions::default()).expect("dst");
    dst.import_state(exported.clone()).await.expect("import");
    assert_eq!(
        b.load(&id("alpha")).await.expect("load").state.to_value(),
        exported,
        "{label}"
    );

    let report = a.migrate_to(b.as_ref(), false).await.expect("migrate");
    let mut copied = report.copied.clone();
    copied.sort();
    assert_eq!(copied, ["beta", "日本"], "{label}");
    assert_eq!(report.skipped, ["alpha"], "{label}");
    for i in ["alpha", "beta", "日本"] {
        assert_eq!(
            b.load(&id(i)).await.expect("load").state,
            a.load(&id(i)).await.expect("load").state,
            "{label}: {i}"
        );
    }
    assert_eq!(
        a.list().await.expect("source list").len(),
        3,
        "{label}: migration must not touch the source"
    );
}

/// Generates one `#[tokio::test]` per conformance case for a backend.
///
/// `$make` is a closure returning a future of a fresh, empty `Arc<dyn StateStore>`.
/// With `optional:`, the future yields `Option<DynStore>`: `None` (the service's
/// endpoint is not set, see [`service_endpoint`]) makes each case return without
/// running, so nothing passes against a stand-in store.
///
/// ```text
/// mod conformance_memory {
///     state_core::conformance_tests!(|| async {
///         std::sync::Arc::new(state_core::InMemoryStore::new()) as state_core::conformance::DynStore
///     });
/// }
/// mod conformance_redis {
///     state_core::conformance_tests!(optional: || async { redis_url().map(..) });
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (optional: $make:expr) => {
        $crate::conformance_tests!(@cases optional $make;
            round_trip, not_found_and_delete, compare_and_set, two_managers_conflict,
            list_stats_cleanup, large_state, unicode_ids, hostile_ids,
            newer_version_refused, manager_lifecycle);
    };
    ($make:expr) => {
        $crate::conformance_tests!(optional: || {
            let make = $make;
            async move { Some(make().await) }
        });
    };
    (@cases optional $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let make = $make;
                let Some(store) = make().await else { return };
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

/// The endpoint of a test service from the environment variable `var`
/// (`ES_URL`, `REDIS_URL`), as `cargo xtask test` exports it.
///
/// Unset: `None` and one line on stderr saying the tests were not run — unless
/// `XTASK_REQUIRE_SERVICES=1` (set by `cargo xtask test`), which makes a
/// missing variable a failure, so a CI run can never skip them silently.
/// A set variable whose service is down makes the tests fail loudly, where they connect.
pub fn service_endpoint(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if std::env::var("XTASK_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!(
                "{var} is not set but XTASK_REQUIRE_SERVICES=1: run the tests through `cargo xtask test`"
            )
        }
        _ => {
            eprintln!("{var} is not set: tests needing it were not run (use `cargo xtask test`)");
            None
        }
    }
}
