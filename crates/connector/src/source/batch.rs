//! A polled batch and the acknowledgement that advances the state.

use std::time::{Duration, Instant};

use es_query::{Cursor, Hit, QuerySpec, RawValue};
use state_core::format_timestamp;

use crate::message::Message;

/// What committing a batch records: everything but the messages.
#[derive(Debug, Clone)]
pub struct Ack {
    pub(crate) seq: u64,
    pub(crate) slice: usize,
    pub(crate) slice_seq: u64,
    pub(crate) cursor: Cursor,
    pub(crate) last_document_id: String,
    pub(crate) documents: u64,
    pub(crate) bytes: u64,
    /// The pass of the source it was read in (`last_offset` counts per pass).
    pub(crate) pass: u64,
    /// Reading it: its search requests and building its messages.
    pub(crate) read_took: Duration,
    /// When the poll handed it out (its delivery starts).
    pub(crate) handed_out: Instant,
    pub(crate) scroll_id: Option<String>,
    /// With the `_shard_doc` tiebreaker: the ids of the batch's documents at the
    /// cursor's timestamp (see `dedup`).
    pub(crate) tail_ids: Vec<crate::message::MessageId>,
    /// With `late_window`: each document's timestamp (epoch ms) and key, recorded
    /// in the window when committed.
    pub(crate) window: Vec<(i64, u64)>,
    /// Found behind the cursor by `late_window`: committing it records its
    /// documents and counts them, and leaves the cursor where it is.
    pub(crate) late: bool,
    /// A backfill batch: where committing it leaves its slice's share.
    pub(crate) backfill: Option<super::backfill::Position>,
}

impl Ack {
    /// The cursor the state advances to when this batch is committed.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The position of this batch among the batches polled since open (0-based).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The slice this batch was read from (`0..slices`; always 0 without `slices`).
    pub fn slice(&self) -> usize {
        self.slice
    }

    /// Whether the batch was read by a backfill (`backfill = true`).
    pub fn is_backfill(&self) -> bool {
        self.backfill.is_some()
    }

    /// Whether `late_window` found these documents behind the cursor.
    pub fn is_late(&self) -> bool {
        self.late
    }
}

/// The documents of one poll, in order, and the acknowledgement to commit once an
/// output has them. An empty batch has no acknowledgement: the source is caught up.
#[derive(Debug)]
pub struct Batch {
    /// The messages, in cursor order.
    pub messages: Vec<Message>,
    /// `None` when the batch is empty.
    pub ack: Option<Ack>,
}

impl Batch {
    /// Number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the poll found nothing new.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The cursor a commit advances to (`None` for an empty batch).
    pub fn cursor(&self) -> Option<&Cursor> {
        self.ack.as_ref().map(Ack::cursor)
    }
}

/// The message for one hit: `_source` untouched, the timestamp read from its sort value.
pub(crate) fn to_message(spec: &QuerySpec, hit: Hit) -> Message {
    let timestamp = spec.hit_timestamp(&hit).map(|t| format_timestamp(&t));
    let payload = hit.source.unwrap_or_else(|| RawValue::NULL.to_owned());
    Message::new(&hit.index, &hit.id, hit.seq_no, timestamp, payload)
}

/// The messages of `hits`, in order, and the bytes of their `_source`.
pub(crate) fn to_messages(spec: &QuerySpec, hits: Vec<Hit>) -> (Vec<Message>, u64) {
    let messages: Vec<Message> = hits.into_iter().map(|hit| to_message(spec, hit)).collect();
    let bytes = messages.iter().map(|m| m.payload.get().len() as u64).sum();
    (messages, bytes)
}
