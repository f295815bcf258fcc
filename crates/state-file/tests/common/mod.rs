//! Test helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use state_core::conformance::DynStore;
use state_core::{
    ConnectorState, Precondition, Result, Revision, StateEntry, StateId, StateStore, StoreStats,
    Stored, async_trait,
};
use state_file::FileStore;
use tempfile::TempDir;

/// A [`FileStore`] in its own temp directory, removed when the store is dropped:
/// the directory lives exactly as long as the last `Arc` of the store.
#[derive(Debug)]
pub struct TempFileStore {
    pub store: FileStore,
    pub dir: TempDir,
}

impl TempFileStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileStore::new(dir.path().join("states")).expect("file store");
        TempFileStore { store, dir }
    }

    pub fn dyn_store() -> DynStore {
        Arc::new(Self::new())
    }
}

#[async_trait]
impl StateStore for TempFileStore {
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
    async fn stats(&self) -> Result<StoreStats> {
        self.store.stats().await
    }
}

pub fn id(s: &str) -> StateId {
    StateId::new(s).unwrap_or_else(|e| panic!("test id {s:?} refused: {e}"))
}

/// Names in `dir`, sorted.
pub fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
