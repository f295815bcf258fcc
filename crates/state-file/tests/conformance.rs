//! The shared conformance suite against the file store, each case in a fresh temp directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

mod conformance_file {
    use std::sync::Arc;

    use state_core::InMemoryStore;
    use state_core::conformance::export_import_between;

    use super::common::temp_dyn_store;

    state_core::conformance_tests!(|| async { temp_dyn_store() });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_file_to_memory() {
        export_import_between(temp_dyn_store(), Arc::new(InMemoryStore::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_memory_to_file() {
        export_import_between(Arc::new(InMemoryStore::new()), temp_dyn_store()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_file_to_file() {
        export_import_between(temp_dyn_store(), temp_dyn_store()).await;
    }
}
