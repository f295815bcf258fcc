//! The source's own fields of the state document (`data.cursor` or
//! `data.slice_cursors`, `data.seen_at_cursor`, `data.batches_acknowledged`,
//! `data.late_window`, `data.late_documents_delivered`): written by a commit
//! through [`Progress`] and read back at open, here only.

use es_query::Cursor;
use serde_json::Value;
use state_core::{ConnectorState, StateData};

use super::dedup::{SeenAtTimestamp, fingerprint};
use super::late::{LATE_COUNT_FIELD, LATE_FIELD};
use crate::error::{ConnectorError, Result};
use crate::message::MessageId;

/// Where the cursor lives in the state document: `data.cursor = {"sort": [...]}`.
pub const CURSOR_FIELD: &str = "cursor";
/// `data.batches_acknowledged`: committed non-empty batches (the average's weight).
pub const BATCHES_FIELD: &str = "batches_acknowledged";

/// Where the cursors of a sliced source (`slices` > 1) live:
/// `data.slice_cursors = [{"sort": [...]} or null, ...]`, one per slice.
pub const SLICE_CURSORS_FIELD: &str = "slice_cursors";

/// With the `_shard_doc` tiebreaker (no `tiebreaker_field`), the ids of the documents
/// committed at each slice's cursor timestamp: `data.seen_at_cursor = ["fp64:...", ...]`,
/// one compact string of 64-bit fingerprints per slice (`source::dedup`). A new point in time resumes at the start of that
/// timestamp (a `_shard_doc` value means nothing in another one); these are skipped.
pub const SEEN_FIELD: &str = "seen_at_cursor";

/// Where a source stands after a commit, as the state document keeps it.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Each slice's committed cursor (one, always set, without `slices`):
    /// `data.cursor`, or `data.slice_cursors` with `null` for a slice that
    /// committed nothing yet.
    pub(crate) cursors: Vec<Option<Cursor>>,
    /// Each slice's ids at its cursor's timestamp (`SeenAtTimestamp::encode`);
    /// `None` removes the field (every set empty).
    pub(crate) seen: Option<Vec<String>>,
    /// The late window's form (`None`: `late_window` is off, the field stays).
    pub(crate) late_window: Option<Value>,
}

impl Progress {
    /// Writes it into `data`, counting one more batch acknowledged; the number
    /// of batches acknowledged so far.
    pub(crate) fn write(self, d: &mut StateData) -> u64 {
        write_cursors(d, &self.cursors);
        match self.seen {
            Some(seen) => d.extra.insert(
                SEEN_FIELD.into(),
                Value::Array(seen.into_iter().map(Value::String).collect()),
            ),
            None => d.extra.remove(SEEN_FIELD),
        };
        if let Some(window) = self.late_window {
            d.extra.insert(LATE_FIELD.into(), window);
        }
        count_batch(d)
    }
}

/// Counts one more batch acknowledged; the number acknowledged so far.
pub(crate) fn count_batch(d: &mut StateData) -> u64 {
    let batches = counter(d, BATCHES_FIELD) + 1;
    d.extra.insert(BATCHES_FIELD.into(), batches.into());
    batches
}

/// Writes each slice's committed cursor: `data.cursor` for one, else
/// `data.slice_cursors`.
pub(crate) fn write_cursors(d: &mut StateData, cursors: &[Option<Cursor>]) {
    let (field, other, cursor) = match cursors {
        [single] => (
            CURSOR_FIELD,
            SLICE_CURSORS_FIELD,
            serde_json::to_value(single).unwrap_or(Value::Null),
        ),
        cursors => (
            SLICE_CURSORS_FIELD,
            CURSOR_FIELD,
            Value::Array(
                cursors
                    .iter()
                    .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
                    .collect(),
            ),
        ),
    };
    d.extra.remove(other);
    d.extra.insert(field.into(), cursor);
}

