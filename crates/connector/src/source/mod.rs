//! [`ElasticsearchSource`]: incremental reads with an acknowledgement watermark.
//!
//! # At-least-once
//!
//! [`ElasticsearchSource::poll_batch`] returns a [`Batch`] whose [`Ack`] carries the
//! cursor after its last document. The stored state moves to that cursor only in
//! [`ElasticsearchSource::commit`], which the caller calls once an output has
//! acknowledged the batch; commit saves at once (compare-and-set). So whatever kills
//! the process, a restart re-reads at most the batches polled but not committed:
//! with the poll, send, commit loop of [`crate::run()`], at most one.
//!
//! The documented `poll()` (which "auto-saves") follows the Iggy runtime contract:
//! the runtime calls `poll()` again only after it has sent the previous messages, so
//! [`ElasticsearchSource::poll`] first commits the previous batch, then polls. The
//! last batch polled before [`ElasticsearchSource::close`] is not committed: it was
//! perhaps never delivered, and is read again after a restart.
//!
//! # `slices`
//!
//! With `slices = N` (> 1) the source runs N sliced readers (slice `i` of `N`, each
//! with its own point in time or scroll and its own cursor). A poll fetches the next
//! page of every slice that has none waiting, concurrently, and returns the waiting
//! page of one slice (round-robin); its [`Ack`] carries the slice. Committing it
//! advances that slice's cursor only, all of them stored together in
//! `data.slice_cursors`. Batches must be committed in poll order within a slice; a
//! restart re-reads at most the batches polled but not committed, at most one per
//! slice with the poll, send, commit loop. A state written with another number of
//! slices is refused (its cursors mean nothing here) until it is reset.

mod backfill;
mod batch;
pub(crate) mod client;
pub(crate) mod dedup;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod late;
#[cfg(feature = "elasticsearch")]
mod official;
mod progress;
mod reader;
mod slots;
mod state_api;

pub use backfill::BACKFILL_FIELD;
pub use late::{LATE_COUNT_FIELD, LATE_FIELD};
pub(crate) use progress::stored_cursors;
pub use progress::{BATCHES_FIELD, CURSOR_FIELD, SEEN_FIELD, SLICE_CURSORS_FIELD};

use std::sync::Arc;

use es_query::{Cursor, Flavor, PitId, QueryConfig, QueryError, QuerySpec, ScrollId};
use serde_json::Value;
use state_core::{
    ConnectorState, InMemoryStore, ManagerOptions, StateId, StateManager, StateMetadata,
};

use crate::config::{Pagination, PluginConfig, ValidatedConfig};
use crate::error::{ConnectorError, Result};
use crate::message::Message;
use crate::metrics::{Metrics, MetricsSlot};
use crate::state::open_manager_reporting;

pub use batch::{Ack, Batch};
pub use client::ServerInfo;
pub use reader::ReadMode;

use client::EsClient;
use reader::Reader;

/// `metadata.connector_type` of the state document.
pub const CONNECTOR_TYPE: &str = "elasticsearch_source";

/// The query `config` describes (index, timestamp, tiebreaker, the user's query,
/// batch size, `slice`), before slicing by `slices`.
pub(crate) fn query_config(c: &ValidatedConfig) -> QueryConfig {
    let mut base = QueryConfig::new(c.index.clone())
        .with_timestamp_field(c.timestamp_field.clone())
        .with_timestamp_type(c.timestamp_type)
        .with_missing_timestamp(c.missing_timestamp)
        .with_query(c.query().clone())
        .with_batch_size(c.batch_size);
    if let Some(field) = &c.tiebreaker_field {
        base = base.with_tiebreaker_field(field.clone());
    }
    if let Some(slice) = c.slice {
        base = base.with_slice(slice.id, slice.max);
    }
    base
}

/// Each hit's timestamp (epoch ms) and document key, for the late window.
fn late_entries(spec: &QuerySpec, hits: &[es_query::Hit]) -> Vec<(i64, u64)> {
    hits.iter()
        .filter_map(|h| {
            let ts = spec.hit_timestamp(h)?.timestamp_millis();
            Some((ts, dedup::document_key(&h.index, &h.id)))
        })
        .collect()
}

/// A cursor's timestamp in epoch milliseconds.
fn cursor_millis(kind: es_query::TimestampKind, cursor: &Cursor) -> Option<i64> {
    Some(
        kind.sort_value_to_time(cursor.timestamp_value()?)?
            .timestamp_millis(),
    )
}

/// The late window (`late_window` wide; `None` when zero) of a (re)loaded state,
/// or a fresh one.
fn restore_late(
    late_window: std::time::Duration,
    state: &ConnectorState,
) -> Result<Option<late::LateWindow>> {
    if late_window.is_zero() {
        return Ok(None);
    }
    let mut window = late::LateWindow::new(late_window);
    if let Some(stored) = progress::stored_late_window(state) {
        let restored = window.restore(stored).map_err(|reason| {
            ConnectorError::State(state_core::StateError::Corrupt {
                id: state.id.clone(),
                location: format!("data.{LATE_FIELD}"),
                reason: format!(
                    "{reason}; remove the field or reset the state (documents delivered in \
                     the window may then be delivered again)"
                ),
            })
        })?;
        if !restored {
            tracing::warn!(
                "late_window changed its bucket width since the state was saved: the \
                 documents delivered in the window are forgotten, so late documents found \
                 there may repeat ones delivered before"
            );
            window = late::LateWindow::new(late_window);
        }
    }
    Ok(Some(window))
}

/// Counts `error` in the state's `error_count`/`last_error`.
pub(crate) async fn count_error(state: &StateManager, error: &ConnectorError) {
    let text = error.to_string();
    state
        .update(|s| {
            s.data.error_count += 1;
            s.data.last_error = Some(text);
        })
        .await;
}

