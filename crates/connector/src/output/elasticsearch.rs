//! `kind = "elasticsearch"`: index every message into another index (or
//! cluster) through the `bulk` processor, idempotent by `_id`
//! ([`TargetDocument`]: `{source index}/{source _id}`, versioned by `_seq_no`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bulk::{
    BulkError, BulkProcessor, BulkProcessorBuilder, BulkRequest, FailedItem, FailureKind,
    HttpTransport,
};
use state_core::redact_url;

use super::{Output, OutputError};
use crate::config::{Endpoint, HttpUrl};
use crate::message::{Message, TargetDocument};

/// How long [`Output::close`] lets requests still retrying finish.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

/// How an [`ElasticsearchOutput`] reaches the cluster. The defaults are
/// `es-connector`'s: one worker, the bulk processor's batch size and retries,
/// the transport's request timeout.
#[derive(Debug, Clone)]
pub struct ElasticsearchOutputOptions {
    /// Concurrent `_bulk` calls (at least 1).
    pub workers: usize,
    /// Documents per `_bulk` call at most.
    pub bulk_actions: usize,
    /// Time limit of one `_bulk` call; `None`: the transport's default.
    pub request_timeout: Option<Duration>,
    /// How the bulk processor retries a request before reporting it failed
    /// ([`FailureKind::GaveUp`]: the send is then [`OutputError::Unavailable`]).
    pub backoff: bulk::Backoff,
    /// The bulk processor's memory bound; `None`: its default (64 MiB or more). A
    /// document larger than it is a [`Refusal`].
    pub max_buffered_bytes: Option<usize>,
    /// Adaptive concurrency: `workers` is then the most `_bulk` calls in flight,
    /// halved (down to 1) when the cluster answers 429 and raised by one after
    /// each round of clean answers ([`bulk::AdaptiveConcurrency`]). Default off.
    pub adaptive: bool,
}

impl Default for ElasticsearchOutputOptions {
    fn default() -> Self {
        ElasticsearchOutputOptions {
            workers: 1,
            bulk_actions: bulk::DEFAULT_BULK_ACTIONS,
            request_timeout: None,
            backoff: bulk::Backoff::default(),
            max_buffered_bytes: None,
            adaptive: false,
        }
    }
}

/// A document the cluster refused for good, or that could not be sent at all
/// (larger than the processor's memory bound, not serialisable): sending it again
/// cannot help. The rest of its batch was indexed.
#[derive(Debug)]
pub struct Refusal {
    /// Its position in the batch sent.
    pub position: usize,
    /// The item's HTTP status; `None` when it was refused before sending.
    pub status: Option<u16>,
    /// The server's error object (JSON text) or why it was not sent.
    pub error: String,
    /// `_bulk` calls that carried it (0: never sent).
    pub attempts: u32,
    /// The request, with its document.
    pub request: BulkRequest,
}

/// Copies messages into `index` at `url`: document id = `{source index}/{source
/// _id}` ([`TargetDocument`]), so sending a batch twice (after a crash) rewrites
/// the same documents and two source indices never overwrite each other; the
/// source's `_seq_no` is an `external_gte` version, so an older version of a
/// document never replaces a newer one.
#[derive(Debug)]
pub struct ElasticsearchOutput {
    name: String,
    index: String,
    processor: BulkProcessor,
    failures: Arc<Mutex<Vec<FailedItem>>>,
    /// Requests sent so far: the [tag](BulkRequest::tag) of the next one. A
    /// send's requests are tagged `first..first + n`, so a failure finds its
    /// position in the batch (tag − first) without matching document ids, and
    /// a failure left over from a send abandoned half-way (its tag below
    /// `first`) is told apart from this send's own.
    tagged: u64,
}

impl ElasticsearchOutput {
    /// An output to `index` at `url` (credentials in the URL are used, never shown).
    pub fn new(url: &str, index: &str, workers: usize) -> Result<Self, OutputError> {
        let endpoint =
            HttpUrl::parse(url)
                .map(Endpoint::from_url)
                .map_err(|e| OutputError::Refused {
                    output: format!("elasticsearch {}/{index}", redact_url(url)),
                    reason: e.to_string(),
                })?;
        Self::with_options(
            &endpoint,
            index,
            ElasticsearchOutputOptions {
                workers,
                ..ElasticsearchOutputOptions::default()
            },
        )
    }

