#![doc = include_str!("../README.md")]

mod disk;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod naming;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use state_core::{
    ConnectorState, Precondition, Result, Revision, StateEntry, StateError, StateId, StateStore,
    Stored, async_trait, check_precondition,
};

use crate::disk::{At, IoFailure};

const BACKEND: &str = "file";

/// The name of the lock file inside the base directory.
pub const LOCK_FILE_NAME: &str = ".lock";

/// A [`StateStore`] keeping one pretty JSON file per state in a directory.
///
/// Cheap to clone: clones share the directory handle and the lock. Several
/// `FileStore`s, in one process or in several, may use one directory: saves
/// and deletes take an exclusive lock on `<base_path>/.lock`, so a
/// compare-and-set save never loses an update to another writer.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: PathBuf,
    /// Held for writing: the mutex orders this process's writers (a `flock`
    /// does not exclude users of the same open file), the file lock orders processes.
    lock: Mutex<File>,
    lock_path: PathBuf,
    /// The base directory, opened once to fsync it after each rename.
    dir: File,
}

impl FileStore {
    /// A store in `base_path`, which is created (with its parents) if missing.
    ///
    /// Does a little blocking IO: creating the directory, opening the lock
    /// file, and removing temp files a killed writer left behind (only when no
    /// other writer holds the lock, so a save in progress is never disturbed).
    pub fn new(base_path: impl Into<PathBuf>) -> Result<Self> {
        let base = base_path.into();
        if base.as_os_str().is_empty() {
            return Err(StateError::invalid_config(
                "state.storage_config.base_path",
                "it is empty; give the directory to keep state files in",
            ));
        }
        fs::create_dir_all(&base).map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
                StateError::invalid_config(
                    "state.storage_config.base_path",
                    format!(
                        "{} (or one of its parents) exists and is not a directory: {err}",
                        base.display()
                    ),
                )
            }
            _ => to_state_error(IoFailure {
                op: "create the state directory",
                path: base.clone(),
                err,
            }),
        })?;
        let dir = File::open(&base)
            .at("open the state directory", &base)
            .map_err(to_state_error)?;
        let lock_path = base.join(LOCK_FILE_NAME);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let lock = options
            .open(&lock_path)
            .at("open the lock file", &lock_path)
            .map_err(to_state_error)?;
        let store = FileStore {
            inner: Arc::new(Inner {
                base,
                lock: Mutex::new(lock),
                lock_path,
                dir,
            }),
        };
        store.inner.remove_stale_temp_files();
        Ok(store)
    }

    /// The directory holding the state files.
    pub fn base_path(&self) -> &Path {
        &self.inner.base
    }

    /// The file holding `id`: `<base_path>/<id>.json`, or for ids of 251 bytes
    /// and more (whose `<id>.json` would exceed the 255-byte file name limit)
    /// `<base_path>/<first 232 bytes of id>..<16 hex digits of hash>.json`.
    pub fn path_of(&self, id: &StateId) -> PathBuf {
        self.inner.path_of(id)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| {
                StateError::backend(BACKEND, format!("a file store IO task did not finish: {e}"))
            })?
    }
}

impl Inner {
    fn path_of(&self, id: &StateId) -> PathBuf {
        self.base.join(naming::file_name(id.as_str()))
    }

