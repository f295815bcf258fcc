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

mod batch;
mod client;
mod dedup;
mod reader;
mod state_ext;

use std::sync::Arc;

use es_query::{Cursor, Flavor, PitId, QueryConfig, QueryError, QuerySpec, ScrollId, Tiebreaker};
use serde_json::Value;
use state_core::{
    ConnectorState, InMemoryStore, ManagerOptions, StateId, StateManager, StateMetadata,
    strip_userinfo,
};

use crate::config::{Pagination, PluginConfig};
use crate::error::{ConnectorError, Result};
use crate::message::Message;
use crate::state::open_manager;

pub use batch::{Ack, Batch};
pub use client::ServerInfo;
pub use reader::ReadMode;
pub use state_ext::StateManagerExt;

use client::EsClient;
use reader::Reader;

/// `metadata.connector_type` of the state document.
pub const CONNECTOR_TYPE: &str = "elasticsearch_source";
/// Where the cursor lives in the state document: `data.cursor = {"sort": [...]}`.
pub const CURSOR_FIELD: &str = "cursor";
/// `data.batches_acknowledged`: committed non-empty batches (the average's weight).
pub const BATCHES_FIELD: &str = "batches_acknowledged";

/// The Elasticsearch/OpenSearch source.
#[derive(Debug)]
pub struct ElasticsearchSource {
    id: u64,
    config: PluginConfig,
    client: Option<EsClient>,
    server: Option<ServerInfo>,
    reader: Option<Reader>,
    state: Option<StateManager>,
    /// State is persisted (a `state` block is enabled), not only kept in memory.
    persistent: bool,
    /// The cursor of the last committed batch.
    committed: Option<Cursor>,
    /// The cursor of the last batch returned by a poll.
    read_position: Option<Cursor>,
    next_seq: u64,
    next_commit: u64,
    unsaved: bool,
    /// The batch `poll()` returned last, committed by the next `poll()`.
    outstanding: Option<Ack>,
    /// Documents already returned at the read position's timestamp (`_shard_doc` only).
    seen: dedup::SeenAtTimestamp,
}

impl ElasticsearchSource {
    /// A source for connector `id`. No IO: [`ElasticsearchSource::open`] connects.
    pub fn new(id: u64, config: PluginConfig) -> Self {
        ElasticsearchSource {
            id,
            config,
            client: None,
            server: None,
            reader: None,
            state: None,
            persistent: false,
            committed: None,
            read_position: None,
            next_seq: 0,
            next_commit: 0,
            unsaved: false,
            outstanding: None,
            seen: dedup::SeenAtTimestamp::default(),
        }
    }

    /// Validates the configuration, detects the server's flavour, loads the state
    /// (when enabled) and resumes from its cursor.
    pub async fn open(&mut self) -> Result<()> {
        self.config.validate()?;
        let client = EsClient::new(&self.config)?;
        let server = client.server_info().await?;
        let mode = self.mode_for(server.flavor)?;
        let spec = self.query_spec(server.flavor)?;
        tracing::info!(url = client.url(), server = %server.flavor, version = %server.version, ?mode, index = %self.config.index, "source opened");
        self.client = Some(client);
        self.server = Some(server);
        self.reader = Some(Reader::new(spec, mode, self.config.keep_alive));
        self.load_state().await?;
        if let Some(manager) = &self.state {
            manager.start_auto_save();
        }
        Ok(())
    }

    /// Checks the configuration and asks the server who it is, without reading state.
    pub async fn check(config: &PluginConfig) -> Result<ServerInfo> {
        config.validate()?;
        let client = EsClient::new(config)?;
        let server = client.server_info().await?;
        let source = ElasticsearchSource::new(0, config.clone());
        source.mode_for(server.flavor)?;
        source.query_spec(server.flavor)?;
        Ok(server)
    }