/// Counts a committed batch of `ack` in `d` (read and delivered in
/// `elapsed_ms`): documents, bytes, the last document and the mean batch time.
fn count_committed(d: &mut state_core::StateData, ack: &Ack, elapsed_ms: f64, batches: u64) {
    d.total_documents_fetched += ack.documents;
    d.last_document_id = Some(ack.last_document_id.clone());
    let stats = &mut d.processing_stats;
    stats.total_bytes_processed += ack.bytes;
    stats.avg_batch_processing_time_ms +=
        (elapsed_ms - stats.avg_batch_processing_time_ms) / batches as f64;
}

/// The Elasticsearch/OpenSearch source.
#[derive(Debug)]
pub struct ElasticsearchSource {
    id: u64,
    config: PluginConfig,
    client: Option<EsClient>,
    server: Option<ServerInfo>,
    /// One per slice (`slices`, default 1).
    slots: Vec<slots::Slot>,
    /// The slot the next ready batch is looked for first (round-robin).
    next_slot: usize,
    state: Option<StateManager>,
    /// State is persisted (a `state` block is enabled), not only kept in memory.
    persistent: bool,
    /// The cursor of the batch committed last, whatever its slice.
    last_committed: Option<Cursor>,
    next_seq: u64,
    unsaved: bool,
    /// The batch `poll()` returned last, committed by the next `poll()`.
    outstanding: Option<Ack>,
    /// The current pass: a read from the committed cursors to the end of the index;
    /// the next starts after an empty poll, a reset or a reopen.
    pass: u64,
    /// The pass of the batch committed last, and the documents committed in it
    /// (`data.last_offset`).
    committed_pass: u64,
    pass_offset: u64,
    /// `late_window`: what was delivered behind the cursor (see `late`).
    late: Option<late::LateWindow>,
    /// The query without slicing, for re-reading the window.
    late_spec: Option<QuerySpec>,
    /// Late documents found by the last look, not handed out yet.
    late_pending: std::collections::VecDeque<es_query::Hit>,
    /// The window was looked at in this pass (once per pass, when caught up).
    late_looked: bool,
    /// `backfill`: the one in progress (see `backfill`).
    backfill: Option<backfill::Backfill>,
    /// `backfill` is on and the state holds no position: the next poll starts one.
    backfill_pending: bool,
    /// Points in time of slices that handed over, closed when the backfill is done.
    finished_pits: Vec<PitId>,
    /// The configuration as `open` validated it.
    validated: Option<ValidatedConfig>,
    /// Where the state store's loads and saves are recorded.
    metrics: MetricsSlot,
    /// Set by [`ElasticsearchSource::with_official_client`]: every search goes through it.
    #[cfg(feature = "elasticsearch")]
    official: Option<official::OfficialClient>,
}

impl ElasticsearchSource {
    /// A source for connector `id`. No IO: [`ElasticsearchSource::open`] connects.
    pub fn new(id: u64, config: PluginConfig) -> Self {
        let slices = config.slices.max(1) as usize;
        ElasticsearchSource {
            id,
            config,
            client: None,
            server: None,
            slots: (0..slices).map(|_| slots::Slot::default()).collect(),
            next_slot: 0,
            state: None,
            persistent: false,
            last_committed: None,
            next_seq: 0,
            unsaved: false,
            outstanding: None,
            pass: 0,
            committed_pass: 0,
            pass_offset: 0,
            late: None,
            late_spec: None,
            late_pending: std::collections::VecDeque::new(),
            late_looked: false,
            backfill: None,
            backfill_pending: false,
            finished_pits: Vec::new(),
            validated: None,
            metrics: MetricsSlot::default(),
            #[cfg(feature = "elasticsearch")]
            official: None,
        }
    }

    /// Records the state store's loads and saves (those made from now on) in
    /// `metrics`. [`crate::run`] and [`crate::open_with_retry`] do it with
    /// their [`RunOptions::metrics`](crate::RunOptions::metrics).
    pub fn set_metrics(&self, metrics: Metrics) {
        self.metrics.set(metrics);
    }

    /// Validates the configuration, detects the server's flavour, loads the state
    /// (when enabled) and resumes from its cursor(s).
    pub async fn open(&mut self) -> Result<()> {
        let validated = self.config.validate()?;
        let client = self.new_client(&validated)?;
        let server = client.server_info().await?;
        let mode = self.mode_for(server.flavor)?;
        let specs = self.query_specs(&validated, server.flavor)?;
        self.refuse_unstable_slices(&client, &server, &specs)
            .await?;
        self.late_spec = if self.config.late_window.is_zero() {
            None
        } else {
            Some(
                query_config(&validated)
                    .build(server.flavor)
                    .map_err(|e| ConnectorError::invalid("plugin_config.late_window", e))?,
            )
        };
        tracing::info!(url = client.url(), server = %server.flavor, version = %server.version, ?mode, index = %self.config.index, slices = self.slots.len(), "source opened");
        self.client = Some(client);
        self.server = Some(server);
        self.validated = Some(validated);
        for (slot, spec) in self.slots.iter_mut().zip(specs) {
            slot.reader = Some(Reader::new(
                spec,
                mode,
                self.config.keep_alive,
                self.config.settle,
            ));
        }
        self.load_state().await?;
        if let Some(manager) = &self.state {
            manager.start_auto_save();
        }
        Ok(())
    }

    /// The client `open` reads through: the official client when the source was
    /// made with one, else one built from the configuration.
    fn new_client(&self, validated: &ValidatedConfig) -> Result<EsClient> {
        #[cfg(feature = "elasticsearch")]
        if let Some(official) = &self.official {
            return EsClient::official(&self.config, official.0.clone());
        }
        EsClient::new(validated)
    }

