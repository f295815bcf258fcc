//! The shared conformance suite against sled, each case on a fresh temporary directory.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod conformance_sled {
    use std::sync::Arc;

    use state_core::conformance::{DynStore, export_import_between};
    use state_core::{
        ConnectorState, InMemoryStore, Precondition, Result, Revision, StateEntry, StateId,
        StateStore, Stored, async_trait,
    };
    use state_sled::SledStore;
    use tempfile::TempDir;

    /// A store that owns its temporary directory, removed when the store is dropped.
    #[derive(Debug)]
    struct TempSled {
        store: SledStore,
        _dir: TempDir,
    }

    #[async_trait]
    impl StateStore for TempSled {
        fn backend(&self) -> &'static str {
            self.store.backend()
        }
        async fn load(&self, id: &StateId) -> Result<Stored> {
            self.store.load(id).await
        }
        async fn save(&self, state: &ConnectorState, expect: &Precondition) -> Result<Revision> {
            self.store.save(state, expect).await
        }
        async fn delete(&self, id: &StateId) -> Result<bool> {
            self.store.delete(id).await
        }
        async fn list(&self) -> Result<Vec<StateEntry>> {
            self.store.list().await
        }
    }

    fn fresh() -> DynStore {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = SledStore::open(dir.path().join("states.db"))
            .unwrap_or_else(|e| panic!("open sled: {e}"));
        Arc::new(TempSled { store, _dir: dir })
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
