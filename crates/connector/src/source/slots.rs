//! `slices`: the per-slice read state of a source (its reader, cursors and the page
//! fetched but not yet returned), the concurrent fetch of their next pages, and the
//! slice cursors of the state document.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use es_query::{Cursor, Hit, Tiebreaker};
use serde_json::Value;
use state_core::ConnectorState;

use super::client::EsClient;
use super::dedup::{SeenAtTimestamp, fingerprint};
use super::reader::Reader;
use super::{CURSOR_FIELD, SEEN_FIELD, SLICE_CURSORS_FIELD};
use crate::error::{ConnectorError, Result};
use crate::message::MessageId;

/// A fetched page waiting to be returned by a poll.
#[derive(Debug)]
pub(crate) struct Ready {
    pub(crate) hits: Vec<Hit>,
    /// The cursor after its last hit.
    pub(crate) cursor: Cursor,
    pub(crate) scroll_id: Option<String>,
    /// The search requests that fetched it (with `slices`, concurrently with the
    /// other slices'; its wait in `ready` is not counted).
    pub(crate) read_took: std::time::Duration,
}

/// One slice's reader and positions (the only one without `slices`).
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Set at open.
    pub(crate) reader: Option<Reader>,
    /// The cursor of the last committed batch of this slice.
    pub(crate) committed: Option<Cursor>,
    /// The cursor of the last page fetched (returned or `ready`).
    pub(crate) read_position: Option<Cursor>,
    /// Per-slice sequence of the next polled batch.
    pub(crate) next_seq: u64,
    /// Per-slice sequence of the next batch to commit.
    pub(crate) next_commit: u64,
    /// Documents already returned at the read position's timestamp (`_shard_doc` only).
    pub(crate) seen: SeenAtTimestamp,
    /// Documents committed at the committed cursor's timestamp (`_shard_doc` only),
    /// stored in `data.seen_at_cursor`.
    pub(crate) committed_seen: SeenAtTimestamp,
    /// A page fetched but not yet returned.
    pub(crate) ready: Option<Ready>,
    /// This pass of the slice found nothing more; it is fetched again once every
    /// slice is caught up.
    pub(crate) caught_up: bool,
}

impl Slot {
    /// Fetches the next non-empty page into `ready`, or marks the slice caught up.
    /// On error the read position stays put. With a late window, documents it
    /// knows as delivered are left out: a slice's share of the documents can
    /// change between points in time (Elasticsearch gives whole shards to slices
    /// once an index pattern has as many shards as slices, in an order that a new
    /// index changes), so another slice may have delivered them.
    pub(crate) async fn fetch(
        &mut self,
        client: &EsClient,
        window: Option<&super::late::LateWindow>,
    ) -> Result<()> {
        let Some(reader) = self.reader.as_mut() else {
            return Err(ConnectorError::NotOpen);
        };
        let dedup = matches!(reader.spec().tiebreaker(), Tiebreaker::ShardDoc);
        let started = std::time::Instant::now();
        loop {
            let mut page = reader
                .next_page(client, self.read_position.as_ref())
                .await?;
            let last = page.last_cursor();
            if dedup && !page.hits.is_empty() {
                page.hits = self.seen.filter(std::mem::take(&mut page.hits));
            }
            if let Some(window) = window {
                let spec = reader.spec();
                page.hits.retain(|h| {
                    let Some(ts) = spec.hit_timestamp(h) else {
                        return true;
                    };
                    !window.contains(
                        ts.timestamp_millis(),
                        super::dedup::document_key(&h.index, &h.id),
                    )
                });
            }
            if page.hits.is_empty() && last.is_some() {
                // Only documents returned before: move past them and read on.
                self.read_position = last;
                continue;
            }
            let Some(cursor) = last else {
                self.caught_up = true;
                return Ok(());
            };
            self.read_position = Some(cursor.clone());
            self.ready = Some(Ready {
                hits: page.hits,
                cursor,
                scroll_id: reader.scroll_id().map(|s| s.as_str().to_owned()),
                read_took: started.elapsed(),
            });
            return Ok(());
        }
    }

    /// Back to `cursor` (committed and read position), closing the reader's context
    /// and dropping anything fetched but not returned.
    pub(crate) async fn reset(&mut self, client: Option<&EsClient>, cursor: Option<Cursor>) {
        if let (Some(client), Some(reader)) = (client, &mut self.reader) {
            reader.close(client).await;
        }
        self.committed = cursor.clone();
        self.read_position = cursor;
        self.next_seq = self.next_commit;
        self.seen = self.committed_seen.clone();
        self.ready = None;
        self.caught_up = false;
    }
}

/// The ids of the scrolls open now.
pub(crate) fn open_scrolls(slots: &[Slot]) -> Vec<String> {
    slots
        .iter()
        .filter_map(|s| s.reader.as_ref()?.scroll_id())
        .map(|id| id.as_str().to_owned())
        .collect()
}

/// Clears `last_scroll_id` when the scroll it names is no longer among `open`.
pub(crate) fn forget_closed_scroll(data: &mut state_core::StateData, open: &[String]) {
    if data
        .last_scroll_id
        .as_ref()
        .is_some_and(|id| !open.contains(id))
    {
        data.last_scroll_id = None;
    }
}

/// Runs `futures` concurrently; their outputs in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The earliest of the positions by timestamp (`None`, from the start, when one of
/// them is `None` or they cannot be compared).
pub(crate) fn earliest<'a>(
    positions: impl Iterator<Item = Option<&'a Cursor>>,
) -> Option<&'a Cursor> {
    let mut best: Option<&Cursor> = None;
    for position in positions {
        let position = position?;
        best = match best {
            None => Some(position),
            Some(current) => {
                let (a, b) = (current.sort.first()?, position.sort.first()?);
                let later = match (a.as_f64(), b.as_f64(), a.as_str(), b.as_str()) {
                    (Some(a), Some(b), _, _) => a > b,
                    (_, _, Some(a), Some(b)) => a > b,
                    _ => return None,
                };
                Some(if later { position } else { current })
            }
        };
    }
    best
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
