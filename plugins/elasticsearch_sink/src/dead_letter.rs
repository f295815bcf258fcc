//! Documents that failed for good: one JSON line each, appended and fsynced.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::value::RawValue;

/// One document the sink could not index.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The runtime's id of this sink connector.
    pub plugin_id: u32,
    /// Where the message came from.
    pub stream: String,
    /// Where the message came from.
    pub topic: String,
    /// Where the message came from.
    pub partition_id: u32,
    /// The message's offset in its partition (`None` if it could not be matched).
    pub offset: Option<u64>,
    /// The document `_id` it was indexed under.
    pub id: String,
    /// The target index.
    pub index: String,
    /// The item's HTTP status, when the server answered for it.
    pub status: Option<u16>,
    /// The server's error object (JSON text) or what went wrong.
    pub error: String,
    /// `_bulk` calls that carried it (0: refused before sending).
    pub attempts: u32,
    /// The document: JSON when it is JSON, else its bytes as lossy UTF-8 text.
    pub document: Document,
}

/// The failed document's content.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Document {
    /// A JSON document, as it was sent.
    Json(Box<RawValue>),
    /// Not JSON: its bytes as (lossy UTF-8) text.
    Text(String),
}

impl Document {
    /// The document for `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Box<RawValue>>(bytes) {
            Ok(raw) => Document::Json(raw),
            Err(_) => Document::Text(String::from_utf8_lossy(bytes).into_owned()),
        }
    }
}

impl DeadLetter {
    /// The JSON line written for it (without the newline).
    pub fn to_line(&self) -> String {
        // Strings, numbers and an already-valid raw value always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Appends `letters` to `path` (created with mode 0600 if missing) and fsyncs it:
/// when this returns `Ok` they are on disk.
pub fn append(path: &Path, letters: &[DeadLetter]) -> std::io::Result<()> {
    let mut text = String::new();
    for letter in letters {
        text.push_str(&letter.to_line());
        text.push('\n');
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(document: &[u8]) -> DeadLetter {
        DeadLetter {
            plugin_id: 2,
            stream: "s".into(),
            topic: "t".into(),
            partition_id: 1,
            offset: Some(41),
            id: "doc-1".into(),
            index: "copy".into(),
            status: Some(400),
            error: r#"{"type":"mapper_parsing_exception"}"#.into(),
            attempts: 1,
            document: Document::of(document),
        }
    }

    #[test]
    fn a_line_names_the_document_and_keeps_it() {
        let line = letter(br#"{"n":"x"}"#).to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["id"], "doc-1");
        assert_eq!(v["offset"], 41);
        assert_eq!(v["status"], 400);
        assert_eq!(v["document"], serde_json::json!({"n": "x"}));
        let text = letter(b"not json").to_line();
        assert!(text.contains(r#""document":"not json""#), "{text}");
    }

    #[test]
    fn append_adds_lines_and_keeps_earlier_ones() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("dead.jsonl");
        append(&path, &[letter(b"{}")]).unwrap_or_else(|e| unreachable!("{e}"));
        append(&path, &[letter(b"{}"), letter(b"{}")]).unwrap_or_else(|e| unreachable!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(text.lines().count(), 3);
    }
}
