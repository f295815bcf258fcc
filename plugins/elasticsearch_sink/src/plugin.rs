//! [`ElasticsearchSinkPlugin`]: the SDK's [`Sink`] over the [`bulk`] processor.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bulk::{BulkError, BulkProcessor, BulkProcessorBuilder, FailedItem, HttpTransport};
use connector::message::TargetDocument;
use iggy_connector_sdk::{ConsumedMessage, Error, MessagesMetadata, Sink, TopicMetadata};
use serde_json::Value;
use state_core::redact_url;

use crate::config::SinkConfig;
use crate::dead_letter::{self, DeadLetter, Document};
use crate::document::{document_json, target_document};

/// The plugin the runtime loads: `open` starts the bulk processor, `consume`
/// indexes a batch and returns once every document succeeded or failed for good,
/// `close` flushes and stops.
#[derive(Debug)]
pub struct ElasticsearchSinkPlugin {
    id: u32,
    /// The parsed `[plugin_config]`, or why it is not acceptable (reported by `open`).
    config: Result<SinkConfig, String>,
    processor: Option<BulkProcessor>,
    /// What the processor's failure handler collected since the last consume.
    failures: Arc<Mutex<Vec<FailedItem>>>,
    /// One consume at a time, so a call reports exactly its own failures (the
    /// runtime may consume several topics or partitions concurrently).
    consuming: tokio::sync::Mutex<()>,
}

impl ElasticsearchSinkPlugin {
    /// What the SDK's `sink_connector!` calls with the runtime's `plugin_config` (JSON). No IO.
    pub fn new(id: u32, config: Value) -> Self {
        ElasticsearchSinkPlugin {
            id,
            config: SinkConfig::from_json(config),
            processor: None,
            failures: Arc::new(Mutex::new(Vec::new())),
            consuming: tokio::sync::Mutex::new(()),
        }
    }

    fn take_failures(&self) -> Vec<FailedItem> {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(PoisonError::into_inner))
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
        let mut transport = HttpTransport::with_timeout(&config.url, config.request_timeout)
            .map_err(|e| Error::InvalidConfigValue(format!("plugin_config.url: {e}")))?;
        if let Some(key) = &config.api_key {
            transport = transport.with_api_key(key.expose());
        }
        let failures = self.failures.clone();
        let processor = BulkProcessorBuilder::new(transport)
            .name(format!(
                "iggy sink {} -> {}/{}",
                self.id,
                redact_url(&config.url),
                config.index
            ))
            .workers(config.workers)
            .bulk_actions(config.bulk_actions)
            .on_failure(move |item| {
                failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(item)
            })
            .build()
            .map_err(|e| Error::InvalidConfigValue(e.to_string()))?;
        self.processor = Some(processor);
        tracing::info!(
            "Elasticsearch sink {} opened: indexing into {} at {}; documents that fail for good {}",
            self.id,
            config.index,
            redact_url(&config.url),
            match &config.dead_letter_path {
                Some(path) => format!("go to {}", path.display()),
                None => "fail the consume call (no dead_letter_path)".into(),
            }
        );
        Ok(())
    }

    async fn consume(
        &self,
        topic: &TopicMetadata,
        meta: MessagesMetadata,
        messages: Vec<ConsumedMessage>,
    ) -> Result<(), Error> {
        let (Ok(config), Some(processor)) = (&self.config, &self.processor) else {
            return Err(Error::InitError("the sink is not open".into()));
        };
        let _one_at_a_time = self.consuming.lock().await;
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
        let mut offsets = std::collections::HashMap::with_capacity(total);
        for message in messages {
            let target = target_document(message.id, message.headers.as_ref());
            let id = target.id.clone();
            let payload_bytes = match document_json(message.payload) {
                Ok(bytes) => bytes,
                Err((reason, bytes)) => {
                    rejected.push(letter(
                        id,
                        Some(message.offset),
                        None,
                        reason,
                        0,
                        Document::of(&bytes),
                    ));
                    continue;
                }
            };
            offsets.insert(id.clone(), message.offset);
            let request = target.index_request(&config.index, payload_bytes);
            match processor.add(request).await {
                Ok(()) => {}
                Err(
                    BulkError::TooLarge { request, .. } | BulkError::InvalidRequest { request, .. },
                ) => {
                    let document = Document::of(request.source().unwrap_or_default());
                    rejected.push(letter(
                        id,
                        Some(message.offset),
                        None,
                        "refused before sending (too large or invalid)".into(),
                        0,
                        document,
                    ));
                }
                Err(e) => return Err(Error::Connection(e.to_string())),
            }
        }
        processor
            .flush()
            .await
            .map_err(|e| Error::Connection(e.to_string()))?;
        for failed in self.take_failures() {
            // A newer version of the document is already there: nothing lost.
            if TargetDocument::superseded(failed.status, &failed.error) {
                continue;
            }
            let id = failed.request.doc_id().unwrap_or_default().to_owned();
            let offset = offsets.get(&id).copied();
            let document = Document::of(failed.request.source().unwrap_or_default());
            rejected.push(letter(
                id,
                offset,
                failed.status,
                failed.error,
                failed.attempts,
                document,
            ));
        }
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
        if let Some(processor) = self.processor.take() {
            processor
                .close()
                .await
                .map_err(|e| Error::Connection(e.to_string()))?;
            let left = self.take_failures();
            if !left.is_empty() {
                for f in &left {
                    tracing::error!(
                        "Elasticsearch sink {}: document {} not indexed at close: {}",
                        self.id,
                        f.request.doc_id().unwrap_or("<no id>"),
                        f.error
                    );
                }
            }
        }
        tracing::info!("Elasticsearch sink {} closed", self.id);
        Ok(())
    }
}
