//! [`ElasticsearchSinkPlugin`]: the SDK's [`Sink`] over `connector`'s
//! Elasticsearch output (the [`bulk`] processor).

use std::time::Duration;

use async_trait::async_trait;
use connector::output::{ElasticsearchOutput, ElasticsearchOutputOptions, Refusal};
use connector::retried;
use connector::run::{Backoff, DEFAULT_MIN_BACKOFF, Retry};
use iggy_connector_sdk::{ConsumedMessage, Error, MessagesMetadata, Sink, TopicMetadata};
use serde_json::Value;
use state_core::redact_url;

use crate::config::SinkConfig;
use crate::dead_letter::{self, DeadLetter, Document};
use crate::document::{document_json, target_document};

/// The plugin the runtime loads: `open` starts the output, `consume` indexes a
/// batch and returns once every document is indexed or refused for good
/// (holding the batch through outages), `close` stops.
#[derive(Debug)]
pub struct ElasticsearchSinkPlugin {
    id: u32,
    /// The parsed `[plugin_config]`, or why it is not acceptable (reported by `open`).
    config: Result<SinkConfig, String>,
    /// Set by `open`. Its lock makes consume calls take turns, so a call reports
    /// exactly its own failures (the runtime may consume several topics or
    /// partitions concurrently) and at most one batch per caller is held.
    output: tokio::sync::Mutex<Option<ElasticsearchOutput>>,
}

impl ElasticsearchSinkPlugin {
    /// What the SDK's `sink_connector!` calls with the runtime's `plugin_config` (JSON). No IO.
    pub fn new(id: u32, config: Value) -> Self {
        ElasticsearchSinkPlugin {
            id,
            config: SinkConfig::from_json(config),
            output: tokio::sync::Mutex::new(None),
        }
    }
}

/// The bulk processor's own retries end after `max_retry_delay` (so a consume call
/// in an outage logs and starts over at least that often), each pause at most
/// its default or `max_retry_delay`, whichever is shorter.
fn bulk_backoff(max_retry_delay: Duration) -> bulk::Backoff {
    let default = bulk::Backoff::default();
    bulk::Backoff {
        initial: default.initial.min(max_retry_delay),
        max_delay: default.max_delay.min(max_retry_delay),
        max_elapsed: max_retry_delay,
        ..default
    }
}

#[async_trait]
impl Sink for ElasticsearchSinkPlugin {
    async fn open(&mut self) -> Result<(), Error> {
        let config = match &self.config {
            Ok(config) => config,
            Err(reason) => {
                tracing::error!("Elasticsearch sink {}: {reason}", self.id);
                return Err(Error::InvalidConfigValue(reason.clone()));
            }
        };
        let options = ElasticsearchOutputOptions {
            workers: config.workers,
            bulk_actions: config.bulk_actions,
            request_timeout: Some(config.request_timeout),
            backoff: bulk_backoff(config.max_retry_delay),
            max_buffered_bytes: None,
            adaptive: config.adaptive_concurrency,
        };
        let endpoint = config.endpoint().map_err(Error::InvalidConfigValue)?;
        let output = ElasticsearchOutput::with_options(&endpoint, &config.index, options)
            .map_err(|e| Error::InvalidConfigValue(format!("plugin_config.url: {e}")))?;
        *self.output.get_mut() = Some(output);
        tracing::info!(
            "Elasticsearch sink {} opened: indexing into {} at {}; documents refused for good {}; \
             while Elasticsearch is unavailable a batch is held and sent again (every {:?} at most)",
            self.id,
            config.index,
            redact_url(&config.url),
            match &config.dead_letter_path {
                Some(path) => format!("go to {}", path.display()),
                None => "fail the consume call (no dead_letter_path)".into(),
            },
            config.max_retry_delay,
        );
        Ok(())
    }