    /// An output to `index` in the `endpoint` cluster (its credentials and CA
    /// file), sending as `options` say.
    pub fn with_options(
        endpoint: &Endpoint,
        index: &str,
        options: ElasticsearchOutputOptions,
    ) -> Result<Self, OutputError> {
        let name = format!("elasticsearch {}/{index}", endpoint.url());
        let refused = |reason: String| OutputError::Refused {
            output: name.clone(),
            reason,
        };
        let transport = HttpTransport::for_endpoint(
            endpoint,
            options
                .request_timeout
                .unwrap_or(bulk::DEFAULT_HTTP_TIMEOUT),
        )
        .map_err(|e| refused(e.to_string()))?;
        let failures = Arc::new(Mutex::new(Vec::new()));
        let sink = failures.clone();
        let mut builder = BulkProcessorBuilder::new(transport)
            .name(name.clone())
            .workers(options.workers.max(1))
            .bulk_actions(options.bulk_actions)
            .backoff(options.backoff)
            .on_failure(move |item| sink.lock().unwrap_or_else(|p| p.into_inner()).push(item));
        if let Some(bytes) = options.max_buffered_bytes {
            builder = builder.max_buffered_bytes(bytes);
        }
        if options.adaptive {
            builder = builder.adaptive(bulk::AdaptiveConcurrency::between(
                1,
                options.workers.max(1),
            ));
        }
        let processor = builder.build().map_err(|e| refused(e.to_string()))?;
        Ok(ElasticsearchOutput {
            name,
            index: index.to_owned(),
            processor,
            failures,
            tagged: 0,
        })
    }

    /// The bulk processor's counters: calls, retries, 429s, the concurrency
    /// limit and its moves.
    pub fn stats(&self) -> bulk::BulkStats {
        self.processor.stats()
    }

    /// The index documents go to.
    pub fn index(&self) -> &str {
        &self.index
    }

    /// Indexes `batch`; the documents refused for good (mapping errors, conflicts:
    /// an item status the bulk processor does not retry) are returned, each with
    /// its position in `batch` and the server's error, the others are indexed.
    /// `Err` as [`send_requests`](Self::send_requests).
    pub async fn send_reporting(
        &mut self,
        batch: &[Message],
    ) -> Result<Vec<(usize, String)>, OutputError> {
        let requests = batch
            .iter()
            .map(|m| {
                TargetDocument::of_message(m)
                    .index_request(&self.index, m.payload.get().as_bytes().to_vec())
            })
            .collect();
        let refused = self.send_requests(requests).await?;
        Ok(refused
            .into_iter()
            .map(|r| {
                let status = r.status.map(|s| s.to_string()).unwrap_or_default();
                (r.position, format!("HTTP {status}: {}", r.error))
            })
            .collect())
    }

    /// Sends `requests` and waits until each is indexed or failed. Returns the
    /// documents refused for good ([`Refusal`], by position, ascending); a
    /// superseded version (a newer one is already there) is no refusal.
    /// `Err` when documents could not be indexed: retryable
    /// ([`OutputError::Unavailable`]) for a reason that may pass (the cluster
    /// unreachable until the bulk processor's retries ran out: send the batch
    /// again), not retryable ([`OutputError::Refused`], naming the status and what
    /// to do) when the server refused a bulk request as a whole (401, 403, 413,
    /// 500..., see [`bulk::classify_status`]): sending again cannot help until
    /// someone acts.
    ///
    /// Each request's [tag](BulkRequest::tag) is replaced by one of this
    /// output's own, which maps its failure back to its position.
    pub async fn send_requests(
        &mut self,
        requests: Vec<BulkRequest>,
    ) -> Result<Vec<Refusal>, OutputError> {
        let total = requests.len();
        let first = self.tagged;
        self.tagged += total as u64;
        let position_of = |f: &FailedItem| {
            f.caller_tag()
                .and_then(|tag| tag.checked_sub(first))
                .and_then(|p| usize::try_from(p).ok())
                .filter(|p| *p < total)
        };
        let mut refused = Vec::new();
        for (position, request) in requests.into_iter().enumerate() {
            let request = request.tag(first + position as u64);
            let Err(e) = self.processor.add(request).await else {
                continue;
            };
            let error = e.to_string();
            match e {
                // The document's own fault: no retry can send it.
                BulkError::TooLarge { request, .. } | BulkError::InvalidRequest { request, .. } => {
                    refused.push(Refusal {
                        position,
                        status: None,
                        error,
                        attempts: 0,
                        request: *request,
                    });
                }
                other => return Err(self.unavailable(&other)),
            }
        }
        self.processor
            .flush()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let mut failed =
            std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        // Left over from a send abandoned half-way (not acknowledged, so sent
        // again later): not this batch's.
        failed.retain(|f| position_of(f).is_some());
        // A newer version already there: this one has nothing to add.
        failed.retain(|f| !TargetDocument::superseded(f.item_status(), &f.error));
        // Not a document's fault: nothing to set aside document by document.
        if let Some(f) = failed
            .iter()
            .find(|f| !f.is_retryable() && !matches!(f.kind, FailureKind::Item { .. }))
        {
            return Err(OutputError::Refused {
                output: self.name.clone(),
                reason: format!(
                    "{} of {total} documents were not indexed: {}",
                    failed.len(),
                    whole_request_failure(f, &self.index)
                ),
            });
        }
        if let Some(transient) = failed.iter().find(|f| f.is_retryable()) {
            return Err(OutputError::Unavailable {
                output: self.name.clone(),
                reason: format!(
                    "{} of {total} documents were not indexed; first: {} ({})",
                    failed.len(),
                    transient.request.doc_id().unwrap_or("<no id>"),
                    transient.error
                ),
            });
        }
        for f in failed {
            if let Some(position) = position_of(&f) {
                refused.push(Refusal {
                    position,
                    status: f.item_status(),
                    error: f.error,
                    attempts: f.attempts,
                    request: f.request,
                });
            }
        }
        refused.sort_unstable_by_key(|r| r.position);
        Ok(refused)
    }
}

