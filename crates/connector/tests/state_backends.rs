//! Export -> import and migration across every ordered pair of state backends,
//! through the same wiring the binary uses (`connector::state::open_store`).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use connector::state::open_store;
use state_core::conformance::{DynStore, export_import_between, service_endpoint};
use state_core::{InMemoryStore, StorageSettings};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{tag}{}x{nanos}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Memory,
    File,
    Sled,
    Redis,
    Elasticsearch,
}

struct Endpoints {
    es: Option<String>,
    redis: Option<String>,
}

async fn make(kind: Kind, dir: &Path, ep: &Endpoints) -> DynStore {
    let settings = match kind {
        Kind::Memory => return std::sync::Arc::new(InMemoryStore::new()),
        Kind::File => StorageSettings::File {
            base_path: dir.join(unique("file")),
        },
        Kind::Sled => StorageSettings::Sled {
            path: dir.join(unique("sled")),
        },
        Kind::Redis => StorageSettings::Redis {
            url: ep.redis.clone().unwrap_or_default(),
            key_prefix: format!("{}:", unique("pairs")),
        },
        Kind::Elasticsearch => StorageSettings::Elasticsearch {
            endpoint: connector::config::Endpoint::from_url(
                ep.es
                    .as_deref()
                    .unwrap_or_default()
                    .parse()
                    .unwrap_or_else(|e| panic!("the Elasticsearch URL: {e}")),
            ),
            index: unique("pairs-").parse().unwrap_or_else(|e| panic!("{e}")),
        },
    };
    open_store(&settings)
        .await
        .unwrap_or_else(|e| panic!("opening {kind:?}: {e}"))
}

async fn empty(store: &DynStore) {
    for entry in store.list().await.unwrap_or_default() {
        let _ = store.delete(&entry.id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_and_migration_across_every_pair_of_backends() {
    let ep = Endpoints {
        es: service_endpoint("ES_URL"),
        redis: service_endpoint("REDIS_URL"),
    };
    let mut kinds = vec![Kind::Memory, Kind::File, Kind::Sled];
    if ep.redis.is_some() {
        kinds.push(Kind::Redis);
    }
    if ep.es.is_some() {
        kinds.push(Kind::Elasticsearch);
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut pairs = 0;
    for &from in &kinds {
        for &to in &kinds {
            if from == to {
                continue;
            }
            let a = make(from, dir.path(), &ep).await;
            let b = make(to, dir.path(), &ep).await;
            export_import_between(a.clone(), b.clone()).await;
            empty(&a).await;
            empty(&b).await;
            pairs += 1;
        }
    }
    assert_eq!(pairs, kinds.len() * (kinds.len() - 1));
}
