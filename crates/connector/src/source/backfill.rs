//! `backfill = true`: a source that starts with no position reads what the index
//! holds in index order first, from one point-in-time snapshot, and then follows
//! the incremental cursor from the snapshot's last document (the hand-over, see
//! es-query's `backfill` module for why nothing is read twice or skipped there).
//!
//! Each slice reads its own share of the snapshot (slice `i` of `slices`, cut on
//! the timestamp) and its position, the sort values (`[_shard_doc, timestamp]`) of
//! its last committed document, is saved with every commit in `data.backfill`. A restart resumes every
//! slice where it stood, in the same point in time while it lives (`keep_alive`
//! after the last page); a slice whose point in time expired starts its share over
//! in a new one (still bounded by the same hand-over), so the documents it had
//! delivered are delivered again: at least once, never lost. A slice whose share
//! is read and committed hands over: its cursor is set to the hand-over cursor, and
//! it reads incrementally from there. Once every slice has, `data.backfill` records
//! that the backfill is done and the point in time is closed.

use es_query::{Cursor, PitId, QuerySpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use state_core::ConnectorState;

use super::client::EsClient;
use super::reader::is_context_expired;
use super::slots::Ready;
use crate::error::{ConnectorError, Result};

/// `data.backfill`: the backfill in progress, or the record that one was done.
pub const BACKFILL_FIELD: &str = "backfill";

/// The backfill in progress, shared by the slices.
#[derive(Debug, Clone)]
pub(crate) struct Backfill {
    /// The snapshot's last document in cursor order.
    pub(crate) upper: Cursor,
    /// Where the incremental read starts after it.
    pub(crate) handover: Cursor,
    /// Documents of the backfill committed so far.
    pub(crate) documents: u64,
}

/// One slice's share of a backfill.
#[derive(Debug, Clone)]
pub(crate) struct SliceBackfill {
    /// The point in time it reads (the newest id the server gave).
    pub(crate) pit: PitId,
    /// The sort values `[_shard_doc, timestamp]` of the last document read (`None`:
    /// from the start).
    pub(crate) after: Option<Value>,
    /// The point in time and position of the last committed batch.
    pub(crate) committed: (PitId, Option<Value>),
    /// An empty page came: the whole share is handed out.
    pub(crate) ended: bool,
}

/// Where a backfill page leaves its slice: the point in time and sort values to
/// save when the page's batch is committed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Position {
    pub(crate) pit: PitId,
    pub(crate) after: Value,
}

impl SliceBackfill {
    pub(crate) fn new(pit: PitId) -> Self {
        SliceBackfill {
            committed: (pit.clone(), None),
            pit,
            after: None,
            ended: false,
        }
    }

    /// Back to the last committed position.
    pub(crate) fn rewind(&mut self) {
        self.pit = self.committed.0.clone();
        self.after = self.committed.1.clone();
        self.ended = false;
    }

    /// The next page of the slice's share, `None` once it is all read. A point in
    /// time that expired is replaced by a new one, and the share starts over in it.
    pub(crate) async fn next_page(
        &mut self,
        client: &EsClient,
        spec: &QuerySpec,
        backfill: &Backfill,
        keep_alive: std::time::Duration,
        slice: usize,
    ) -> Result<Option<Ready>> {
        const WHAT: &str = "backfill";
        let started = std::time::Instant::now();
        let mut page = match self.search(client, spec, backfill, keep_alive).await {
            Err(e) if is_context_expired(&e) => {
                tracing::warn!(
                    slice,
                    error = %e,
                    "backfill: the point in time expired; this slice reads its share again \
                     in a new one (documents it delivered are delivered again)"
                );
                self.pit = open_pit(client, spec, keep_alive).await?;
                self.after = None;
                self.search(client, spec, backfill, keep_alive).await?
            }
            other => other?,
        };
        if let Some(newest) = page.pit_id.take() {
            self.pit = newest;
        }
        let (hits, position) =
            es_query::backfill_hits(page.hits).map_err(|e| client.refused(WHAT, e))?;
        let Some(after) = position else {
            self.ended = true;
            return Ok(None);
        };
        self.after = Some(after.clone());
        Ok(Some(Ready {
            hits,
            cursor: backfill.handover.clone(),
            scroll_id: None,
            read_took: started.elapsed(),
            backfill: Some(Position {
                pit: self.pit.clone(),
                after,
            }),
        }))
    }

    async fn search(
        &self,
        client: &EsClient,
        spec: &QuerySpec,
        backfill: &Backfill,
        keep_alive: std::time::Duration,
    ) -> Result<es_query::SearchPage> {
        const WHAT: &str = "backfill";
        let request = spec
            .backfill_page(&backfill.upper, self.after.as_ref(), &self.pit, keep_alive)
            .map_err(|e| client.refused(WHAT, e))?;
        client.search(&request, WHAT).await
    }
}

