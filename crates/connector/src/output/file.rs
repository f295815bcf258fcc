//! `kind = "file"` (JSON lines, fsynced before the acknowledgement) and `kind = "stdout"`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Output, OutputError};
use crate::message::Message;

/// Appends one JSON line per message to a file and fsyncs before acknowledging.
#[derive(Debug, Clone)]
pub struct FileOutput {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl FileOutput {
    /// Opens (creating it and its parent directories if missing) `path` for appending.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, OutputError> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| refused(&path, format!("cannot create {}: {e}", parent.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| refused(&path, format!("cannot open: {e}")))?;
        Ok(FileOutput {
            path,
            file: Arc::new(Mutex::new(file)),
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
        buf.extend_from_slice(m.to_json_line().as_bytes());
        buf.push(b'\n');
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
}

impl FileOutput {
    /// Appends `buf` (whole lines) and fsyncs.
    pub async fn append(&self, buf: Vec<u8>) -> Result<(), OutputError> {
        let file = self.file.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(&buf).and_then(|()| file.sync_data())
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

    #[test]
    fn unopenable_path_is_refused_naming_it() {
        let err = FileOutput::open("/proc/definitely/not/here.jsonl")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/proc/definitely/not"), "{err}");
    }
}