    /// Checks the configuration and asks the server who it is, without reading state.
    pub async fn check(config: &PluginConfig) -> Result<ServerInfo> {
        let validated = config.validate()?;
        let client = EsClient::new(&validated)?;
        let server = client.server_info().await?;
        let source = ElasticsearchSource::new(0, config.clone());
        source.mode_for(server.flavor)?;
        source.query_specs(&validated, server.flavor)?;
        Ok(server)
    }

    fn mode_for(&self, flavor: Flavor) -> Result<ReadMode> {
        if self.config.backfill && !flavor.supports_shard_doc() {
            return Err(ConnectorError::invalid(
                "plugin_config.backfill",
                format!(
                    "reads in index order with the `_shard_doc` sort inside a point in time, \
                     which {flavor} lacks (Elasticsearch >= 7.12, OpenSearch >= 3.3); remove \
                     backfill (the source then reads everything sorted on the timestamp)"
                ),
            ));
        }
        Ok(match self.config.pagination {
            Pagination::Scroll => ReadMode::Scroll,
            Pagination::Cursor => ReadMode::Plain,
            Pagination::SearchAfter if flavor.supports_pit() => ReadMode::PointInTime,
            Pagination::SearchAfter if self.config.slice.is_some() => {
                return Err(ConnectorError::invalid(
                    "plugin_config.slice",
                    format!("{flavor} has no point in time to slice; use pagination = \"scroll\""),
                ));
            }
            Pagination::SearchAfter if self.config.slices > 1 => {
                return Err(ConnectorError::invalid(
                    "plugin_config.slices",
                    format!("{flavor} has no point in time to slice; use pagination = \"scroll\""),
                ));
            }
            Pagination::SearchAfter => ReadMode::Plain,
        })
    }

    /// On Elasticsearch, slicing over several indices is refused: once the
    /// indices have as many shards as there are slices, Elasticsearch gives each
    /// slice whole shards, numbered in an order a new index of a pattern, alias
    /// or data stream changes, so documents would move between slices (read
    /// twice, or never). OpenSearch slices by the sliced field in every shard.
    ///
    /// With `late_window`, `slices` is allowed there: a page leaves out what the
    /// window holds as delivered (read twice), and the look behind the cursors
    /// finds what no slice read (never). `slice` is not: the other slices are in
    /// other processes.
    async fn refuse_unstable_slices(
        &self,
        client: &EsClient,
        server: &ServerInfo,
        specs: &[QuerySpec],
    ) -> Result<()> {
        let key = match (self.config.slices > 1, self.config.slice.is_some()) {
            (true, _) => "plugin_config.slices",
            (false, true) => "plugin_config.slice",
            (false, false) => return Ok(()),
        };
        if server.flavor.is_opensearch()
            || (self.config.slices > 1 && !self.config.late_window.is_zero())
        {
            return Ok(());
        }
        let refuse = |what: String| {
            ConnectorError::invalid(
                key,
                format!(
                    "`{}` is {what}: Elasticsearch cuts slices over several indices by whole \
                     shards, in an order a new index changes, so a document could move to \
                     another slice and be delivered twice or never. Slice one index, read \
                     several without slicing, or set `late_window` with `slices` (it finds \
                     what moved)",
                    self.config.index
                ),
            )
        };
        if self.config.index.contains(['*', ',']) {
            return Err(refuse("a pattern or a list".into()));
        }
        let Some(spec) = specs.first() else {
            return Ok(());
        };
        // `_resolve/index` exists since Elasticsearch 7.9; without it, the name
        // alone was checked.
        let Ok((200, body)) = client
            .send(&spec.resolve_index(), "resolve the index")
            .await
        else {
            return Ok(());
        };
        let resolved: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let count = |field: &str| resolved[field].as_array().map_or(0, Vec::len);
        if count("aliases") > 0 || count("data_streams") > 0 || count("indices") > 1 {
            return Err(refuse("an alias or a data stream".into()));
        }
        Ok(())
    }

    /// One query per slice: `slice = {id: i, max: slices}` when `slices` > 1.
    fn query_specs(&self, validated: &ValidatedConfig, flavor: Flavor) -> Result<Vec<QuerySpec>> {
        let slices = self.slots.len();
        let base = query_config(validated);
        (0..slices)
            .map(|i| {
                let mut query = base.clone();
                let key = if slices > 1 {
                    query = query.with_slice(i as u32, slices as u32);
                    Some("plugin_config.slices")
                } else {
                    None
                };
                query.build(flavor).map_err(|e| match e {
                    QueryError::InvalidConfig { key: k, reason } => match (key, k.as_str()) {
                        (Some(key), "slice") => ConnectorError::invalid(key, reason),
                        _ => ConnectorError::invalid(format!("plugin_config.{k}"), reason),
                    },
                    other => ConnectorError::invalid("plugin_config", other),
                })
            })
            .collect()
    }

    /// Polls and commits the previous batch first (see the module docs): the
    /// documented API, for callers that call `poll()` again only after delivering.
    pub async fn poll(&mut self) -> Result<Vec<Message>> {
        if let Some(previous) = self.outstanding.take()
            && let Err(e) = self.commit(&previous).await
        {
            self.outstanding = Some(previous);
            return Err(e);
        }
        let batch = self.poll_batch().await?;
        self.outstanding = batch.ack;
        Ok(batch.messages)
    }