/// Opens a point in time on the source's index.
pub(crate) async fn open_pit(
    client: &EsClient,
    spec: &QuerySpec,
    keep_alive: std::time::Duration,
) -> Result<PitId> {
    const WHAT: &str = "open point in time";
    let request = spec
        .open_pit(keep_alive)
        .map_err(|e| client.refused(WHAT, e))?;
    let body = client.send_ok(&request, WHAT).await?;
    PitId::from_open_response(&body).map_err(|e| client.refused(WHAT, e))
}

/// Starts a backfill: a point in time, and in it the last document in cursor order
/// of `spec` (unsliced, bounded by the pass's ceiling). `None` (and the point in
/// time closed) when the snapshot holds nothing to read.
pub(crate) async fn start(
    client: &EsClient,
    spec: &QuerySpec,
    keep_alive: std::time::Duration,
) -> Result<Option<(Backfill, PitId)>> {
    const WHAT: &str = "backfill: find the snapshot's last document";
    let pit = open_pit(client, spec, keep_alive).await?;
    let request = spec
        .last_in_pit(&pit, keep_alive)
        .map_err(|e| client.refused(WHAT, e))?;
    let page = match client.search(&request, WHAT).await {
        Ok(page) => page,
        Err(e) => {
            close_pits(client, spec, [pit]).await;
            return Err(e);
        }
    };
    let pit = page.pit_id.clone().unwrap_or(pit);
    let Some(upper) = page.hits.first().and_then(es_query::Hit::cursor) else {
        close_pits(client, spec, [pit]).await;
        return Ok(None);
    };
    let handover = spec.handover_cursor(&upper);
    Ok(Some((
        Backfill {
            upper,
            handover,
            documents: 0,
        },
        pit,
    )))
}

/// Closes the distinct points in time among `pits` (failures are logged: the
/// server frees them when `keep_alive` runs out).
pub(crate) async fn close_pits(
    client: &EsClient,
    spec: &QuerySpec,
    pits: impl IntoIterator<Item = PitId>,
) {
    let mut seen = std::collections::HashSet::new();
    for pit in pits {
        if !seen.insert(pit.as_str().to_owned()) {
            continue;
        }
        let outcome = match spec.close_pit(&pit) {
            Ok(request) => client.send(&request, "close point in time").await,
            Err(e) => Err(client.refused("close point in time", e)),
        };
        match outcome {
            Ok((status, _)) if (200..300).contains(&status) || status == 404 => {}
            Ok((status, _)) => tracing::warn!(
                status,
                "backfill: closing the point in time failed; the server frees it when keep_alive runs out"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "backfill: closing the point in time failed; the server frees it when keep_alive runs out"
            ),
        }
    }
}

/// The stored form of `data.backfill`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Stored {
    /// The snapshot's last document in cursor order (`None`: there was nothing).
    pub(crate) upper: Option<Cursor>,
    /// Each slice's position, `None` once the slice handed over.
    pub(crate) slices: Vec<Option<StoredSlice>>,
    /// Documents of the backfill committed.
    pub(crate) documents: u64,
    /// Every slice handed over (or there was nothing to read).
    pub(crate) done: bool,
}

/// A slice's position in `data.backfill.slices`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredSlice {
    pub(crate) pit: String,
    pub(crate) after: Option<Value>,
}

impl Stored {
    pub(crate) fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The stored backfill of a (re)loaded state, if any, checked against `slices`.
pub(crate) fn stored(state: &ConnectorState, slices: usize) -> Result<Option<Stored>> {
    let Some(value) = state
        .data
        .extra
        .get(BACKFILL_FIELD)
        .filter(|v| !v.is_null())
    else {
        return Ok(None);
    };
    let stored: Stored = serde_json::from_value(value.clone()).map_err(|e| {
        ConnectorError::State(state_core::StateError::Corrupt {
            id: state.id.clone(),
            location: format!("data.{BACKFILL_FIELD}"),
            reason: format!(
                "not a backfill record ({e}); reset the state to read everything again"
            ),
        })
    })?;
    if !stored.done && stored.slices.len() != slices {
        return Err(ConnectorError::invalid(
            "plugin_config.slices",
            format!(
                "is {slices} but the backfill in progress in state `{}` was started with \
                 slices = {}: set slices = {} again until it is done, or reset the state \
                 (es-connector state reset) to start over",
                state.id,
                stored.slices.len(),
                stored.slices.len()
            ),
        ));
    }
    if !stored.done && stored.upper.is_none() {
        return Err(ConnectorError::State(state_core::StateError::Corrupt {
            id: state.id.clone(),
            location: format!("data.{BACKFILL_FIELD}.upper"),
            reason: "a backfill in progress has no upper bound; reset the state".into(),
        }));
    }
    Ok(Some(stored))
}
