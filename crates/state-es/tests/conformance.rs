//! The shared conformance suite against an Elasticsearch/OpenSearch index (`ES_URL`).

mod common;

mod conformance_es {
    use std::sync::Arc;

    use state_core::InMemoryStore;
    use state_core::conformance::export_import_between;

    use super::common::{conformance_store, es_url, test_store};

    state_core::conformance_tests!(optional: || conformance_store());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_es_to_memory() {
        let Some(url) = es_url() else { return };
        let es = Arc::new(test_store(&url, "exp-a").await);
        export_import_between(es, Arc::new(InMemoryStore::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_memory_to_es() {
        let Some(url) = es_url() else { return };
        let es = Arc::new(test_store(&url, "exp-b").await);
        export_import_between(Arc::new(InMemoryStore::new()), es).await;
    }
}