/// What failed when not a single document was at fault, and what to do about it.
fn whole_request_failure(f: &FailedItem, index: &str) -> String {
    if matches!(f.kind, FailureKind::OutcomeUnknown { .. }) {
        return format!(
            "the outcome is unknown ({}); check index {index} before sending again",
            f.error
        );
    }
    let advice = match f.request_status() {
        Some(400) => "the server could not read the bulk request: check that [output] url \
                      names an Elasticsearch or OpenSearch node"
            .to_owned(),
        Some(401) => {
            "the credentials were refused: check the user and password in [output] url".to_owned()
        }
        Some(403) => format!(
            "the user lacks a privilege: grant it `index` (or `create_doc`) and `create_index` \
             (or `auto_configure`) on index {index}"
        ),
        Some(404) => {
            "there is no _bulk endpoint at [output] url: check its host, port and path".to_owned()
        }
        Some(413) => "the request is larger than the server accepts: raise its \
                      http.max_content_length (or the body limit of a proxy in front of it), \
                      or send smaller documents"
            .to_owned(),
        Some(s) if s >= 500 => "the server failed with an internal error: see its log; \
                                documents of the batch may have been written (they are written \
                                again, by id, when the batch is sent again)"
            .to_owned(),
        _ => "check the server and [output] url".to_owned(),
    };
    format!(
        "the server refused the bulk request as a whole ({}); {advice}; the batch was not \
         acknowledged, sending it again cannot help until this is fixed",
        f.error
    )
}

/// The `_id` of a message's document in the target.
fn document_id(m: &Message) -> String {
    TargetDocument::of_message(m).id
}

#[async_trait]
impl Output for ElasticsearchOutput {
    async fn send(&mut self, batch: &[Message]) -> Result<(), OutputError> {
        let refused = self.send_reporting(batch).await?;
        match refused.first() {
            None => Ok(()),
            Some((i, error)) => Err(OutputError::Refused {
                output: self.name.clone(),
                reason: format!(
                    "{} of {} documents were not indexed; first: {} ({error})",
                    refused.len(),
                    batch.len(),
                    document_id(&batch[*i]),
                ),
            }),
        }
    }

    /// Every acknowledged batch was flushed by its `send`: what is left belongs to a
    /// send abandoned by a stop (not acknowledged, so read again at the next start).
    /// It gets [`CLOSE_DEADLINE`], then is dropped, so a stop during an outage does
    /// not wait for the bulk retries to run out.
    async fn close(&mut self) -> Result<(), OutputError> {
        let report = self.processor.close_with_deadline(CLOSE_DEADLINE).await;
        if !report.unsent.is_empty() {
            tracing::warn!(
                output = %self.name,
                documents = report.unsent.len(),
                "closed with documents of an unacknowledged batch not indexed; they are sent again after a restart"
            );
        }
        Ok(())
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
