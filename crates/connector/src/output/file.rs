//! `kind = "file"` (JSON lines, fsynced before the acknowledgement) and `kind = "stdout"`.
//!
//! The file only ever ends in whole lines: a batch whose write or fsync fails is cut
//! off again (truncated back to the length before it, fsynced), so the retry writes
//! it once and whole; a half line left by a crash mid-write (never acknowledged, so
//! read and sent again) is cut when the file is opened.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Output, OutputError};
use crate::message::Message;

/// What the file output writes through: the file itself, or (in tests) a wrapper
/// that fails part-way like a full disk. Writes go through `io::Write`; the
/// length, truncation and fsync through the file underneath.
pub(crate) trait Appender: io::Write + Send + fmt::Debug {
    /// The file written (opened for appending).
    fn file(&self) -> &File;
}

impl Appender for File {
    fn file(&self) -> &File {
        self
    }
}

/// Appends one JSON line per message to a file and fsyncs before acknowledging.
#[derive(Debug, Clone)]
pub struct FileOutput {
    path: PathBuf,
    file: Arc<Mutex<Lines>>,
}

/// The file and what is known of its end.
#[derive(Debug)]
struct Lines {
    writer: Box<dyn Appender>,
    /// Set when a failed batch could not be cut off: the length to truncate back
    /// to before anything else is written.
    cut_to: Option<u64>,
}

