//! [`SledStore`]: states in one sled tree, one key per state id.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use state_core::{
    ConnectorState, Precondition, Result, Revision, StateEntry, StateError, StateId, StateStore,
    Stored, async_trait,
};

use crate::record::{self, Record};

const BACKEND: &str = "sled";
/// The sled tree holding the states, so the database can hold other trees later.
const TREE: &str = "states";

/// A [`StateStore`] in an embedded [sled](https://docs.rs/sled) database.
///
/// - Durable: `save` and `delete` flush to disk before they return.
/// - Compare-and-set: sled's own atomic `compare_and_swap` on the whole stored
///   value, which carries a unique revision (see the README's value layout).
/// - One process at a time: sled locks the directory; a second
///   [`SledStore::open`] of the same path fails with
///   [`StateError::Unavailable`] until the first store (every clone) is dropped.
///
/// Cloning is cheap and shares the open database. Needs a Tokio runtime:
/// writes and scans run on its blocking pool.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SledStore {
    /// Opens (creating it and its parent directories when missing) the sled
    /// database in the directory `path`.
    ///
    /// Blocks while sled recovers its log; from async code call it inside
    /// `tokio::task::spawn_blocking` when the database may be large.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when another process, or another open
    /// `SledStore` in this one, holds the database's lock;
    /// [`StateError::Backend`] when the directory cannot be created or read or
    /// the database is damaged.
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore> {
        let path = path.as_ref().to_path_buf();
        // Every save flushes itself, so no background flusher: without its
        // thread, dropping the store releases the database lock at once.
        let db = sled::Config::new()
            .path(&path)
            .flush_every_ms(None)
            .open()
            .map_err(|e| open_error(&path, e))?;
        let tree = db
            .open_tree(TREE)
            .map_err(|e| sled_error(&path, "open", e))?;
        tracing::debug!(path = %path.display(), states = tree.len(), "opened sled state store");
        Ok(SledStore { db, tree, path })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking sled work (writes with their flush, scans) off the async workers.
    async fn blocking<T, F>(&self, what: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&SledStore) -> Result<T> + Send + 'static,
    {
        // On a multi-thread runtime, run here and let tokio move this worker's
        // other tasks elsewhere (no hop to the blocking pool, which costs more
        // than a small write); a current-thread runtime has nowhere to move
        // them, so it uses the blocking pool.
        if tokio::runtime::Handle::try_current()
            .is_ok_and(|rt| rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        {
            return tokio::task::block_in_place(|| work(self));
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| {
                StateError::backend(
                    BACKEND,
                    format!(
                        "the {what} task on {} did not finish: {e}",
                        self.path.display()
                    ),
                )
            })?
    }

    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| sled_error(&self.path, "flush", e))
    }

    fn save_blocking(
        &self,
        id: &str,
        document: &[u8],
        last_updated: DateTime<Utc>,
        expect: &Precondition,
    ) -> Result<Revision> {
        let revision = self
            .db
            .generate_id()
            .map_err(|e| sled_error(&self.path, "generate a revision in", e))?;
        let new = record::encode(document, last_updated, revision);
        let key = id.as_bytes();
        let swapped = match expect {
            Precondition::Any => {
                self.tree
                    .insert(key, new)
                    .map_err(|e| sled_error(&self.path, "write", e))?;
                Ok(())
            }
            Precondition::Absent => self
                .tree
                .compare_and_swap(key, None::<&[u8]>, Some(new))
                .map_err(|e| sled_error(&self.path, "write", e))?,
            Precondition::Revision(want) => {
                let current = self
                    .tree
                    .get(key)
                    .map_err(|e| sled_error(&self.path, "read", e))?
                    .ok_or_else(|| {
                        StateError::conflict(
                            id,
                            format!("expected revision {want}, but the state was deleted"),
                        )
                    })?;
                let have = parse(&self.path, id, &current)?.revision();
                if &have != want {
                    return Err(StateError::conflict(
                        id,
                        format!("expected revision {want}, found revision {have}"),
                    ));
                }
                self.tree
                    .compare_and_swap(key, Some(current), Some(new))
                    .map_err(|e| sled_error(&self.path, "write", e))?
            }
        };
        if let Err(lost) = swapped {
            let found = match lost.current {
                Some(bytes) => match Record::parse(&bytes) {
                    Ok(r) => format!("found revision {}", r.revision),
                    Err(_) => "found an unreadable value".to_owned(),
                },
                None => "the state was deleted".to_owned(),
            };
            let wanted = match expect {
                Precondition::Revision(want) => format!("expected revision {want}"),
                _ => "expected no stored state".to_owned(),
            };
            return Err(StateError::conflict(id, format!("{wanted}, {found}")));
        }
        self.flush()?;
        Ok(Revision::new(revision.to_string()))
    }

    fn list_blocking(&self) -> Result<Vec<StateEntry>> {
        let mut entries = Vec::new();
        for item in self.tree.iter() {
            let (key, value) = item.map_err(|e| sled_error(&self.path, "scan", e))?;
            if let Some(entry) = list_entry(&self.path, &key, &value) {
                entries.push(entry?);
            }
        }
        Ok(entries)
    }
}

