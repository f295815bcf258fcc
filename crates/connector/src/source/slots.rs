//! `slices`: the per-slice read state of a source (its reader, cursors and the page
//! fetched but not yet returned) and the concurrent fetch of their next pages.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use es_query::{Cursor, Hit, Tiebreaker};

use super::client::EsClient;
use super::dedup::SeenAtTimestamp;
use super::reader::Reader;
use crate::error::{ConnectorError, Result};

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
    /// A backfill page: where it leaves the slice (`cursor` is the hand-over).
    pub(crate) backfill: Option<super::backfill::Position>,
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
    /// This slice's share of a backfill in progress; `None` once it handed over.
    pub(crate) backfill: Option<super::backfill::SliceBackfill>,
}

impl Slot {
    /// Fetches the next non-empty page into `ready`, or marks the slice caught up.
    /// On error the read position stays put. With a late window, documents it
    /// knows as delivered are left out: a slice's share of the documents can
    /// change between points in time (Elasticsearch gives whole shards to slices
    /// once an index pattern has as many shards as slices, in an order that a new
    /// index changes), so another slice may have delivered them.
    ///
    /// In a backfill (`backfill` and this slice's share not all read), the next
    /// page of the share; once it is all read, the incremental read starts at the
    /// hand-over.
    pub(crate) async fn fetch(
        &mut self,
        client: &EsClient,
        window: Option<&super::late::LateWindow>,
        backfill: Option<&super::backfill::Backfill>,
        slice: usize,
    ) -> Result<()> {
        let Some(reader) = self.reader.as_mut() else {
            return Err(ConnectorError::NotOpen);
        };
        if let (Some(share), Some(backfill)) = (self.backfill.as_mut(), backfill)
            && !share.ended
        {
            let keep_alive = reader.keep_alive();
            match share
                .next_page(client, reader.spec(), backfill, keep_alive, slice)
                .await?
            {
                Some(ready) => {
                    self.ready = Some(ready);
                    return Ok(());
                }
                None => {
                    tracing::info!(
                        slice,
                        "backfill: this slice's share is read; reading on from the hand-over"
                    );
                    self.read_position = Some(backfill.handover.clone());
                }
            }
        }
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
                backfill: None,
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
        if let Some(share) = &mut self.backfill {
            share.rewind();
        }
    }

    /// The cursor this slice stands at for the late window: the committed one, or
    /// in a backfill the hand-over (everything before it is being read).
    pub(crate) fn window_cursor<'a>(
        &'a self,
        backfill: Option<&'a super::backfill::Backfill>,
    ) -> Option<&'a Cursor> {
        match (&self.committed, &self.backfill, backfill) {
            (Some(cursor), _, _) => Some(cursor),
            (None, Some(_), Some(backfill)) => Some(&backfill.handover),
            _ => None,
        }
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