/// Records a committed late batch: the window's form (when on) and its
/// `documents` in `data.late_documents_delivered`.
pub(crate) fn write_late(d: &mut StateData, late_window: Option<Value>, documents: u64) {
    if let Some(window) = late_window {
        d.extra.insert(LATE_FIELD.into(), window);
    }
    let late = counter(d, LATE_COUNT_FIELD) + documents;
    d.extra.insert(LATE_COUNT_FIELD.into(), late.into());
}

/// A counter field of `data` (0 when absent).
fn counter(d: &StateData, field: &str) -> u64 {
    d.extra.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// The stored late window (`data.late_window`), if any.
pub(crate) fn stored_late_window(state: &ConnectorState) -> Option<&Value> {
    state.data.extra.get(LATE_FIELD).filter(|v| !v.is_null())
}

/// The committed cursor of each of `slices` slices in a (re)loaded state: from
/// `data.cursor` without slicing, from `data.slice_cursors` with it. A state written
/// with another number of slices is refused: its cursors mean nothing here.
pub(crate) fn stored_cursors(state: &ConnectorState, slices: usize) -> Result<Vec<Option<Cursor>>> {
    let present = |field: &str| state.data.extra.get(field).filter(|v| !v.is_null());
    let corrupt = |location: String, reason: String| {
        ConnectorError::State(state_core::StateError::Corrupt {
            id: state.id.clone(),
            location,
            reason,
        })
    };
    let parse = |value: &Value, location: String| {
        serde_json::from_value::<Cursor>(value.clone())
            .map_err(|e| corrupt(location, format!("not a cursor {{\"sort\": [...]}}: {e}")))
    };
    let mismatch = |stored: usize| {
        ConnectorError::invalid(
            "plugin_config.slices",
            format!(
                "is {slices} but the state `{}` was written with slices = {stored}: the cursors of one slicing mean nothing in another; set slices = {stored} again, or reset the state (es-connector state reset) to read everything again with slices = {slices}",
                state.id
            ),
        )
    };
    if let Some(value) = present(SLICE_CURSORS_FIELD) {
        let Some(items) = value.as_array() else {
            return Err(corrupt(
                format!("data.{SLICE_CURSORS_FIELD}"),
                "not an array of cursors".into(),
            ));
        };
        if items.iter().any(|v| !v.is_null()) {
            if items.len() != slices {
                return Err(mismatch(items.len()));
            }
            return items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Null => Ok(None),
                    v => parse(v, format!("data.{SLICE_CURSORS_FIELD}[{i}]")).map(Some),
                })
                .collect();
        }
    }
    if let Some(value) = present(CURSOR_FIELD) {
        if slices != 1 {
            return Err(mismatch(1));
        }
        return Ok(vec![Some(parse(value, format!("data.{CURSOR_FIELD}"))?)]);
    }
    Ok(vec![None; slices])
}

