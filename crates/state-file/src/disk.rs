//! The blocking file operations. The store runs them on tokio's blocking pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use state_core::Revision;

use crate::naming::{TEMP_SUFFIX, content_hash};

/// An IO error with the operation and the path it concerned, so every message names the file.
#[derive(Debug)]
pub(crate) struct IoFailure {
    pub(crate) op: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) err: io::Error,
}

/// Attaches the operation and path to an `io::Result`.
pub(crate) trait At<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, IoFailure>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, IoFailure> {
        self.map_err(|err| IoFailure {
            op,
            path: path.to_owned(),
            err,
        })
    }
}

/// One stored version of a file, read through one open file description, so
/// the bytes and the metadata belong to the same version.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) bytes: Vec<u8>,
    pub(crate) revision: Revision,
    /// The file's modification time in nanoseconds since the epoch (see [`revision`]).
    pub(crate) mtime_ns: i128,
}

/// Reads `path`; `None` when it does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<Snapshot>, IoFailure> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).at("open", path),
    };
    let meta = file.metadata().at("stat", path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    file.read_to_end(&mut bytes).at("read", path)?;
    let mtime_ns = mtime_nanos(&meta);
    Ok(Some(Snapshot {
        revision: revision(&bytes, mtime_ns, inode(&meta)),
        bytes,
        mtime_ns,
    }))
}

/// The modification time of `path` in nanoseconds; `None` when it does not exist.
pub(crate) fn stat_mtime(path: &Path) -> Result<Option<i128>, IoFailure> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(mtime_nanos(&meta))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).at("stat", path),
    }
}

/// The revision of one version of a state file.
///
/// A hash of the bytes alone is not enough: saving the same document twice
/// would give the same revision, and a writer holding the first one could then
/// overwrite the second (the ABA problem). The inode number alone is not
/// enough either (freed inodes are reused at once), nor is the modification
/// time as the kernel sets it (it ticks in milliseconds). So every save stamps
/// its file with a modification time strictly later than the one it replaces
/// ([`write_atomic`]); the revision is content hash + that time + inode, and
/// any change to the file, by us or by hand, gives a new revision.
fn revision(bytes: &[u8], mtime_ns: i128, inode: u64) -> Revision {
    Revision::new(format!("{:016x}-{mtime_ns}-{inode}", content_hash(bytes)))
}

fn mtime_nanos(meta: &fs::Metadata) -> i128 {
    match meta.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        },
        Err(_) => 0,
    }
}

fn system_time(nanos: i128) -> SystemTime {
    let magnitude = Duration::from_nanos(u64::try_from(nanos.unsigned_abs()).unwrap_or(u64::MAX));
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

#[cfg(unix)]
fn inode(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &fs::Metadata) -> u64 {
    0
}

/// Temp files are `.state-file-<pid>-<n>.tmp`: hidden, so never listed, and
/// short, so they fit even when the target's name is 255 bytes long.
fn temp_path(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        ".state-file-{}-{n}{TEMP_SUFFIX}",
        std::process::id()
    ))
}

fn create_temp(dir: &Path) -> Result<(File, PathBuf), IoFailure> {
    loop {
        let path = temp_path(dir);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(file) => return Ok((file, path)),
            // A leftover of a killed process that had our pid: take the next name.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err).at("create temp file", &path),
        }
    }
}

/// Replaces `target` with `bytes` atomically and durably: a temp file in the
/// same directory is written, stamped, fsynced and renamed over `target`, then
/// the directory is fsynced so the rename survives a crash. A crash at any
/// point leaves either the old or the new complete file (and maybe a temp file).
///
/// `replaces_mtime` is the modification time of the file being replaced, if
/// any: the new file gets a strictly later one (see [`revision`]).
///
/// The caller holds the store's lock.
pub(crate) fn write_atomic(
    dir: &File,
    dir_path: &Path,
    target: &Path,
    bytes: &[u8],
    replaces_mtime: Option<i128>,
) -> Result<Revision, IoFailure> {
    let (file, temp) = create_temp(dir_path)?;
    let written = write_stamped(file, &temp, bytes, replaces_mtime).and_then(|revision| {
        fs::rename(&temp, target)
            .at("rename", target)
            .map(|()| revision)
    });
    match written {
        Ok(revision) => {
            dir.sync_all().at("fsync the directory", dir_path)?;
            Ok(revision)
        }
        Err(failure) => {
            if let Err(err) = fs::remove_file(&temp) {
                tracing::warn!(path = %temp.display(), %err, "could not remove a temp file after a failed save");
            }
            Err(failure)
        }
    }
}

fn write_stamped(
    mut file: File,
    path: &Path,
    bytes: &[u8],
    replaces_mtime: Option<i128>,
) -> Result<Revision, IoFailure> {
    file.write_all(bytes).at("write", path)?;
    let now = mtime_nanos_of_now();
    let mut stamped = None;
    // Nanosecond timestamps make the first step enough; coarser file systems
    // (FAT: 2 s) round it away, so step further until the stored time moves.
    for step in [1, 1_000, 1_000_000, 1_000_000_000, 2_000_000_000] {
        let want = replaces_mtime.map_or(now, |old| now.max(old + step));
        file.set_modified(system_time(want))
            .at("set the modification time of", path)?;
        let meta = file.metadata().at("stat", path)?;
        let got = mtime_nanos(&meta);
        if replaces_mtime.is_none_or(|old| got > old) {
            stamped = Some((got, inode(&meta)));
            break;
        }
    }
    let Some((mtime_ns, ino)) = stamped else {
        return Err(io::Error::other(
            "the file system does not store a modification time later than the previous save's, \
             which the file store needs to tell saves apart; use a local file system",
        ))
        .at("stamp", path);
    };
    file.sync_all().at("fsync", path)?;
    Ok(revision(bytes, mtime_ns, ino))
}

fn mtime_nanos_of_now() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(_) => 0,
    }
}

/// Removes `target`; `false` when it did not exist. Durable like [`write_atomic`].
pub(crate) fn remove(dir: &File, dir_path: &Path, target: &Path) -> Result<bool, IoFailure> {
    match fs::remove_file(target) {
        Ok(()) => {
            dir.sync_all().at("fsync the directory", dir_path)?;
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).at("remove", target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_round_trips_nanos() {
        for nanos in [0i128, 1, 1_705_314_600_123_456_789, -5_000_000_001] {
            let t = system_time(nanos);
            let back = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            };
            assert_eq!(back, nanos);
        }
    }
}
