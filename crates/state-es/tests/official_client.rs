//! The shared conformance suite on an [`EsStore`] over the official
//! `elasticsearch` client (`EsStore::from_elasticsearch`), against `ES_URL`
//! (Elasticsearch or OpenSearch: `cargo xtask test` runs it on each).
#![cfg(feature = "elasticsearch")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::http::Url;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use state_core::HttpUrl;
use state_core::conformance::{DynStore, Guarded};
use state_es::EsStore;

use common::{IndexGuard, Raw, es_url, unique_index};

/// An official client of `url`, with the URL's credentials as basic auth.
fn official_client(url: &str) -> Elasticsearch {
    let parsed = HttpUrl::parse(url).expect("ES_URL is an http(s) URL");
    let node = Url::parse(parsed.base()).expect("the base URL parses");
    let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(node));
    if parsed.has_credentials() {
        transport = transport.auth(Credentials::Basic(
            parsed.username().unwrap_or_default().to_owned(),
            parsed
                .password()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        ));
    }
    Elasticsearch::new(transport.build().expect("the client builds"))
}

async fn official_store(url: &str, label: &str) -> Guarded<EsStore, IndexGuard> {
    let index = unique_index(label);
    let guard = IndexGuard {
        raw: Raw::new(url),
        index: index.clone(),
    };
    let store = EsStore::from_elasticsearch(official_client(url))
        .with_index(index)
        .build()
        .await
        .unwrap_or_else(|e| panic!("ES_URL is set but the store cannot connect: {e}"));
    assert!(store.official_client().is_some());
    Guarded::new(store, guard)
}

async fn conformance_store() -> Option<DynStore> {
    let url = es_url()?;
    Some(Arc::new(official_store(&url, "official").await))
}

mod conformance_es_official_client {
    state_core::conformance_tests!(optional: || super::conformance_store());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_created_with_the_mapping() {
    let Some(url) = es_url() else { return };
    let store = official_store(&url, "mapping").await;
    let (status, body) = Raw::new(&url)
        .json(
            reqwest::Method::GET,
            &format!("{}/_mapping", store.store.index()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mapping = &body[store.store.index()]["mappings"];
    assert_eq!(mapping["dynamic"], "strict", "{body}");
    assert_eq!(mapping["properties"]["state"]["enabled"], false, "{body}");
}
