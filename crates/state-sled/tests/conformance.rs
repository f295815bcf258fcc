//! The shared conformance suite against sled, each case on a fresh temporary directory.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod conformance_sled {
    use std::sync::Arc;

    use state_core::InMemoryStore;
    use state_core::conformance::{DynStore, Guarded, export_import_between};
    use state_sled::SledStore;

    fn fresh() -> DynStore {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = SledStore::open(dir.path().join("states.db"))
            .unwrap_or_else(|e| panic!("open sled: {e}"));
        // The directory is removed when the store is dropped.
        Arc::new(Guarded::new(store, dir))
    }

    state_core::conformance_tests!(|| async { fresh() });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_sled_to_memory() {
        export_import_between(fresh(), Arc::new(InMemoryStore::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_memory_to_sled() {
        export_import_between(Arc::new(InMemoryStore::new()), fresh()).await;
    }
}
