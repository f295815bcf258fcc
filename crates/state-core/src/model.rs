//! The state document, field for field as in the connector documentation's
//! "State File Format", plus whatever fields a newer writer added (kept, and
//! written back unchanged).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, StateError};

/// The newest state document format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// One connector's persisted state.
///
/// Unknown fields at any level are kept in the `extra` maps, so a document
/// written by a newer release survives a load/save round-trip of this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorState {
    /// The state id (also the storage key).
    pub id: String,
    /// When the state was last saved.
    pub last_updated: DateTime<Utc>,
    /// Format version of the document ([`FORMAT_VERSION`] when written by this build).
    pub version: u64,
    /// Processing progress, errors and statistics.
    #[serde(default)]
    pub data: StateData,
    /// What the state belongs to.
    #[serde(default)]
    pub metadata: StateMetadata,
    /// Fields this build does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Processing state, error tracking and statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateData {
    /// When the last successful poll ended (empty or not).
    #[serde(default)]
    pub last_poll_timestamp: Option<DateTime<Utc>>,
    /// Documents committed in total: acknowledged by the output (or found
    /// already there) and recorded in the cursor.
    #[serde(default)]
    pub total_documents_fetched: u64,
    /// Polls executed: successful ones (`processing_stats.successful_polls_count`)
    /// plus failed ones.
    #[serde(default)]
    pub poll_count: u64,
    /// `_id` of the last committed document (whatever the pagination).
    #[serde(default)]
    pub last_document_id: Option<String>,
    /// The scroll the last committed page was read with (scroll pagination),
    /// while that scroll is open; `None` once it is closed (end of a pass, an
    /// error, close, a restart: a new scroll starts from the cursor).
    #[serde(default)]
    pub last_scroll_id: Option<String>,
    /// The position in the current pass after the last committed document:
    /// documents committed since the pass began (a pass reads from the stored
    /// cursor to the end; the next one, after an empty poll or a restart, starts
    /// at 0).
    #[serde(default)]
    pub last_offset: u64,
    /// Errors met in total: failed polls, failed output sends and failed state saves.
    #[serde(default)]
    pub error_count: u64,
    /// The last error message.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Performance statistics.
    #[serde(default)]
    pub processing_stats: ProcessingStats,
    /// Fields this build does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl StateData {
    /// The JSON value of field `name` as the state document holds it (`Null` when
    /// absent), serialising that field only: what `tracked_fields` compares on
    /// every update, without serialising the rest (such as a large
    /// `seen_at_cursor`).
    pub fn field(&self, name: &str) -> Value {
        fn json(v: impl Serialize) -> Value {
            serde_json::to_value(v).unwrap_or(Value::Null)
        }
        match name {
            "last_poll_timestamp" => json(self.last_poll_timestamp),
            "total_documents_fetched" => json(self.total_documents_fetched),
            "poll_count" => json(self.poll_count),
            "last_document_id" => json(&self.last_document_id),
            "last_scroll_id" => json(&self.last_scroll_id),
            "last_offset" => json(self.last_offset),
            "error_count" => json(self.error_count),
            "last_error" => json(&self.last_error),
            "processing_stats" => json(&self.processing_stats),
            other => self.extra.get(other).cloned().unwrap_or(Value::Null),
        }
    }
}

