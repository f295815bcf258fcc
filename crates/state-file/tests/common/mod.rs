//! Test helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use state_core::StateId;
use state_core::conformance::{DynStore, Guarded};
use state_file::FileStore;
use tempfile::TempDir;

/// A [`FileStore`] in its own temp directory, removed when the store is dropped:
/// the directory lives exactly as long as the last `Arc` of the store.
pub type TempFileStore = Guarded<FileStore, TempDir>;

pub fn temp_file_store() -> TempFileStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileStore::new(dir.path().join("states")).expect("file store");
    Guarded::new(store, dir)
}

pub fn temp_dyn_store() -> DynStore {
    Arc::new(temp_file_store())
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