impl Lines {
    /// Writes `buf` (whole lines) and fsyncs; on failure truncates the file back
    /// to its length before, so no part of `buf` stays.
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let end = match self.cut_to {
            Some(end) => {
                truncate(self.writer.file(), end)?;
                self.cut_to = None;
                end
            }
            None => self.writer.file().metadata()?.len(),
        };
        let written = self
            .writer
            .write_all(buf)
            .and_then(|()| self.writer.file().sync_data());
        if let Err(e) = written {
            if let Err(undo) = truncate(self.writer.file(), end) {
                tracing::warn!(error = %undo, length = end, "cannot cut the failed batch off the file yet; retried before the next write");
                self.cut_to = Some(end);
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Truncates `file` to `len` bytes, durably.
fn truncate(file: &File, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

/// The length of `file` up to and including its last newline.
fn whole_lines_end(mut file: &File) -> io::Result<u64> {
    let mut end = file.metadata()?.len();
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl FileOutput {
    /// Opens (creating it and its parent directories if missing) `path` for appending.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, OutputError> {
        Self::open_with(path, |file| Box::new(file))
    }

    /// [`FileOutput::open`], writing through what `wrap` makes of the opened file.
    pub(crate) fn open_with(
        path: impl Into<PathBuf>,
        wrap: impl FnOnce(File) -> Box<dyn Appender>,
    ) -> Result<Self, OutputError> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| refused(&path, format!("cannot create {}: {e}", parent.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| refused(&path, format!("cannot open: {e}")))?;
        let cut =
            |e: io::Error| refused(&path, format!("cannot cut its half-written last line: {e}"));
        let len = file.metadata().map_err(cut)?.len();
        let end = whole_lines_end(&file).map_err(cut)?;
        if end < len {
            // A crash in the middle of a write: that batch was never acknowledged.
            truncate(&file, end).map_err(cut)?;
            tracing::warn!(path = %path.display(), bytes = len - end, "cut a half-written last line (a write interrupted by a crash; its batch is sent again)");
        }
        Ok(FileOutput {
            path,
            file: Arc::new(Mutex::new(Lines {
                writer: wrap(file),
                cut_to: None,
            })),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn refused(path: &Path, reason: String) -> OutputError {
    OutputError::Refused {
        output: format!("file {}", path.display()),
        reason,
    }
}

fn render(batch: &[Message]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.len() * 256);
    for m in batch {
        m.write_json_line(&mut buf);
    }
    buf
}

#[async_trait]
impl Output for FileOutput {
    async fn send(&mut self, batch: &[Message]) -> Result<(), OutputError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.append(render(batch)).await
    }

    /// The write runs on a blocking thread that would finish anyway.
    fn cancel_on_stop(&self) -> bool {
        false
    }
}

impl FileOutput {
    /// Appends `buf` (whole lines) and fsyncs. On failure nothing of `buf` stays
    /// in the file (it is truncated back), so appending it again writes it once.
    pub async fn append(&self, buf: Vec<u8>) -> Result<(), OutputError> {
        let file = self.file.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            file.lock().unwrap_or_else(|p| p.into_inner()).append(&buf)
        })
        .await
        .map_err(|e| OutputError::Unavailable {
            output: format!("file {}", path.display()),
            reason: e.to_string(),
        })?
        .map_err(|e| OutputError::Unavailable {
            output: format!("file {}", path.display()),
            reason: e.to_string(),
        })
    }
}

/// Writes the same JSON lines to standard output, flushed before acknowledging.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutOutput;

#[async_trait]
impl Output for StdoutOutput {
    async fn send(&mut self, batch: &[Message]) -> Result<(), OutputError> {
        let buf = render(batch);
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)
            .and_then(|()| out.flush())
            .map_err(|e| OutputError::Unavailable {
                output: "stdout".into(),
                reason: e.to_string(),
            })
    }

    fn cancel_on_stop(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[tokio::test]
    async fn file_output_appends_json_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("out/docs.jsonl");
        let msg = |i: i64| {
            let payload =
                RawValue::from_string(format!("{{\"n\":{i}}}")).unwrap_or_else(|e| panic!("{e}"));
            Message::new("logs", &i.to_string(), Some(i), None, payload)
        };
        let mut out = FileOutput::open(&path).unwrap_or_else(|e| panic!("{e}"));
        out.send(&[msg(1), msg(2)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut again = FileOutput::open(&path).unwrap_or_else(|e| panic!("{e}"));
        again
            .send(&[msg(3)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_default())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["payload"]["n"], 3);
        assert_eq!(lines[0]["headers"]["es_id"], "1");
    }

    fn message(i: i64) -> Message {
        let payload =
            RawValue::from_string(format!("{{\"n\":{i}}}")).unwrap_or_else(|e| panic!("{e}"));
        Message::new("logs", &i.to_string(), Some(i), None, payload)
    }

    /// The file's lines, each of which must be a whole JSON document.
    fn parsed_lines(path: &Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "the file ends in a half-written line: {:?}",
            &text[text.rfind('\n').map_or(0, |i| i + 1)..]
        );
        text.lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("unparsable line {l:?}: {e}"))
            })
            .collect()
    }

    /// A real file whose writes fail like a full disk once `room` more bytes were
    /// written: the write in progress is cut short, later ones fail at once.
    #[derive(Debug)]
    struct DiskFillsUp {
        file: File,
        room: Arc<Mutex<usize>>,
    }

    impl io::Write for DiskFillsUp {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut room = self.room.lock().unwrap_or_else(|p| p.into_inner());
            if *room == 0 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            let n = self.file.write(&buf[..buf.len().min(*room)])?;
            *room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl Appender for DiskFillsUp {
        fn file(&self) -> &File {
            &self.file
        }
    }

    #[tokio::test]
    async fn a_write_failing_part_way_is_undone_so_the_retry_writes_the_batch_once_and_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("docs.jsonl");
        let room = Arc::new(Mutex::new(usize::MAX));
        let disk = room.clone();
        let mut out = FileOutput::open_with(&path, move |file| {
            Box::new(DiskFillsUp { file, room: disk })
        })
        .unwrap_or_else(|e| panic!("{e}"));
        out.send(&[message(1)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The disk fills up in the middle of the second batch's first line.
        *room.lock().unwrap_or_else(|p| p.into_inner()) = 10;
        let batch = [message(2), message(3)];
        let failed = out.send(&batch).await;
        assert!(
            matches!(&failed, Err(e) if e.is_retryable()),
            "a full disk is worth retrying: {failed:?}"
        );
        assert_eq!(
            parsed_lines(&path).len(),
            1,
            "the failed batch left nothing behind"
        );
        // Space again: the run loop sends the same batch again.
        *room.lock().unwrap_or_else(|p| p.into_inner()) = usize::MAX;
        out.send(&batch).await.unwrap_or_else(|e| panic!("{e}"));
        let ns: Vec<i64> = parsed_lines(&path)
            .iter()
            .map(|l| l["payload"]["n"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(ns, [1, 2, 3], "every document once, in order");
    }

    #[tokio::test]
    async fn a_half_line_left_by_a_crash_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("docs.jsonl");
        let whole = message(1).to_json_line() + "\n";
        let half = &message(2).to_json_line()[..20];
        std::fs::write(&path, format!("{whole}{half}")).unwrap_or_else(|e| panic!("{e}"));
        // Never acknowledged (the crash came before the fsync): read again and re-sent.
        let mut out = FileOutput::open(&path).unwrap_or_else(|e| panic!("{e}"));
        out.send(&[message(2)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ns: Vec<i64> = parsed_lines(&path)
            .iter()
            .map(|l| l["payload"]["n"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(ns, [1, 2]);
    }

    #[test]
    fn unopenable_path_is_refused_naming_it() {
        let err = FileOutput::open("/proc/definitely/not/here.jsonl")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/proc/definitely/not"), "{err}");
    }
}
