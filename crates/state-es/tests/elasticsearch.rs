//! Behaviour specific to the Elasticsearch backend, against `ES_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use reqwest::Method;
use serde_json::json;
use state_core::conformance::sample_state;
use state_core::{ConnectorState, Precondition, StateError, StateId, StateStore};
use state_es::{EsStore, index_mapping};

use common::{IndexGuard, Raw, es_url, test_store, unique_index};

fn id(s: &str) -> StateId {
    StateId::new(s).unwrap()
}

#[tokio::test]
async fn index_is_created_with_the_explicit_mapping() {
    let Some(url) = es_url() else { return };
    let t = test_store(&url, "mapping").await;
    let (status, body) = t
        .guard
        .raw
        .json(Method::GET, &format!("{}/_mapping", t.guard.index), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mapping = &body[&t.guard.index]["mappings"];
    assert_eq!(mapping["dynamic"], "strict", "{body}");
    assert_eq!(mapping["properties"]["id"]["type"], "keyword", "{body}");
    assert_eq!(
        mapping["properties"]["last_updated"]["type"], "date",
        "{body}"
    );
    assert_eq!(
        mapping["properties"]["size_bytes"]["type"], "long",
        "{body}"
    );
    assert_eq!(mapping["properties"]["state"]["enabled"], false, "{body}");
    assert_eq!(index_mapping()["properties"]["state"]["enabled"], false);

    // Unknown fields inside the state never reach the mapping.
    t.store
        .save(&sample_state("extra-fields"), &Precondition::Absent)
        .await
        .unwrap();
    let (_, after) = t
        .guard
        .raw
        .json(Method::GET, &format!("{}/_mapping", t.guard.index), None)
        .await;
    assert_eq!(after, body, "saving a state changed the mapping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_share_one_index() {
    let Some(url) = es_url() else { return };
    let index = unique_index("race");
    let _guard = IndexGuard {
        raw: Raw::new(&url),
        index: index.clone(),
    };
    let connects = (0..4).map(|_| {
        let (url, index) = (url.clone(), index.clone());
        tokio::spawn(async move { EsStore::connect(url, index).await })
    });
    for c in connects {
        c.await
            .unwrap()
            .unwrap_or_else(|e| panic!("a concurrent connect failed: {e}"));
    }
}

#[tokio::test]
async fn awkward_ids_round_trip() {
    let Some(url) = es_url() else { return };
    let t = test_store(&url, "ids").await;
    let ids = [
        "with space",
        "question?mark",
        "hash#tag",
        "100%",
        "%2F-not-a-slash",
        "a+b",
        "&=;:@!$'()*,",
        "日本語 ?#%+",
        "~tilde_under-score",
    ];
    for i in ids {
        let rev = t
            .store
            .save(&sample_state(i), &Precondition::Absent)
            .await
            .unwrap_or_else(|e| panic!("save {i:?}: {e}"));
        let loaded = t
            .store
            .load(&id(i))
            .await
            .unwrap_or_else(|e| panic!("load {i:?}: {e}"));
        assert_eq!(loaded.state.id, i);
        assert_eq!(loaded.revision, rev);
        t.store
            .save(&loaded.state, &Precondition::Revision(rev))
            .await
            .unwrap_or_else(|e| panic!("update {i:?}: {e}"));
    }
    // The server's own `_id`s (from the search) are the ids themselves, not an encoding of them.
    let mut listed: Vec<_> = t
        .store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    listed.sort();
    let mut want: Vec<_> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    for i in ids {
        assert!(t.store.delete(&id(i)).await.unwrap(), "delete {i:?}");
    }
    assert!(t.store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn list_pages_past_one_page() {
    let Some(url) = es_url() else { return };
    let index = unique_index("pages");
    let guard = IndexGuard {
        raw: Raw::new(&url),
        index: index.clone(),
    };
    let store = EsStore::builder(&url)
        .with_index(&index)
        .with_list_page_size(7)
        .build()
        .await
        .unwrap();
    let want: Vec<String> = (0..30).map(|n| format!("state-{n:02}")).collect();
    for i in &want {
        store
            .save(&sample_state(i), &Precondition::Absent)
            .await
            .unwrap();
    }
    let listed: Vec<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, want, "every state once, in id order");
    drop(guard);
}

async fn put_raw(raw: &Raw, index: &str, doc_id: &str, doc: serde_json::Value) {
    let path = format!("{index}/_doc/{}", doc_id.replace(' ', "%20"));
    let (status, body) = raw.json(Method::PUT, &path, Some(doc)).await;
    assert!(status == 200 || status == 201, "raw write failed: {body}");
}

#[tokio::test]
async fn garbage_in_the_state_field_is_corrupt_naming_index_and_id() {
    let Some(url) = es_url() else { return };
    let t = test_store(&url, "corrupt").await;
    let base = json!({"last_updated": "2024-01-15T10:30:00Z", "size_bytes": 7});
    let cases = [
        ("string state", json!("garbage")),
        (
            "wrong types",
            json!({"id": "wrong types", "last_updated": "yesterday", "version": 1}),
        ),
        ("no state", serde_json::Value::Null),
        ("other id", sample_state("someone-else").to_value()),
    ];
    for (doc_id, state) in &cases {
        let mut doc = base.clone();
        doc["id"] = (*doc_id).into();
        if !state.is_null() {
            doc["state"] = state.clone();
        }
        put_raw(&t.guard.raw, &t.guard.index, doc_id, doc).await;
    }
    for (doc_id, _) in &cases {
        match t.store.load(&id(doc_id)).await {
            Err(e @ StateError::Corrupt { .. }) => {
                let StateError::Corrupt { id, location, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(id, doc_id);
                assert!(location.contains(&t.guard.index), "{e}");
                assert!(location.contains(doc_id), "{e}");
                assert!(!e.is_retryable());
            }
            other => panic!("{doc_id:?}: expected Corrupt, got {other:?}"),
        }
    }
    // A corrupt state is never replaced by a create.
    let fresh = ConnectorState::new("string state");
    assert!(matches!(
        t.store.save(&fresh, &Precondition::Absent).await,
        Err(StateError::Conflict { .. })
    ));
}

#[tokio::test]
async fn a_newer_version_is_refused_naming_the_document() {
    let Some(url) = es_url() else { return };
    let t = test_store(&url, "newer").await;
    let mut state = sample_state("future").to_value();
    state["version"] = 9.into();
    let doc = json!({"id": "future", "last_updated": "2024-01-15T10:30:00Z", "size_bytes": 1, "state": state});
    put_raw(&t.guard.raw, &t.guard.index, "future", doc).await;
    match t.store.load(&id("future")).await {
        Err(StateError::UnsupportedVersion {
            found: 9, location, ..
        }) => assert!(location.contains(&t.guard.index)),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[tokio::test]
async fn a_mapping_refusal_is_a_permanent_backend_error() {
    let Some(url) = es_url() else { return };
    let index = unique_index("refuse");
    let raw = Raw::new(&url);
    let guard = IndexGuard {
        raw: raw.clone(),
        index: index.clone(),
    };
    // Somebody else's index where `state` is a keyword: saving an object there is a 400.
    let mapping = json!({"mappings": {"properties": {"state": {"type": "keyword"}}}});
    let (status, body) = raw.json(Method::PUT, &index, Some(mapping)).await;
    assert_eq!(status, 200, "{body}");
    let store = EsStore::builder(&url)
        .with_index(&index)
        .with_create_index(false)
        .build()
        .await
        .unwrap();
    match store
        .save(&sample_state("refused"), &Precondition::Any)
        .await
    {
        Err(e @ StateError::Backend { .. }) => {
            let msg = e.to_string();
            assert!(!e.is_retryable());
            assert!(
                msg.contains("400") && msg.contains(&index) && msg.contains("exception"),
                "{msg}"
            );
        }
        other => panic!("expected Backend, got {other:?}"),
    }
    drop(guard);
}

#[tokio::test]
async fn missing_index_reads_as_empty() {
    let Some(url) = es_url() else { return };
    let store = EsStore::builder(&url)
        .with_index(unique_index("absent"))
        .with_create_index(false)
        .build()
        .await
        .unwrap();
    assert!(matches!(
        store.load(&id("x")).await,
        Err(StateError::NotFound { .. })
    ));
    assert!(!store.delete(&id("x")).await.unwrap());
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_foreign_revision_conflicts() {
    let Some(url) = es_url() else { return };
    let t = test_store(&url, "foreign").await;
    t.store
        .save(&sample_state("s"), &Precondition::Absent)
        .await
        .unwrap();
    let foreign = state_core::Revision::new("17");
    match t
        .store
        .save(&sample_state("s"), &Precondition::Revision(foreign))
        .await
    {
        Err(StateError::Conflict { id, reason }) => {
            assert_eq!(id, "s");
            assert!(reason.contains("17"), "{reason}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}