    /// The next documents after the last polled batch; does not move the stored state.
    /// Errors are counted in `error_count`/`last_error`; the read position stays put.
    ///
    /// With `slices` > 1, the next page of every slice without one waiting is fetched
    /// concurrently; each call returns the waiting page of one slice (round-robin).
    /// The batch is empty once every slice is caught up.
    pub async fn poll_batch(&mut self) -> Result<Batch> {
        let Some(state) = self.state.clone().filter(|_| self.client.is_some()) else {
            return Err(ConnectorError::NotOpen);
        };
        if self.slots.iter().any(|s| s.reader.is_none()) {
            return Err(ConnectorError::NotOpen);
        }
        if self.backfill_pending
            && let Err(e) = self.start_backfill().await
        {
            state.update(|s| s.data.poll_count += 1).await;
            return Err(self.record_error(e).await);
        }
        let Some(client) = &self.client else {
            return Err(ConnectorError::NotOpen);
        };
        if !self.slots.iter().any(|s| s.ready.is_some()) {
            let window = self.late.as_ref();
            let backfill = self.backfill.as_ref();
            let fetches: Vec<_> = self
                .slots
                .iter_mut()
                .enumerate()
                .filter(|(_, s)| !s.caught_up)
                .map(|(i, s)| s.fetch(client, window, backfill, i))
                .collect();
            let failure = slots::join_all(fetches)
                .await
                .into_iter()
                .find_map(Result::err);
            if let Some(e) = failure {
                let open = slots::open_scrolls(&self.slots);
                state
                    .update(|s| {
                        s.data.poll_count += 1;
                        slots::forget_closed_scroll(&mut s.data, &open);
                    })
                    .await;
                let e = self.record_error(e).await;
                return Err(e);
            }
            // A slice whose share is read, with nothing of it left to commit.
            for i in 0..self.slots.len() {
                let slot = &self.slots[i];
                if slot.backfill.as_ref().is_some_and(|b| b.ended)
                    && slot.next_commit == slot.next_seq
                {
                    self.hand_over(i).await;
                    if self.persistent {
                        state.save().await?;
                    }
                }
            }
        }
        let n = self.slots.len();
        let ready = (0..n)
            .map(|k| (self.next_slot + k) % n)
            .find(|&i| self.slots[i].ready.is_some());
        // Caught up: documents that appeared behind the cursor, if looked for.
        let late = if ready.is_none() && self.late.is_some() {
            match self.poll_late().await {
                Ok(late) => late,
                Err(e) => {
                    state.update(|s| s.data.poll_count += 1).await;
                    return Err(self.record_error(e).await);
                }
            }
        } else {
            None
        };
        let now = chrono::Utc::now();
        let empty = ready.is_none() && late.is_none();
        let open = slots::open_scrolls(&self.slots);
        state
            .update(|s| {
                s.data.poll_count += 1;
                s.data.last_poll_timestamp = Some(now);
                slots::forget_closed_scroll(&mut s.data, &open);
                let stats = &mut s.data.processing_stats;
                stats.successful_polls_count += 1;
                stats.last_successful_poll = Some(now);
                if empty {
                    stats.empty_polls_count += 1;
                }
            })
            .await;
        if let Some(late) = late {
            return Ok(late);
        }
        let Some(index) = ready else {
            // Every slice is caught up: the next poll starts a new pass of each.
            for slot in &mut self.slots {
                slot.caught_up = false;
            }
            self.pass += 1;
            self.late_looked = false;
            return Ok(Batch {
                messages: Vec::new(),
                ack: None,
            });
        };
        self.next_slot = (index + 1) % n;
        let slot = &mut self.slots[index];
        let Some(page) = slot.ready.take() else {
            return Err(ConnectorError::NotOpen);
        };
        let Some(reader) = slot.reader.as_ref() else {
            return Err(ConnectorError::NotOpen);
        };
        let spec = reader.spec();
        let last_document_id = page.hits.last().map(|h| h.id.clone()).unwrap_or_default();
        let tail_ids = if page.backfill.is_none()
            && matches!(spec.tiebreaker(), es_query::Tiebreaker::ShardDoc)
        {
            let last_ts = page.cursor.sort.first();
            page.hits
                .iter()
                .rev()
                .take_while(|h| h.sort.first() == last_ts)
                .map(|h| crate::message::MessageId::of(&h.index, &h.id, h.seq_no))
                .collect()
        } else {
            Vec::new()
        };
        let window = if self.late.is_some() {
            late_entries(spec, &page.hits)
        } else {
            Vec::new()
        };
        let building = std::time::Instant::now();
        let (messages, bytes) = batch::to_messages(spec, page.hits);
        let ack = Ack {
            seq: self.next_seq,
            slice: index,
            slice_seq: slot.next_seq,
            cursor: page.cursor,
            last_document_id,
            documents: messages.len() as u64,
            bytes,
            pass: self.pass,
            read_took: page.read_took + building.elapsed(),
            handed_out: std::time::Instant::now(),
            scroll_id: page.scroll_id,
            tail_ids,
            window,
            late: false,
            backfill: page.backfill,
        };
        self.next_seq += 1;
        slot.next_seq += 1;
        Ok(Batch {
            messages,
            ack: Some(ack),
        })
    }

