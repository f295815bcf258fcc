//! The shared conformance suite against the Redis at `REDIS_URL`, each case
//! under its own random key prefix (its keys are deleted afterwards).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

mod conformance_redis {
    use std::sync::Arc;

    use state_core::InMemoryStore;
    use state_core::conformance::{DynStore, export_import_between};

    use crate::common::{clean_store, redis_url};

    /// A store for the shared suite on `REDIS_URL`; `None` (the case does not
    /// run) when it is unset outside `cargo xtask test`.
    async fn conformance_store() -> Option<DynStore> {
        let url = redis_url()?;
        Some(Arc::new(clean_store(&url, "conformance").await))
    }

    state_core::conformance_tests!(optional: || conformance_store());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_redis_to_memory() {
        let Some(url) = redis_url() else { return };
        let redis = Arc::new(clean_store(&url, "export-a").await);
        export_import_between(redis, Arc::new(InMemoryStore::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_memory_to_redis() {
        let Some(url) = redis_url() else { return };
        let redis = Arc::new(clean_store(&url, "export-b").await);
        export_import_between(Arc::new(InMemoryStore::new()), redis).await;
    }
}