    /// Takes this process's mutex, then the cross-process file lock.
    fn lock(&self) -> Result<WriteLock<'_>> {
        // A panic while holding the mutex cannot leave anything half-done: the
        // files themselves are only ever replaced by rename.
        let file = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        file.lock()
            .at("lock", &self.lock_path)
            .map_err(to_state_error)?;
        Ok(WriteLock {
            file,
            path: &self.lock_path,
        })
    }

    fn remove_stale_temp_files(&self) {
        let file = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if file.try_lock().is_err() {
            // Another writer is active; a later start will clean up.
            return;
        }
        let guard = WriteLock {
            file,
            path: &self.lock_path,
        };
        let entries = match fs::read_dir(&self.base) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(dir = %self.base.display(), %err, "could not look for stale temp files");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(naming::is_temp_file_name) {
                // Writers only create temp files while holding the lock we hold: this one is stale.
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => tracing::debug!(path = %path.display(), "removed a stale temp file"),
                    Err(err) => {
                        tracing::warn!(path = %path.display(), %err, "could not remove a stale temp file")
                    }
                }
            }
        }
        drop(guard);
    }

    fn load(&self, id: &StateId) -> Result<Stored> {
        let path = self.path_of(id);
        let snapshot =
            disk::read(&path)
                .map_err(to_state_error)?
                .ok_or_else(|| StateError::NotFound {
                    id: id.to_string(),
                    backend: BACKEND,
                })?;
        let state = decode(&snapshot.bytes, id, &path)?;
        Ok(Stored {
            state,
            revision: snapshot.revision,
            size_bytes: snapshot.bytes.len() as u64,
        })
    }

    fn save(&self, id: &StateId, bytes: &[u8], expect: &Precondition) -> Result<Revision> {
        let path = self.path_of(id);
        let _lock = self.lock()?;
        let replaces_mtime = match expect {
            // Only the modification time is needed, to stamp the new file later.
            Precondition::Any => disk::stat_mtime(&path).map_err(to_state_error)?,
            Precondition::Absent | Precondition::Revision(_) => {
                let current = disk::read(&path).map_err(to_state_error)?;
                if let Err(conflict) =
                    check_precondition(id.as_str(), current.as_ref().map(|c| &c.revision), expect)
                {
                    // A corrupt file is reported as such: only `Any` may replace it.
                    if let Some(current) = &current {
                        decode(&current.bytes, id, &path)?;
                    }
                    return Err(conflict);
                }
                current.map(|c| c.mtime_ns)
            }
        };
        let revision = disk::write_atomic(&self.dir, &self.base, &path, bytes, replaces_mtime)
            .map_err(to_state_error)?;
        tracing::trace!(state_id = %id, path = %path.display(), %revision, "saved state");
        Ok(revision)
    }

    fn delete(&self, id: &StateId) -> Result<bool> {
        let path = self.path_of(id);
        let _lock = self.lock()?;
        disk::remove(&self.dir, &self.base, &path).map_err(to_state_error)
    }

    fn list(&self) -> Result<Vec<StateEntry>> {
        let entries = fs::read_dir(&self.base)
            .at("list", &self.base)
            .map_err(to_state_error)?;
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.at("list", &self.base).map_err(to_state_error)?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| naming::is_state_file_name(n)) else {
                continue;
            };
            let path = entry.path();
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                // Deleted since the directory was read.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) if err.kind() == io::ErrorKind::IsADirectory => {
                    tracing::warn!(path = %path.display(), "skipping a directory named like a state file");
                    continue;
                }
                Err(err) => {
                    return Err(to_state_error(IoFailure {
                        op: "read",
                        path,
                        err,
                    }));
                }
            };
            match listed_entry(name, &bytes, &path) {
                Ok(listed_entry) => listed.push(listed_entry),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "skipping a state file that cannot be listed")
                }
            }
        }
        Ok(listed)
    }
}

/// Decodes a state file, checking that it holds the state it is named for.
fn decode(bytes: &[u8], id: &StateId, path: &Path) -> Result<ConnectorState> {
    let location = path.display().to_string();
    let state = ConnectorState::from_slice(bytes, id.as_str(), &location)?;
    if state.id != id.as_str() {
        return Err(StateError::Corrupt {
            id: id.to_string(),
            location,
            reason: format!(
                "the file holds the state of id {:?}, not {:?} (was it copied or renamed? \
                 set its `id` to match the file name)",
                state.id,
                id.as_str()
            ),
        });
    }
    Ok(state)
}

/// The list entry of one state file, if it is a valid state stored under its own name.
fn listed_entry(name: &str, bytes: &[u8], path: &Path) -> Result<StateEntry> {
    let location = path.display().to_string();
    let stem = name.strip_suffix(naming::EXTENSION).unwrap_or(name);
    let state = ConnectorState::from_slice(bytes, stem, &location)?;
    let id = StateId::new(state.id.as_str())?;
    if naming::file_name(id.as_str()) != name {
        return Err(StateError::Corrupt {
            id: id.to_string(),
            location,
            reason: format!(
                "the state of id {id:?} belongs in {}",
                naming::file_name(id.as_str())
            ),
        });
    }
    Ok(StateEntry::new(id, state.last_updated, bytes.len() as u64))
}

