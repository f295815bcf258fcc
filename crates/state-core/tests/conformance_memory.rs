//! The shared conformance suite against the in-memory store.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod conformance_memory {
    use std::sync::Arc;

    use state_core::InMemoryStore;
    use state_core::conformance::DynStore;

    state_core::conformance_tests!(|| async { Arc::new(InMemoryStore::new()) as DynStore });

    #[tokio::test]
    async fn export_import_memory_to_memory() {
        state_core::conformance::export_import_between(
            Arc::new(InMemoryStore::new()),
            Arc::new(InMemoryStore::new()),
        )
        .await;
    }
}