    fn mode_for(&self, flavor: Flavor) -> Result<ReadMode> {
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
            Pagination::SearchAfter => ReadMode::Plain,
        })
    }

    fn query_spec(&self, flavor: Flavor) -> Result<QuerySpec> {
        let c = &self.config;
        let mut query = QueryConfig::new(c.index.clone())
            .with_timestamp_field(c.timestamp_field.clone())
            .with_timestamp_type(c.timestamp_type)
            .with_missing_timestamp(c.missing_timestamp)
            .with_query(c.query_json()?)
            .with_batch_size(c.batch_size);
        if let Some(field) = &c.tiebreaker_field {
            query = query.with_tiebreaker_field(field.clone());
        }
        if let Some(slice) = c.slice {
            query = query.with_slice(slice.id, slice.max);
        }
        query.build(flavor).map_err(|e| match e {
            QueryError::InvalidConfig { key, reason } => {
                ConnectorError::invalid(format!("plugin_config.{key}"), reason)
            }
            other => ConnectorError::invalid("plugin_config", other),
        })
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
    pub async fn poll_batch(&mut self) -> Result<Batch> {
        let (Some(client), Some(reader), Some(state)) =
            (&self.client, &mut self.reader, &self.state)
        else {
            return Err(ConnectorError::NotOpen);
        };
        let polled_at = std::time::Instant::now();
        let dedup = matches!(reader.spec().tiebreaker(), Tiebreaker::ShardDoc);
        let mut page = loop {
            let mut page = match reader.next_page(client, self.read_position.as_ref()).await {
                Ok(page) => page,
                Err(e) => {
                    let e = self.record_error(e).await;
                    return Err(e);
                }
            };
            if !dedup || page.hits.is_empty() {
                break page;
            }
            let last = page.last_cursor();
            page.hits = self.seen.filter(std::mem::take(&mut page.hits));
            if !page.hits.is_empty() {
                break page;
            }
            // Only documents returned before: move past them and read on.
            if last.is_some() {
                self.read_position = last;
            }
        };
        let now = chrono::Utc::now();
        let empty = page.hits.is_empty();
        state
            .update(|s| {
                s.data.poll_count += 1;
                s.data.last_poll_timestamp = Some(now);
                let stats = &mut s.data.processing_stats;
                stats.successful_polls_count += 1;
                stats.last_successful_poll = Some(now);
                if empty {
                    stats.empty_polls_count += 1;
                }
            })
            .await;
        let hits = std::mem::take(&mut page.hits);
        let Some(cursor) = hits.last().and_then(es_query::Hit::cursor) else {
            return Ok(Batch {
                messages: Vec::new(),
                ack: None,
            });
        };
        let spec = reader.spec();
        let last_document_id = hits.last().map(|h| h.id.clone()).unwrap_or_default();
        let scroll_id = reader.scroll_id().map(|s| s.as_str().to_owned());
        let messages: Vec<Message> = hits
            .into_iter()
            .map(|hit| batch::to_message(spec, hit))
            .collect();
        let bytes = messages.iter().map(|m| m.payload.get().len() as u64).sum();
        let ack = Ack {
            seq: self.next_seq,
            cursor: cursor.clone(),
            last_document_id,
            documents: messages.len() as u64,
            bytes,
            polled_at,
            scroll_id,
        };
        self.next_seq += 1;
        self.read_position = Some(cursor);
        Ok(Batch {
            messages,
            ack: Some(ack),
        })
    }

    /// Acknowledges a batch an output has made durable: advances the state's cursor
    /// and counters and saves (compare-and-set). Batches must be committed in poll
    /// order; committing the same batch again retries a failed save.
    pub async fn commit(&mut self, ack: &Ack) -> Result<()> {
        let Some(state) = &self.state else {
            return Err(ConnectorError::NotOpen);
        };
        if ack.seq == self.next_commit {
            let elapsed_ms = ack.polled_at.elapsed().as_secs_f64() * 1000.0;
            let cursor = serde_json::to_value(&ack.cursor).unwrap_or(Value::Null);
            state
                .update(|s| {
                    let d = &mut s.data;
                    d.extra.insert(CURSOR_FIELD.into(), cursor);
                    d.total_documents_fetched += ack.documents;
                    d.last_offset = d.total_documents_fetched;
                    d.last_document_id = Some(ack.last_document_id.clone());
                    d.last_scroll_id = ack.scroll_id.clone();
                    let batches = d
                        .extra
                        .get(BATCHES_FIELD)
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                        + 1;
                    d.extra.insert(BATCHES_FIELD.into(), batches.into());
                    let stats = &mut d.processing_stats;
                    stats.total_bytes_processed += ack.bytes;
                    stats.avg_batch_processing_time_ms +=
                        (elapsed_ms - stats.avg_batch_processing_time_ms) / batches as f64;
                })
                .await;
            self.committed = Some(ack.cursor.clone());
            self.next_commit += 1;
            self.unsaved = true;
        } else if ack.seq + 1 != self.next_commit {
            return Err(ConnectorError::OutOfOrder {
                expected: self.next_commit,
                got: ack.seq,
            });
        }
        if self.persistent && self.unsaved {
            state.save().await?;
        }
        self.unsaved = false;
        Ok(())
    }

    /// Counts `error` in `error_count`/`last_error` and returns it. Outputs' errors
    /// are counted here too by [`crate::run()`].
    pub async fn record_error(&self, error: ConnectorError) -> ConnectorError {
        if let Some(state) = &self.state {
            let text = error.to_string();
            state
                .update(|s| {
                    s.data.error_count += 1;
                    s.data.last_error = Some(text);
                })
                .await;
        }
        error
    }

    /// Forgets polled but uncommitted batches: the next poll starts again after the
    /// last committed one (closing any open point in time or scroll).
    pub async fn rewind(&mut self) {
        if let (Some(client), Some(reader)) = (&self.client, &mut self.reader) {
            reader.close(client).await;
        }
        self.read_position = self.committed.clone();
        self.next_seq = self.next_commit;
        self.outstanding = None;
        self.seen.clear();
    }

    /// Closes the point in time or scroll and saves the final state. The batch
    /// `poll()` returned last is not committed (see the module docs).
    pub async fn close(&mut self) -> Result<()> {
        if let (Some(client), Some(reader)) = (&self.client, &mut self.reader) {
            reader.close(client).await;
        }
        if let Some(state) = &self.state
            && self.persistent
        {
            state.close().await?;
        }
        Ok(())
    }

    /// Documents left to read from the read position: `_count` with the same query
    /// and window, from the cursor's timestamp inclusive (an upper estimate). For
    /// progress reporting only.
    pub async fn count_remaining(&self) -> Result<u64> {
        const WHAT: &str = "count";
        let (Some(client), Some(reader)) = (&self.client, &self.reader) else {
            return Err(ConnectorError::NotOpen);
        };
        let request = reader
            .spec()
            .count(self.read_position.as_ref())
            .map_err(|e| client.refused(WHAT, e))?;
        let (status, body) = client.send(&request, WHAT).await?;
        if !(200..300).contains(&status) {
            return Err(client.refused(
                WHAT,
                es_query::QueryError::from_error_response(status, &body),
            ));
        }
        es_query::parse_count(&body).map_err(|e| client.refused(WHAT, e))
    }

    /// The cursor of the last committed batch.
    pub fn committed_cursor(&self) -> Option<&Cursor> {
        self.committed.as_ref()
    }

    /// The server seen at open.
    pub fn server(&self) -> Option<&ServerInfo> {
        self.server.as_ref()
    }

    /// How pages are read (decided at open from `pagination` and the server).
    pub fn read_mode(&self) -> Option<ReadMode> {
        self.reader.as_ref().map(Reader::mode)
    }

    /// The point in time in use, if any (for diagnostics and tests).
    pub fn pit_id(&self) -> Option<&PitId> {
        self.reader.as_ref().and_then(Reader::pit_id)
    }

    /// The scroll in use, if any.
    pub fn scroll_id(&self) -> Option<&ScrollId> {
        self.reader.as_ref().and_then(Reader::scroll_id)
    }

    /// The configuration.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// The cluster URL, without credentials.
    pub fn url(&self) -> String {
        strip_userinfo(&self.config.url)
    }

    fn metadata(&self) -> StateMetadata {
        StateMetadata {
            connector_type: CONNECTOR_TYPE.into(),
            connector_id: self.id,
            index: self.config.index.clone(),
            url: strip_userinfo(&self.config.url),
            extra: Default::default(),
        }
    }

    /// The manager, opening the configured store on first use (an in-memory one
    /// when state is disabled).
    async fn manager(&mut self) -> Result<StateManager> {
        if let Some(manager) = &self.state {
            return Ok(manager.clone());
        }
        let manager = match open_manager(&self.config).await? {
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

    /// Takes the cursor of a (re)loaded state as both committed and read position.
    async fn adopt(&mut self, state: &ConnectorState) -> Result<()> {
        let cursor = match state.data.extra.get(CURSOR_FIELD) {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                serde_json::from_value::<Cursor>(value.clone()).map_err(|e| {
                    ConnectorError::State(state_core::StateError::Corrupt {
                        id: state.id.clone(),
                        location: format!("data.{CURSOR_FIELD}"),
                        reason: format!("not a cursor {{\"sort\": [...]}}: {e}"),
                    })
                })?,
            ),
        };
        if let (Some(client), Some(reader)) = (&self.client, &mut self.reader) {
            reader.close(client).await;
        }
        self.committed = cursor.clone();
        self.read_position = cursor;
        self.next_seq = self.next_commit;
        self.outstanding = None;
        self.seen.clear();
        Ok(())
    }
}