    /// Acknowledges a batch an output has made durable: advances the state's cursor
    /// (of the batch's slice) and counters and saves (compare-and-set). The batches of
    /// one slice must be committed in poll order; committing the same batch again
    /// retries a failed save.
    pub async fn commit(&mut self, ack: &Ack) -> Result<()> {
        let Some(state) = self.state.clone() else {
            return Err(ConnectorError::NotOpen);
        };
        let sliced = self.slots.len() > 1;
        let Some(slot) = self.slots.get(ack.slice) else {
            return Err(ConnectorError::invalid(
                "plugin_config.slices",
                format!(
                    "batch of slice {} committed to a source with {} slices",
                    ack.slice,
                    self.slots.len()
                ),
            ));
        };
        let next_commit = slot.next_commit;
        if ack.slice_seq == next_commit && ack.late {
            self.commit_late(ack, &state).await;
        } else if ack.slice_seq == next_commit && ack.backfill.is_some() {
            self.commit_backfill(ack, &state).await;
        } else if ack.slice_seq == next_commit {
            if self.slots[ack.slice].backfill.is_some() {
                // Its first batch after the hand-over: the share is all committed.
                self.hand_over(ack.slice).await;
            }
            let elapsed_ms = (ack.read_took + ack.handed_out.elapsed()).as_secs_f64() * 1000.0;
            if self.committed_pass != ack.pass {
                self.committed_pass = ack.pass;
                self.pass_offset = 0;
            }
            self.pass_offset += ack.documents;
            let offset = self.pass_offset;
            let open = slots::open_scrolls(&self.slots);
            self.slots[ack.slice]
                .committed_seen
                .record(ack.cursor.sort.first(), &ack.tail_ids);
            let late_window = self.record_in_window(ack);
            let seen = if self.slots.iter().all(|s| s.committed_seen.is_empty()) {
                None
            } else {
                Some(
                    self.slots
                        .iter()
                        .map(|s| s.committed_seen.encode())
                        .collect(),
                )
            };
            let cursors = if sliced {
                self.slots
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        if i == ack.slice {
                            Some(ack.cursor.clone())
                        } else {
                            s.committed.clone()
                        }
                    })
                    .collect()
            } else {
                vec![Some(ack.cursor.clone())]
            };
            let progress = progress::Progress {
                cursors,
                seen,
                late_window,
            };
            state
                .update(|s| {
                    let d = &mut s.data;
                    let batches = progress.write(d);
                    count_committed(d, ack, elapsed_ms, batches);
                    d.last_offset = offset;
                    d.last_scroll_id = ack.scroll_id.clone();
                    slots::forget_closed_scroll(d, &open);
                })
                .await;
            let slot = &mut self.slots[ack.slice];
            slot.committed = Some(ack.cursor.clone());
            slot.next_commit += 1;
            self.last_committed = Some(ack.cursor.clone());
            self.unsaved = true;
        } else if ack.slice_seq + 1 != next_commit {
            return Err(ConnectorError::OutOfOrder {
                expected: next_commit,
                got: ack.slice_seq,
            });
        }
        if self.persistent && self.unsaved {
            state.save().await?;
        }
        self.unsaved = false;
        Ok(())
    }

    /// Records a committed batch's documents in the late window and forgets what
    /// fell out of it; the window's state form (`None` when `late_window` is off).
    fn record_in_window(&mut self, ack: &Ack) -> Option<Value> {
        let kind = self.late_spec.as_ref()?.config().timestamp_type;
        let horizon = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let cursor = if i == ack.slice && !ack.late {
                    Some(&ack.cursor)
                } else {
                    s.window_cursor(self.backfill.as_ref())
                };
                cursor_millis(kind, cursor?)
            })
            .collect::<Option<Vec<i64>>>()
            .and_then(|all| all.into_iter().min());
        let window = self.late.as_mut()?;
        for (ts, key) in &ack.window {
            window.record(*ts, *key);
        }
        if let Some(horizon) = horizon {
            window.prune(horizon);
        }
        Some(window.to_value())
    }

    /// Commits a batch `late_window` found: its documents join the window and
    /// the counts; the cursors stay.
    async fn commit_late(&mut self, ack: &Ack, state: &StateManager) {
        let window = self.record_in_window(ack);
        let documents = ack.documents;
        let bytes = ack.bytes;
        state
            .update(|s| {
                let d = &mut s.data;
                progress::write_late(d, window, documents);
                d.total_documents_fetched += documents;
                d.processing_stats.total_bytes_processed += bytes;
            })
            .await;
        self.slots[ack.slice].next_commit += 1;
        self.unsaved = true;
    }

    /// Commits a backfill batch: its slice's position in the share, the counts and
    /// the late window; the slice hands over if its share is all committed.
    async fn commit_backfill(&mut self, ack: &Ack, state: &StateManager) {
        let window = self.record_in_window(ack);
        let Some(position) = ack.backfill.clone() else {
            return;
        };
        let elapsed_ms = (ack.read_took + ack.handed_out.elapsed()).as_secs_f64() * 1000.0;
        if let Some(run) = &mut self.backfill {
            run.documents += ack.documents;
        }
        let stored = self.stored_backfill(Some((ack.slice, &position)));
        state
            .update(|s| {
                let d = &mut s.data;
                d.extra.insert(BACKFILL_FIELD.into(), stored.to_value());
                if let Some(window) = window {
                    d.extra.insert(LATE_FIELD.into(), window);
                }
                let batches = progress::count_batch(d);
                count_committed(d, ack, elapsed_ms, batches);
            })
            .await;
        let slot = &mut self.slots[ack.slice];
        slot.next_commit += 1;
        if let Some(share) = &mut slot.backfill {
            share.committed = (position.pit, Some(position.after));
        }
        let done =
            slot.backfill.as_ref().is_some_and(|b| b.ended) && slot.next_commit == slot.next_seq;
        if done {
            self.hand_over(ack.slice).await;
        }
        self.unsaved = true;
    }

    /// The backfill record for the state, `update` being a slice's new position.
    fn stored_backfill(&self, update: Option<(usize, &backfill::Position)>) -> backfill::Stored {
        let slices = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let share = s.backfill.as_ref()?;
                let (pit, after) = match update {
                    Some((slice, position)) if slice == i => {
                        (position.pit.clone(), Some(position.after.clone()))
                    }
                    _ => share.committed.clone(),
                };
                Some(backfill::StoredSlice {
                    pit: pit.as_str().to_owned(),
                    after,
                })
            })
            .collect::<Vec<_>>();
        backfill::Stored {
            upper: self.backfill.as_ref().map(|b| b.upper.clone()),
            done: slices.iter().all(Option::is_none),
            slices,
            documents: self.backfill.as_ref().map_or(0, |b| b.documents),
        }
    }

    /// Slice `slice` read and committed its whole share: its cursor becomes the
    /// hand-over. Once every slice has, the backfill is done and its points in time
    /// are closed. Recorded in the state (saved by the caller).
    async fn hand_over(&mut self, slice: usize) {
        let (Some(run), Some(state)) = (self.backfill.clone(), self.state.clone()) else {
            return;
        };
        let Some(share) = self.slots[slice].backfill.take() else {
            return;
        };
        self.slots[slice].committed = Some(run.handover.clone());
        if self.last_committed.is_none() {
            self.last_committed = Some(run.handover.clone());
        }
        let stored = self.stored_backfill(None);
        let cursors: Vec<Option<Cursor>> = self.slots.iter().map(|s| s.committed.clone()).collect();
        state
            .update(|s| {
                progress::write_cursors(&mut s.data, &cursors);
                s.data
                    .extra
                    .insert(BACKFILL_FIELD.into(), stored.to_value());
            })
            .await;
        self.unsaved = true;
        tracing::info!(slice, handover = ?run.handover.sort, "backfill: slice handed over to the incremental cursor");
        let mut pits = vec![share.pit, share.committed.0];
        if stored.done {
            tracing::info!(documents = run.documents, "backfill done");
            self.backfill = None;
            pits.append(&mut self.finished_pits);
            if let (Some(client), Some(spec)) = (
                &self.client,
                self.slots
                    .first()
                    .and_then(|s| s.reader.as_ref())
                    .map(Reader::spec),
            ) {
                backfill::close_pits(client, spec, pits).await;
            }
        } else {
            self.finished_pits.extend(pits);
        }
    }

    /// Starts the backfill `backfill_pending` asks for: finds the hand-over in a
    /// new point in time and records it in the state (saved), so that a restart
    /// resumes this backfill.
    async fn start_backfill(&mut self) -> Result<()> {
        let (Some(client), Some(validated), Some(server), Some(state)) = (
            self.client.as_ref(),
            self.validated.as_ref(),
            self.server.as_ref(),
            self.state.clone(),
        ) else {
            return Err(ConnectorError::NotOpen);
        };
        let spec = query_config(validated)
            .build(server.flavor)
            .map_err(|e| ConnectorError::invalid("plugin_config", e))?;
        let ceiling = reader::ceiling(self.config.settle);
        let started =
            backfill::start(client, &spec.with_ceiling(ceiling), self.config.keep_alive).await?;
        self.backfill_pending = false;
        let stored = match started {
            None => {
                tracing::info!(index = %self.config.index, "backfill: nothing to read; reading incrementally");
                backfill::Stored {
                    upper: None,
                    slices: Vec::new(),
                    documents: 0,
                    done: true,
                }
            }
            Some((run, pit)) => {
                tracing::info!(index = %self.config.index, upper = ?run.upper.sort, slices = self.slots.len(), "backfill: reading the index in index order up to its last document, then incrementally");
                for slot in &mut self.slots {
                    slot.backfill = Some(backfill::SliceBackfill::new(pit.clone()));
                }
                self.backfill = Some(run);
                self.stored_backfill(None)
            }
        };
        state
            .update(|s| {
                s.data
                    .extra
                    .insert(BACKFILL_FIELD.into(), stored.to_value());
            })
            .await;
        if self.persistent {
            state.save().await?;
        }
        Ok(())
    }

    /// A batch of late documents: found by looking behind the cursor once per
    /// pass (when every slice is caught up), handed out `batch_size` at a time.
    /// `None` when there are none (left).
    async fn poll_late(&mut self) -> Result<Option<Batch>> {
        if self.late_pending.is_empty() {
            if self.late_looked {
                return Ok(None);
            }
            // Only once everything handed out is committed: the window must hold
            // every delivered document, or it would be found again.
            if self.slots.iter().any(|s| s.next_commit != s.next_seq) {
                return Ok(None);
            }
            self.late_looked = true;
            self.look_behind().await?;
            if self.late_pending.is_empty() {
                return Ok(None);
            }
        }
        let (Some(spec), Some(slot)) = (self.late_spec.as_ref(), self.slots.first_mut()) else {
            return Ok(None);
        };
        let Some(cursor) = slot.read_position.clone() else {
            return Ok(None);
        };
        let take = self.config.batch_size.min(self.late_pending.len());
        let hits: Vec<es_query::Hit> = self.late_pending.drain(..take).collect();
        let window = late_entries(spec, &hits);
        if let Some(late) = self.late.as_mut() {
            for (_, key) in &window {
                late.hand_out(*key);
            }
        }
        let last_document_id = hits.last().map(|h| h.id.clone()).unwrap_or_default();
        let (messages, bytes) = batch::to_messages(spec, hits);
        let ack = Ack {
            seq: self.next_seq,
            slice: 0,
            slice_seq: slot.next_seq,
            cursor,
            last_document_id,
            documents: messages.len() as u64,
            bytes,
            pass: self.pass,
            read_took: std::time::Duration::ZERO,
            handed_out: std::time::Instant::now(),
            scroll_id: None,
            tail_ids: Vec::new(),
            window,
            late: true,
            backfill: None,
        };
        self.next_seq += 1;
        slot.next_seq += 1;
        Ok(Some(Batch {
            messages,
            ack: Some(ack),
        }))
    }

    /// Counts the documents per bucket of the window behind the slices' cursors,
    /// up to the furthest (one aggregation), and re-reads the buckets holding more than was
    /// delivered there, keeping the documents not delivered yet in `late_pending`.
    ///
    /// The furthest, not the nearest: every slice is caught up, so a document
    /// not delivered up to the furthest cursor is late, and one in the slice
    /// whose cursor is past it is read by no slice. One in a slice whose cursor
    /// is behind it would also be read by that slice's next page, which leaves
    /// out what the window [contains](late::LateWindow::contains).
    async fn look_behind(&mut self) -> Result<()> {
        const WHAT: &str = "late_window: look behind the cursor";
        let (Some(client), Some(spec), Some(window)) = (
            self.client.as_ref(),
            self.late_spec.as_ref(),
            self.late.as_ref(),
        ) else {
            return Ok(());
        };
        let kind = spec.config().timestamp_type;
        // Every slice must have delivered something: one that has not reads from
        // the start anyway.
        let Some(cursors) = self
            .slots
            .iter()
            .map(|s| cursor_millis(kind, s.read_position.as_ref()?))
            .collect::<Option<Vec<i64>>>()
        else {
            return Ok(());
        };
        let (Some(nearest), Some(furthest)) = (cursors.iter().min(), cursors.iter().max()) else {
            return Ok(());
        };
        let range = window.range(*nearest, *furthest);
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms);
        let (Some(count_from), Some(count_until)) = (at(range.count_from), at(range.count_until))
        else {
            return Ok(());
        };
        let request = spec
            .count_per_bucket(Some(count_from), count_until, window.bucket())
            .map_err(|e| client.refused(WHAT, e))?;
        let (status, body) = client.send(&request, WHAT).await?;
        let counts =
            es_query::parse_bucket_counts(status, &body).map_err(|e| client.refused(WHAT, e))?;
        let changed = window.changed(&counts, range.from, range.until);
        let mut pending: Vec<es_query::Hit> = Vec::new();
        let mut keys = std::collections::HashSet::new();
        for (a, b) in &changed {
            let (Some(a), Some(b)) = (at(*a), at(*b)) else {
                continue;
            };
            let request = spec
                .documents_between(Some(a), b, self.config.keep_alive)
                .map_err(|e| client.refused(WHAT, e))?;
            client
                .scroll_all(spec, &request, self.config.keep_alive, WHAT, |hit| {
                    let Some(ts) = spec.hit_timestamp(&hit) else {
                        return;
                    };
                    let key = dedup::document_key(&hit.index, &hit.id);
                    if !window.contains(ts.timestamp_millis(), key) && keys.insert(key) {
                        pending.push(hit);
                    }
                })
                .await?;
        }
        if !pending.is_empty() {
            tracing::info!(
                documents = pending.len(),
                buckets = changed.len(),
                window = ?window.window(),
                remembered = window.remembered(),
                "late_window: documents appeared behind the cursor; delivering them"
            );
        }
        self.late_pending.extend(pending);
        Ok(())
    }

    /// Awaits `attempt` (an output's, say), counting its error as
    /// [`record_error`](Self::record_error) does.
    pub async fn recording_error<T, E: Into<ConnectorError>>(
        &self,
        attempt: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        match attempt.await {
            Ok(value) => Ok(value),
            Err(e) => Err(self.record_error(e.into()).await),
        }
    }

    /// Counts `error` in `error_count`/`last_error` and returns it. Outputs' errors
    /// are counted here too by [`crate::run()`]; failed state saves by the state
    /// manager.
    pub async fn record_error(&self, error: ConnectorError) -> ConnectorError {
        if let Some(state) = &self.state {
            count_error(state, &error).await;
        }
        error
    }

    /// Forgets polled but uncommitted batches: the next poll starts again after the
    /// last committed one of each slice (closing any open point in time or scroll).
    pub async fn rewind(&mut self) {
        let client = self.client.as_ref();
        for slot in &mut self.slots {
            let committed = slot.committed.clone();
            slot.reset(client, committed).await;
        }
        self.after_reset();
        self.forget_closed_scroll().await;
    }

    /// Closes the points in time or scrolls and saves the final state. The batch
    /// `poll()` returned last is not committed (see the module docs).
    pub async fn close(&mut self) -> Result<()> {
        if let Some(client) = &self.client {
            for slot in &mut self.slots {
                if let Some(reader) = &mut slot.reader {
                    reader.close(client).await;
                }
            }
        }
        self.forget_closed_scroll().await;
        if let Some(state) = &self.state
            && self.persistent
        {
            state.close().await?;
        }
        Ok(())
    }

    /// Documents left to read from the read position: `_count` with the same query
    /// and window, from the cursor's timestamp inclusive (an upper estimate; with
    /// `slices` > 1, from the earliest slice's position). For progress reporting only.
    pub async fn count_remaining(&self) -> Result<u64> {
        const WHAT: &str = "count";
        let (Some(client), Some(reader)) = (
            &self.client,
            self.slots.first().and_then(|s| s.reader.as_ref()),
        ) else {
            return Err(ConnectorError::NotOpen);
        };
        let position = slots::earliest(self.slots.iter().map(|s| s.read_position.as_ref()));
        let request = reader
            .spec()
            .count(position)
            .map_err(|e| client.refused(WHAT, e))?;
        let body = client.send_ok(&request, WHAT).await?;
        es_query::parse_count(&body).map_err(|e| client.refused(WHAT, e))
    }

    /// The cursor of the last committed batch (with `slices` > 1, of whichever slice
    /// was committed last; see [`ElasticsearchSource::committed_cursors`]).
    pub fn committed_cursor(&self) -> Option<&Cursor> {
        if self.slots.len() == 1 {
            self.slots[0].committed.as_ref()
        } else {
            self.last_committed.as_ref()
        }
    }

    /// The committed cursor of each slice (one entry without `slices`).
    pub fn committed_cursors(&self) -> Vec<Option<Cursor>> {
        self.slots.iter().map(|s| s.committed.clone()).collect()
    }

    /// The server seen at open.
    pub fn server(&self) -> Option<&ServerInfo> {
        self.server.as_ref()
    }

    /// How pages are read (decided at open from `pagination` and the server).
    pub fn read_mode(&self) -> Option<ReadMode> {
        self.slots
            .first()
            .and_then(|s| s.reader.as_ref())
            .map(Reader::mode)
    }

    /// The point in time in use, if any (of the first slice; for diagnostics and tests).
    pub fn pit_id(&self) -> Option<&PitId> {
        self.slots
            .iter()
            .find_map(|s| s.reader.as_ref().and_then(Reader::pit_id))
    }

    /// The scroll in use, if any (of the first slice that has one).
    pub fn scroll_id(&self) -> Option<&ScrollId> {
        self.slots
            .iter()
            .find_map(|s| s.reader.as_ref().and_then(Reader::scroll_id))
    }

    /// The configuration.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// Whether the state is kept in a store (a `state` block is enabled), once
    /// the state is loaded.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The cluster URL, without credentials.
    pub fn url(&self) -> String {
        self.config.url.base().to_owned()
    }

    fn metadata(&self) -> StateMetadata {
        StateMetadata {
            connector_type: CONNECTOR_TYPE.into(),
            connector_id: self.id,
            index: self.config.index.clone(),
            url: self.config.url.base().to_owned(),
            extra: Default::default(),
        }
    }

    /// The manager, opening the configured store on first use (an in-memory one
    /// when state is disabled).
    async fn manager(&mut self) -> Result<StateManager> {
        if let Some(manager) = &self.state {
            return Ok(manager.clone());
        }
        // Before `open` (the state commands), the configuration is checked here.
        let validated = match &self.validated {
            Some(validated) => validated.clone(),
            None => self.config.validate()?,
        };
        let manager = match open_manager_reporting(&validated, Some(&self.metrics)).await? {
            Some(manager) => {
                self.persistent = true;
                manager
            }
            None => StateManager::new(
                Arc::new(InMemoryStore::new()),
                StateId::new(format!("{CONNECTOR_TYPE}_{}", self.id))?,
                ManagerOptions::default(),
            )?,
        };
        self.state = Some(manager.clone());
        Ok(manager)
    }

    /// Takes the cursor(s) of a (re)loaded state as both committed and read positions.
    async fn adopt(&mut self, state: &ConnectorState) -> Result<()> {
        let cursors = progress::stored_cursors(state, self.slots.len())?;
        let seen = progress::stored_seen(state, &cursors)?;
        let stored_backfill = backfill::stored(state, self.slots.len())?;
        self.late = self.restore_late(state)?;
        self.late_pending.clear();
        self.late_looked = false;
        let client = self.client.as_ref();
        for ((slot, cursor), seen) in self.slots.iter_mut().zip(cursors).zip(seen) {
            slot.committed_seen = seen;
            slot.backfill = None;
            slot.reset(client, cursor).await;
        }
        self.backfill = None;
        self.finished_pits.clear();
        self.backfill_pending = false;
        match stored_backfill {
            Some(stored) if !stored.done => {
                if let Some(upper) = &stored.upper {
                    let handover = match self.slots.first().and_then(|s| s.reader.as_ref()) {
                        Some(reader) => reader.spec().handover_cursor(upper),
                        None => upper.clone(),
                    };
                    self.backfill = Some(backfill::Backfill {
                        upper: upper.clone(),
                        handover,
                        documents: stored.documents,
                    });
                }
                for (slot, share) in self.slots.iter_mut().zip(&stored.slices) {
                    slot.backfill = share.as_ref().map(|share| {
                        let pit = PitId::new(share.pit.clone());
                        let mut resumed = backfill::SliceBackfill::new(pit.clone());
                        resumed.after = share.after.clone();
                        resumed.committed = (pit, share.after.clone());
                        resumed
                    });
                }
            }
            Some(_) => {}
            None => {
                self.backfill_pending =
                    self.config.backfill && self.slots.iter().all(|s| s.committed.is_none());
            }
        }
        self.last_committed = None;
        self.after_reset();
        self.forget_closed_scroll().await;
        Ok(())
    }

    /// The late window of a (re)loaded state, or a fresh one (`None` when off).
    fn restore_late(&self, state: &ConnectorState) -> Result<Option<late::LateWindow>> {
        restore_late(self.config.late_window, state)
    }

    /// After every slot went back to its committed cursor: a new pass begins.
    fn after_reset(&mut self) {
        self.next_seq = self.slots.iter().map(|s| s.next_commit).sum();
        self.next_slot = 0;
        self.outstanding = None;
        self.pass += 1;
    }

    /// Clears `last_scroll_id` when its scroll is closed (the readers were closed
    /// or reset; a stored one is never resumed).
    async fn forget_closed_scroll(&self) {
        let Some(state) = &self.state else { return };
        let open = slots::open_scrolls(&self.slots);
        let stale = state
            .get()
            .await
            .data
            .last_scroll_id
            .is_some_and(|id| !open.contains(&id));
        if stale {
            state
                .update(|s| slots::forget_closed_scroll(&mut s.data, &open))
                .await;
        }
    }
}