/// Performance statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessingStats {
    /// `_source` bytes of the committed documents, in total.
    #[serde(default)]
    pub total_bytes_processed: u64,
    /// Mean time spent on one committed batch, in milliseconds: reading it (the
    /// search requests and building its messages) plus delivering it (from being
    /// handed out by the poll until its commit, the state save excluded).
    #[serde(default)]
    pub avg_batch_processing_time_ms: f64,
    /// When the last successful poll ended (as `last_poll_timestamp`).
    #[serde(default)]
    pub last_successful_poll: Option<DateTime<Utc>>,
    /// Successful polls that found no documents (caught up).
    #[serde(default)]
    pub empty_polls_count: u64,
    /// Polls that succeeded, empty or not.
    #[serde(default)]
    pub successful_polls_count: u64,
    /// Fields this build does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What the state belongs to. `url` never carries credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateMetadata {
    /// e.g. `elasticsearch_source`.
    #[serde(default)]
    pub connector_type: String,
    /// The connector's numeric id.
    #[serde(default)]
    pub connector_id: u64,
    /// The index or index pattern read.
    #[serde(default)]
    pub index: String,
    /// The cluster URL, without userinfo.
    #[serde(default)]
    pub url: String,
    /// Fields this build does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ConnectorState {
    /// A fresh state: nothing processed yet.
    pub fn new(id: impl Into<String>) -> Self {
        ConnectorState {
            id: id.into(),
            last_updated: Utc::now(),
            version: u64::from(FORMAT_VERSION),
            data: StateData::default(),
            metadata: StateMetadata::default(),
            extra: Map::new(),
        }
    }

    /// Decodes a stored document. `location` names where the bytes came from
    /// (a path, a key) and appears in the error.
    ///
    /// Refuses documents of a newer format version with
    /// [`StateError::UnsupportedVersion`] and anything unreadable with
    /// [`StateError::Corrupt`].
    pub fn from_slice(bytes: &[u8], id: &str, location: &str) -> Result<Self> {
        match serde_json::from_slice::<ConnectorState>(bytes) {
            Ok(state) => {
                check_version(state.version, id, location)?;
                Ok(state)
            }
            Err(parse_err) => {
                // A newer format may have changed the shape: report the version, not the shape.
                if let Ok(value) = serde_json::from_slice::<Value>(bytes)
                    && let Some(found) = value.get("version").and_then(Value::as_u64)
                {
                    check_version(found, id, location)?;
                }
                Err(StateError::Corrupt {
                    id: id.to_owned(),
                    location: location.to_owned(),
                    reason: describe_parse_error(&parse_err, bytes.len()),
                })
            }
        }
    }

    /// Decodes a state from a JSON value (an import), with the same checks as [`Self::from_slice`].
    pub fn from_value(value: Value, location: &str) -> Result<Self> {
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("<no id>")
            .to_owned();
        if let Some(found) = value.get("version").and_then(Value::as_u64) {
            check_version(found, &id, location)?;
        }
        serde_json::from_value(value).map_err(|e| StateError::Corrupt {
            id,
            location: location.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The pretty JSON document, as stored by the file backend and shown by `state show`.
    pub fn to_pretty_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The compact JSON document, as stored by the network backends.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The document as a JSON value (an export).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn check_version(found: u64, id: &str, location: &str) -> Result<()> {
    if found > u64::from(FORMAT_VERSION) {
        return Err(StateError::UnsupportedVersion {
            id: id.to_owned(),
            location: location.to_owned(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    if found == 0 {
        return Err(StateError::Corrupt {
            id: id.to_owned(),
            location: location.to_owned(),
            reason: "format version 0 does not exist (the first is 1)".into(),
        });
    }
    Ok(())
}

fn describe_parse_error(err: &serde_json::Error, len: usize) -> String {
    if len == 0 {
        "it is empty (0 bytes), probably truncated".into()
    } else if err.is_eof() {
        format!("it ends early after {len} bytes, probably truncated ({err})")
    } else {
        format!("it is not a valid state document ({err})")
    }
}

/// Formats a timestamp the way the documentation shows it: RFC 3339, UTC, `Z`,
/// fractional seconds only when present.
pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verbatim from the connector documentation, "State File Format".
    const DOC_FIXTURE: &str = include_str!("../tests/fixtures/documented_state.json");

    #[test]
    fn a_field_reads_as_the_state_document_holds_it() {
        let mut state = ConnectorState::from_slice(DOC_FIXTURE.as_bytes(), "fixture", "fixture")
            .unwrap_or_else(|e| panic!("{e}"));
        state.data.last_error = Some("boom".into());
        state
            .data
            .extra
            .insert("cursor".into(), serde_json::json!({"sort": [1, 2]}));
        let document = serde_json::to_value(&state.data).unwrap_or_else(|e| panic!("{e}"));
        let names = crate::config::TRACKABLE_FIELDS.iter().copied();
        for name in names.chain(["cursor", "absent"]) {
            assert_eq!(
                state.data.field(name),
                document.get(name).cloned().unwrap_or(Value::Null),
                "{name}"
            );
        }
    }

    #[test]
    fn documented_state_round_trips_exactly() {
        let state = ConnectorState::from_slice(DOC_FIXTURE.as_bytes(), "fixture", "fixture")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.id, "elasticsearch_logs_connector");
        assert_eq!(state.data.total_documents_fetched, 15000);
        assert_eq!(
            state.data.processing_stats.avg_batch_processing_time_ms,
            125.5
        );
        assert_eq!(state.metadata.index, "logs-*");
        let written = String::from_utf8(state.to_pretty_json()).unwrap_or_default();
        assert_eq!(written, DOC_FIXTURE.trim_end());
    }

    #[test]
    fn unknown_fields_survive_at_every_level() {
        let mut v: Value = serde_json::from_str(DOC_FIXTURE).unwrap_or_default();
        v["cursor"] = serde_json::json!({"sort": [1705314600000u64, "doc_12345"]});
        v["data"]["future_counter"] = 7.into();
        v["data"]["processing_stats"]["p99_ms"] = 12.5.into();
        v["metadata"]["region"] = "eu-west-1".into();
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        let state = ConnectorState::from_slice(&bytes, "x", "x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.to_value(), v);
    }

    #[test]
    fn newer_version_is_refused_not_rewritten() {
        let newer = DOC_FIXTURE.replace("\"version\": 1", "\"version\": 2");
        match ConnectorState::from_slice(newer.as_bytes(), "c", "/tmp/c.json") {
            Err(StateError::UnsupportedVersion {
                found: 2,
                supported: 1,
                location,
                ..
            }) => {
                assert_eq!(location, "/tmp/c.json")
            }
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
        // Even when the newer shape does not parse as this version's struct.
        let reshaped = r#"{"id":"c","version":3,"data":"packed"}"#;
        assert!(matches!(
            ConnectorState::from_slice(reshaped.as_bytes(), "c", "k"),
            Err(StateError::UnsupportedVersion { found: 3, .. })
        ));
        let value: Value = serde_json::from_str(&newer).unwrap_or_default();
        assert!(matches!(
            ConnectorState::from_value(value, "import"),
            Err(StateError::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn truncated_and_empty_documents_are_corrupt() {
        for bytes in [
            &DOC_FIXTURE.as_bytes()[..100],
            b"".as_slice(),
            b"<html>oops</html>",
        ] {
            match ConnectorState::from_slice(bytes, "c", "/s/c.json") {
                Err(StateError::Corrupt { location, .. }) => assert_eq!(location, "/s/c.json"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn timestamps_format_like_the_documentation() {
        let ts: DateTime<Utc> = "2024-01-15T10:30:00Z".parse().unwrap_or_default();
        assert_eq!(format_timestamp(&ts), "2024-01-15T10:30:00Z");
    }
}
