//! `kind = "elasticsearch"`: index every message into another index (or
//! cluster) through the `bulk` processor, idempotent by `_id`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bulk::{
    BulkError, BulkProcessor, BulkProcessorBuilder, BulkRequest, FailedItem, HttpTransport,
};
use state_core::redact_url;

use super::{Output, OutputError};
use crate::message::{HEADER_ID, Message};

/// Copies messages into `index` at `url`: document id = the source's `_id`, so
/// sending a batch twice (after a crash) rewrites the same documents.
#[derive(Debug)]
pub struct ElasticsearchOutput {
    name: String,
    index: String,
    processor: BulkProcessor,
    failures: Arc<Mutex<Vec<FailedItem>>>,
}

impl ElasticsearchOutput {
    /// An output to `index` at `url` (credentials in the URL are used, never shown).
    pub fn new(url: &str, index: &str, workers: usize) -> Result<Self, OutputError> {
        let name = format!("elasticsearch {}/{index}", redact_url(url));
        let refused = |reason: String| OutputError::Refused {
            output: name.clone(),
            reason,
        };
        let transport = HttpTransport::new(url).map_err(|e| refused(e.to_string()))?;
        let failures = Arc::new(Mutex::new(Vec::new()));
        let sink = failures.clone();
        let processor = BulkProcessorBuilder::new(transport)
            .name(name.clone())
            .workers(workers.max(1))
            .on_failure(move |item| sink.lock().unwrap_or_else(|p| p.into_inner()).push(item))
            .build()
            .map_err(|e| refused(e.to_string()))?;
        Ok(ElasticsearchOutput {
            name,
            index: index.to_owned(),
            processor,
            failures,
        })
    }
}

#[async_trait]
impl Output for ElasticsearchOutput {
    async fn send(&mut self, batch: &[Message]) -> Result<(), OutputError> {
        for m in batch {
            let mut request = BulkRequest::index(self.index.as_str())
                .doc_json(m.payload.get().as_bytes().to_vec());
            if let Some(id) = m.headers.get(HEADER_ID) {
                request = request.id(id.as_str());
            }
            self.processor
                .add(request)
                .await
                .map_err(|e| self.unavailable(&e))?;
        }
        self.processor
            .flush()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let failed = std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        match failed.first() {
            None => Ok(()),
            Some(first) => {
                let reason = format!(
                    "{} of {} documents were not indexed; first: {} ({})",
                    failed.len(),
                    batch.len(),
                    first.request.doc_id().unwrap_or("<no id>"),
                    first.error
                );
                // Retried-and-exhausted failures may pass later; item errors like mappings will not.
                if failed.iter().all(|f| f.status.is_none()) {
                    Err(OutputError::Unavailable {
                        output: self.name.clone(),
                        reason,
                    })
                } else {
                    Err(OutputError::Refused {
                        output: self.name.clone(),
                        reason,
                    })
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), OutputError> {
        self.processor
            .close()
            .await
            .map_err(|e| self.unavailable(&e))
    }
}

impl ElasticsearchOutput {
    fn unavailable(&self, e: &BulkError) -> OutputError {
        OutputError::Unavailable {
            output: self.name.clone(),
            reason: e.to_string(),
        }
    }
}
