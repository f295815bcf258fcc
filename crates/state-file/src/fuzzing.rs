//! The store's reading of a state file's bytes, without the file: what the
//! fuzz targets (`fuzz/`) feed. Not a public API (feature `fuzzing`).

use std::path::Path;

use state_core::{ConnectorState, Result, StateEntry, StateId};

use crate::naming;

/// Where the files are said to be, in errors.
const BASE: &str = "/fuzz/states";

/// What [`FileStore::load`](crate::FileStore) makes of `bytes` found in `id`'s file.
pub fn load(id: &StateId, bytes: &[u8]) -> Result<ConnectorState> {
    let path = Path::new(BASE).join(naming::file_name(id.as_str()));
    crate::decode(bytes, id, &path)
}

/// What [`FileStore::list`](crate::FileStore) makes of `bytes` in a file named
/// `name`; `None` when the name is not one of a state file (never read).
pub fn list_entry(name: &str, bytes: &[u8]) -> Option<Result<StateEntry>> {
    if !naming::is_state_file_name(name) {
        return None;
    }
    let path = Path::new(BASE).join(name);
    Some(crate::listed_entry(name, bytes, &path))
}