#[async_trait]
impl StateStore for SledStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn load(&self, id: &StateId) -> Result<Stored> {
        // A point read is served from sled's cache or one page read: cheap enough
        // to run inline, and a blocking-pool hop would double its latency.
        let bytes = self
            .tree
            .get(id.as_str())
            .map_err(|e| sled_error(&self.path, "read", e))?
            .ok_or_else(|| StateError::NotFound {
                id: id.to_string(),
                backend: BACKEND,
            })?;
        decode(&self.path, id, &bytes)
    }

    async fn save(&self, state: &ConnectorState, expect: &Precondition) -> Result<Revision> {
        let id = StateId::new(state.id.as_str())?;
        let document = state.to_json();
        let last_updated = state.last_updated;
        let expect = expect.clone();
        self.blocking("save", move |store| {
            store.save_blocking(id.as_str(), &document, last_updated, &expect)
        })
        .await
    }

    async fn delete(&self, id: &StateId) -> Result<bool> {
        let id = id.clone();
        self.blocking("delete", move |store| {
            let removed = store
                .tree
                .remove(id.as_str())
                .map_err(|e| sled_error(&store.path, "delete from", e))?;
            if removed.is_some() {
                store.flush()?;
            }
            Ok(removed.is_some())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<StateEntry>> {
        self.blocking("list", SledStore::list_blocking).await
    }
}

fn location(path: &Path, id: &str) -> String {
    format!("sled database {} key `{id}`", path.display())
}

fn parse<'a>(path: &Path, id: &str, bytes: &'a [u8]) -> Result<Record<'a>> {
    Record::parse(bytes).map_err(|reason| StateError::Corrupt {
        id: id.to_owned(),
        location: location(path, id),
        reason,
    })
}

/// The state stored as `bytes` under `id` in the database at `path`.
pub(crate) fn decode(path: &Path, id: &StateId, bytes: &[u8]) -> Result<Stored> {
    let record = parse(path, id.as_str(), bytes)?;
    // The location is only formatted on the error path: decoding again there
    // gives the same error, naming where the bytes live.
    let state = ConnectorState::from_slice(record.document, id.as_str(), "").or_else(|_| {
        ConnectorState::from_slice(record.document, id.as_str(), &location(path, id.as_str()))
    })?;
    Ok(Stored {
        state,
        revision: record.revision(),
        size_bytes: record.document.len() as u64,
    })
}

/// The listing's entry for `key` holding `value`; `None` for a key that is not a
/// valid state id (skipped with a warning).
pub(crate) fn list_entry(path: &Path, key: &[u8], value: &[u8]) -> Option<Result<StateEntry>> {
    // Only this crate writes the tree, but a foreign key must not become a bogus id.
    let Some(id) = std::str::from_utf8(key)
        .ok()
        .and_then(|k| StateId::new(k).ok())
    else {
        tracing::warn!(path = %path.display(), key = ?key, "skipping a key that is not a valid state id");
        return None;
    };
    Some(
        parse(path, id.as_str(), value)
            .map(|record| StateEntry::new(id, record.last_updated, record.document.len() as u64)),
    )
}

fn open_error(path: &Path, err: sled::Error) -> StateError {
    if let sled::Error::Io(io) = &err
        && is_lock_error(io)
    {
        return StateError::unavailable(
            BACKEND,
            format!(
                "the sled database {} is locked: another process, or another open store in this \
                 process, is using it. Stop that one, or give this one its own `path` ({io})",
                path.display()
            ),
        );
    }
    sled_error(path, "open", err)
}

fn is_lock_error(io: &io::Error) -> bool {
    io.kind() == io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
}

fn sled_error(path: &Path, what: &str, err: sled::Error) -> StateError {
    let path = path.display();
    match err {
        sled::Error::Io(io) if io.kind() == io::ErrorKind::PermissionDenied => StateError::backend(
            BACKEND,
            format!(
                "cannot {what} the sled database {path}: permission denied ({io}); check the directory's owner and mode"
            ),
        ),
        sled::Error::Io(io) => StateError::backend(
            BACKEND,
            format!("cannot {what} the sled database {path}: {io}"),
        ),
        sled::Error::Corruption { at, .. } => StateError::backend(
            BACKEND,
            format!(
                "the sled database {path} is damaged (at {at:?}); restore it from a backup or an \
                 export, or move it away to start from scratch"
            ),
        ),
        other => StateError::backend(
            BACKEND,
            format!("cannot {what} the sled database {path}: {other}"),
        ),
    }
}