    async fn consume(
        &self,
        topic: &TopicMetadata,
        meta: MessagesMetadata,
        messages: Vec<ConsumedMessage>,
    ) -> Result<(), Error> {
        let Ok(config) = &self.config else {
            return Err(Error::InitError("the sink is not open".into()));
        };
        let mut output = self.output.lock().await;
        let Some(es) = output.as_mut() else {
            return Err(Error::InitError("the sink is not open".into()));
        };
        let total = messages.len();
        let letter =
            |id: String, offset: Option<u64>, status, error, attempts, document| DeadLetter {
                plugin_id: self.id,
                stream: topic.stream.clone(),
                topic: topic.topic.clone(),
                partition_id: meta.partition_id,
                offset,
                id,
                index: config.index.clone(),
                status,
                error,
                attempts,
                document,
            };
        let mut rejected = Vec::new();
        let mut requests = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(total);
        for message in messages {
            let target = target_document(message.id, message.headers.as_ref());
            match document_json(message.payload) {
                Ok(bytes) => {
                    requests.push(target.index_request(&config.index, bytes));
                    offsets.push(message.offset);
                }
                Err((reason, bytes)) => rejected.push(letter(
                    target.id,
                    Some(message.offset),
                    None,
                    reason,
                    0,
                    Document::of(&bytes),
                )),
            }
        }
        let held = format!(
            "Elasticsearch sink {}: {} documents of stream {}, topic {}, partition {} (offsets {}..={}) \
             not indexed into {}; holding them and sending them again",
            self.id,
            requests.len(),
            topic.stream,
            topic.topic,
            meta.partition_id,
            offsets.first().copied().unwrap_or_default(),
            offsets.last().copied().unwrap_or_default(),
            config.index,
        );
        let max = config.max_retry_delay;
        let mut backoff = Backoff::new(DEFAULT_MIN_BACKOFF.min(max), max);
        let mut errors = 0u64;
        // The runtime committed the batch's offsets when it polled it: giving up
        // here would lose it. Only documents refused for good leave the loop; a
        // whole-request refusal is not the documents' fault and not passing by
        // itself, but someone can fix it (credentials, privileges, a body limit)
        // while the batch waits (logged at `error`).
        let refusals = if requests.is_empty() {
            Vec::new()
        } else {
            // The runtime has no shutdown signal for a plugin's consume.
            let mut shutdown = None;
            let retry = Retry::new(&mut backoff, &mut shutdown, &mut errors).retry_if(|_| true);
            match retried!(retry, &held, es.send_requests(requests.clone())) {
                Ok(Some(refusals)) => refusals,
                // Every failure is retried and there is no shutdown to wait for,
                // so this is not reached; if it were, nothing is acknowledged.
                Ok(None) => {
                    return Err(Error::CannotStoreData(format!("{held}: stopped")));
                }
                Err(e) => return Err(Error::CannotStoreData(format!("{held}: {e}"))),
            }
        };
        if errors > 0 {
            tracing::info!(
                "Elasticsearch sink {}: the held documents were indexed after {errors} failed attempts",
                self.id
            );
        }
        for Refusal {
            position,
            status,
            error,
            attempts,
            request,
        } in refusals
        {
            rejected.push(letter(
                request.doc_id().unwrap_or_default().to_owned(),
                offsets.get(position).copied(),
                status,
                error,
                attempts,
                Document::of(request.source().unwrap_or_default()),
            ));
        }
        drop(output);
        if rejected.is_empty() {
            return Ok(());
        }
        for r in &rejected {
            tracing::error!(
                "Elasticsearch sink {}: document {} not indexed into {} (stream {}, topic {}, partition {}, offset {}, status {}): {}",
                self.id,
                r.id,
                r.index,
                r.stream,
                r.topic,
                r.partition_id,
                r.offset.map_or_else(|| "?".into(), |o| o.to_string()),
                r.status.map_or_else(|| "none".into(), |s| s.to_string()),
                r.error
            );
        }
        let first = &rejected[0];
        let summary = format!(
            "{} of {total} documents were not indexed into {}; first: {} ({})",
            rejected.len(),
            config.index,
            first.id,
            first.error
        );
        match &config.dead_letter_path {
            Some(path) => {
                let written = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || dead_letter::append(&path, &rejected)
                })
                .await;
                match written {
                    Ok(Ok(())) => {
                        tracing::warn!(
                            "Elasticsearch sink {}: {summary}; written to the dead-letter file {}",
                            self.id,
                            path.display()
                        );
                        Ok(())
                    }
                    Ok(Err(e)) => Err(Error::CannotStoreData(format!(
                        "{summary}; and the dead-letter file {} could not be written: {e}",
                        path.display()
                    ))),
                    Err(e) => Err(Error::CannotStoreData(format!(
                        "{summary}; dead-letter write failed: {e}"
                    ))),
                }
            }
            None if first.status.is_some_and(|s| (400..500).contains(&s)) => {
                Err(Error::PermanentHttpError(format!(
                    "{summary}; set dead_letter_path to keep such documents"
                )))
            }
            None => Err(Error::CannotStoreData(format!(
                "{summary}; set dead_letter_path to keep such documents"
            ))),
        }
    }

    async fn close(&mut self) -> Result<(), Error> {
        if let Some(mut output) = self.output.get_mut().take() {
            connector::Output::close(&mut output)
                .await
                .map_err(|e| Error::Connection(e.to_string()))?;
        }
        tracing::info!("Elasticsearch sink {} closed", self.id);
        Ok(())
    }
}
