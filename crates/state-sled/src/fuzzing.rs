//! The store's reading of a stored value, without the database: what the fuzz
//! targets (`fuzz/`) feed. Not a public API (feature `fuzzing`).

use std::path::Path;

use state_core::{Result, StateEntry, StateId, Stored};

/// Where the database is said to be, in errors.
const PATH: &str = "/fuzz/sled";

/// What [`SledStore::load`](crate::SledStore) makes of `value` stored under `id`.
pub fn load(id: &StateId, value: &[u8]) -> Result<Stored> {
    crate::store::decode(Path::new(PATH), id, value)
}

/// What [`SledStore::list`](crate::SledStore) makes of `value` stored under
/// `key`; `None` when the key is skipped.
pub fn list_entry(key: &[u8], value: &[u8]) -> Option<Result<StateEntry>> {
    crate::store::list_entry(Path::new(PATH), key, value)
}