/// Releases the cross-process lock, then the mutex, when dropped.
struct WriteLock<'a> {
    file: MutexGuard<'a, File>,
    path: &'a Path,
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.file.unlock() {
            // Closing the file would release it; ours stays open, so say so.
            tracing::warn!(path = %self.path.display(), %err, "could not release the state lock");
        }
    }
}

/// Maps an IO failure by whether retrying can help; the message names the path.
fn to_state_error(failure: IoFailure) -> StateError {
    let IoFailure { op, path, err } = failure;
    let what = format!("cannot {op} {}: {err}", path.display());
    match err.kind() {
        io::ErrorKind::PermissionDenied => StateError::backend(
            BACKEND,
            format!(
                "{what}; give the user running the connector read and write access to it and its directory"
            ),
        ),
        io::ErrorKind::ReadOnlyFilesystem => StateError::backend(
            BACKEND,
            format!(
                "{what}; the file system is read-only, choose a writable state.storage_config.base_path"
            ),
        ),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StateError::unavailable(
            BACKEND,
            format!("{what}; free some disk space and the next save will succeed"),
        ),
        io::ErrorKind::Interrupted
        | io::ErrorKind::TimedOut
        | io::ErrorKind::WouldBlock
        | io::ErrorKind::ResourceBusy => StateError::unavailable(BACKEND, what),
        _ if is_out_of_file_handles(&err) => StateError::unavailable(
            BACKEND,
            format!("{what}; too many open files, retry later or raise the limit"),
        ),
        _ => StateError::backend(BACKEND, what),
    }
}

#[cfg(unix)]
fn is_out_of_file_handles(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(not(unix))]
fn is_out_of_file_handles(_err: &io::Error) -> bool {
    false
}

#[async_trait]
impl StateStore for FileStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn load(&self, id: &StateId) -> Result<Stored> {
        // A load is one small read, usually from the page cache: handing it to
        // the blocking pool and back costs several times the read itself. On a
        // multi-thread runtime, run it here and let tokio move this worker's
        // other tasks elsewhere meanwhile; a current-thread runtime has no
        // other worker to move them to, so it uses the blocking pool.
        if tokio::runtime::Handle::try_current()
            .is_ok_and(|rt| rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        {
            return tokio::task::block_in_place(|| self.inner.load(id));
        }
        let id = id.clone();
        self.blocking(move |inner| inner.load(&id)).await
    }

    async fn save(&self, state: &ConnectorState, expect: &Precondition) -> Result<Revision> {
        let id = StateId::new(state.id.as_str())?;
        let bytes = state.to_pretty_json();
        let expect = expect.clone();
        self.blocking(move |inner| inner.save(&id, &bytes, &expect))
            .await
    }

    async fn delete(&self, id: &StateId) -> Result<bool> {
        let id = id.clone();
        self.blocking(move |inner| inner.delete(&id)).await
    }

    async fn list(&self) -> Result<Vec<StateEntry>> {
        self.blocking(Inner::list).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_by_whether_retrying_helps() {
        let at = |kind: io::ErrorKind| IoFailure {
            op: "write",
            path: PathBuf::from("/states/c1.json"),
            err: io::Error::from(kind),
        };
        let denied = to_state_error(at(io::ErrorKind::PermissionDenied));
        assert!(matches!(denied, StateError::Backend { .. }), "{denied:?}");
        assert!(denied.to_string().contains("/states/c1.json"), "{denied}");
        let full = to_state_error(at(io::ErrorKind::StorageFull));
        assert!(full.is_retryable(), "{full:?}");
        assert!(full.to_string().contains("/states/c1.json"), "{full}");
        assert!(!to_state_error(at(io::ErrorKind::ReadOnlyFilesystem)).is_retryable());
        let emfile = IoFailure {
            op: "open",
            path: PathBuf::from("/states/c1.json"),
            err: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert!(to_state_error(emfile).is_retryable());
    }
}