/// The ids committed at each slice's cursor timestamp, from `data.seen_at_cursor`:
/// one entry per slice, the compact string of [`SeenAtTimestamp::encode`], or (as
/// earlier releases wrote it) a list of 32-digit hex message ids; empty sets when
/// the field is absent.
pub(crate) fn stored_seen(
    state: &ConnectorState,
    cursors: &[Option<Cursor>],
) -> Result<Vec<SeenAtTimestamp>> {
    let corrupt = |location: String, reason: String| {
        ConnectorError::State(state_core::StateError::Corrupt {
            id: state.id.clone(),
            location,
            reason: format!(
                "{reason}; reset the state or remove the field (documents at the cursor's \
                 timestamp are then delivered again)"
            ),
        })
    };
    let lists = match state.data.extra.get(SEEN_FIELD) {
        None | Some(Value::Null) => return Ok(vec![SeenAtTimestamp::default(); cursors.len()]),
        Some(Value::Array(lists)) if lists.len() == cursors.len() => lists,
        Some(_) => {
            return Err(corrupt(
                format!("data.{SEEN_FIELD}"),
                format!("not an array of {} entries, one per slice", cursors.len()),
            ));
        }
    };
    lists
        .iter()
        .zip(cursors)
        .enumerate()
        .map(|(i, (entry, cursor))| {
            let location = format!("data.{SEEN_FIELD}[{i}]");
            let fingerprints = match entry {
                Value::String(text) => {
                    SeenAtTimestamp::decode(text).map_err(|e| corrupt(location.clone(), e))?
                }
                Value::Array(items) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .and_then(|s| s.parse::<MessageId>().ok())
                            .map(fingerprint)
                            .ok_or_else(|| {
                                corrupt(
                                    location.clone(),
                                    format!("{v} is not a 32-digit hex message id"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>>>()?,
                _ => {
                    return Err(corrupt(
                        location,
                        "neither a string of fingerprints nor a list of message ids".into(),
                    ));
                }
            };
            Ok(match cursor.as_ref().and_then(|c| c.sort.first()) {
                Some(ts) => SeenAtTimestamp::with_fingerprints(ts.clone(), fingerprints),
                None => SeenAtTimestamp::default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(seen: Value) -> ConnectorState {
        let mut state = ConnectorState::new("s");
        state
            .data
            .extra
            .insert(CURSOR_FIELD.into(), serde_json::json!({"sort": [1000, 7]}));
        state.data.extra.insert(SEEN_FIELD.into(), seen);
        state
    }

    /// A commit's progress reads back as it was written: one cursor, or one per
    /// slice with `null` for a slice that committed nothing; the other form and
    /// empty seen sets are removed; batches are counted.
    #[test]
    fn progress_reads_back_as_written() {
        let cursor = |ts: i64| Cursor {
            sort: vec![Value::from(ts), Value::from(1)],
        };
        let mut state = ConnectorState::new("s");
        let sliced = Progress {
            cursors: vec![Some(cursor(5)), None],
            seen: Some(vec![String::new(), String::new()]),
            late_window: None,
        };
        assert_eq!(sliced.write(&mut state.data), 1);
        assert_eq!(
            stored_cursors(&state, 2).unwrap_or_default(),
            vec![Some(cursor(5)), None]
        );
        assert!(state.data.extra.contains_key(SEEN_FIELD));
        let single = Progress {
            cursors: vec![Some(cursor(9))],
            seen: None,
            late_window: Some(serde_json::json!({"bucket_ms": 1000})),
        };
        assert_eq!(single.write(&mut state.data), 2);
        assert_eq!(
            stored_cursors(&state, 1).unwrap_or_default(),
            vec![Some(cursor(9))]
        );
        assert!(!state.data.extra.contains_key(SLICE_CURSORS_FIELD));
        assert!(!state.data.extra.contains_key(SEEN_FIELD));
        assert_eq!(
            stored_late_window(&state),
            Some(&serde_json::json!({"bucket_ms": 1000}))
        );
        write_late(&mut state.data, None, 3);
        write_late(&mut state.data, None, 4);
        assert_eq!(state.data.extra[LATE_COUNT_FIELD], 7);
        assert_eq!(state.data.extra[BATCHES_FIELD], 2);
    }

    /// A state written by the previous release (hex message ids) and one written
    /// now (`fp64:` fingerprints) remember the same documents.
    #[test]
    fn seen_ids_load_from_either_form() {
        let ids = [
            MessageId::of("logs", "a", Some(1)),
            MessageId::of("logs", "b", Some(2)),
        ];
        let hex: Vec<Value> = ids.iter().map(|id| Value::String(id.to_string())).collect();
        let cursors = stored_cursors(&state_with(Value::Null), 1).unwrap_or_default();
        let old = stored_seen(&state_with(Value::Array(vec![Value::Array(hex)])), &cursors)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut current = SeenAtTimestamp::default();
        current.record(Some(&Value::from(1000)), &ids);
        let new = stored_seen(&state_with(serde_json::json!([current.encode()])), &cursors)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(old[0].encode(), current.encode());
        assert_eq!(new[0].encode(), current.encode());
        let bad = stored_seen(&state_with(serde_json::json!([["not hex"]])), &cursors)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(bad.contains("data.seen_at_cursor[0]"), "{bad}");
    }
}
