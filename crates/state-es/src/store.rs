//! [`EsStore`]: the [`StateStore`] on an Elasticsearch / OpenSearch index.

use std::fmt;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::json;
use state_core::{
    ConnectorState, Precondition, Result, Revision, StateEntry, StateError, StateId, StateStore,
    Stored,
};

use crate::builder::{EsStoreBuilder, Resolved};
use crate::transport::{BACKEND, Reply, send, status_error};
use crate::wire::{
    GetReply, SearchReply, StoredEnvelope, WriteReply, describe_error_body, encode_segment,
    envelope, error_type, excerpt, index_mapping, parse_date, parse_revision, revision,
};

/// Connector states in one Elasticsearch or OpenSearch index, one document per state.
///
/// - Document `_id` = state id; the document is `{"id", "last_updated",
///   "size_bytes", "state": <the state document>}` under [`index_mapping`](crate::index_mapping).
/// - Revisions are `seq_no:primary_term`; saves use `if_seq_no`/`if_primary_term`,
///   `_create` for [`Precondition::Absent`], so compare-and-set is done by the cluster.
/// - `load` is a realtime GET; `list` refreshes the index first, so saves need no refresh.
///
/// `Debug` and every error show the URL with its password replaced by `***`.
#[derive(Clone)]
pub struct EsStore {
    client: reqwest::Client,
    opts: Resolved,
    /// Set by [`EsStore::from_elasticsearch`]: requests go through it instead.
    #[cfg(feature = "elasticsearch")]
    pub(crate) official: Option<elasticsearch::Elasticsearch>,
}

impl EsStore {
    /// Connects to `url` and uses (creating it if missing) `index`; all other
    /// options at their defaults. See [`EsStore::builder`] for the rest.
    pub async fn connect(url: impl Into<String>, index: impl Into<String>) -> Result<EsStore> {
        EsStoreBuilder::new(url).with_index(index).build().await
    }

    /// Options beyond URL and index: API key, timeouts, a custom client.
    pub fn builder(url: impl Into<String>) -> EsStoreBuilder {
        EsStoreBuilder::new(url)
    }

    pub(crate) fn new(client: reqwest::Client, opts: Resolved) -> EsStore {
        EsStore {
            client,
            opts,
            #[cfg(feature = "elasticsearch")]
            official: None,
        }
    }

    /// The index this store reads and writes.
    pub fn index(&self) -> &str {
        &self.opts.index
    }

    /// The HTTP client, shared with clones of this store (one connection pool).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<Reply> {
        #[cfg(feature = "elasticsearch")]
        if let Some(official) = &self.official {
            return crate::official::send(official, &self.opts, method, url, body, what).await;
        }
        send(&self.client, &self.opts, method, url, body, what).await
    }

    fn doc_url(&self, endpoint: &str, id: &str) -> String {
        format!("{}/{endpoint}/{}", self.opts.index_path, encode_segment(id))
    }

    fn location(&self, id: &str) -> String {
        format!(
            "index `{}` document `{id}` at {}",
            self.opts.index, self.opts.display
        )
    }

    fn corrupt(&self, id: &str, reason: impl Into<String>) -> StateError {
        StateError::Corrupt {
            id: id.to_owned(),
            location: self.location(id),
            reason: reason.into(),
        }
    }

    /// A 2xx reply whose body is not what Elasticsearch sends: not a state
    /// problem, the URL probably points at something else.
    fn unreadable(&self, what: &str, reply: &Reply, err: impl fmt::Display) -> StateError {
        StateError::backend(
            BACKEND,
            format!(
                "{what} in index `{}` at {}: the reply is not an Elasticsearch answer ({err}): {}; \
                 check that the URL points at Elasticsearch or OpenSearch",
                self.opts.index,
                self.opts.display,
                excerpt(&reply.body)
            ),
        )
    }

    /// Creates the index with [`index_mapping`](crate::index_mapping) unless it exists.
    pub(crate) async fn ensure_index(&self) -> Result<()> {
        let what = "creating the state index";
        let body = json!({ "mappings": index_mapping() })
            .to_string()
            .into_bytes();
        let reply = self
            .call(Method::PUT, &self.opts.index_path, Some(body), what)
            .await?;
        if reply.status.is_success() {
            tracing::info!(index = %self.opts.index, url = %self.opts.display, "created the state index");
            return Ok(());
        }
        match error_type(&reply.body).as_deref() {
            // Somebody (maybe a concurrent instance) created it: fine.
            Some("resource_already_exists_exception") => Ok(()),
            // No right to create indices is fine when the index is already there.
            _ if matches!(
                reply.status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) =>
            {
                let head = self
                    .call(Method::HEAD, &self.opts.index_path, None, what)
                    .await?;
                if head.status.is_success() {
                    tracing::debug!(index = %self.opts.index, "may not create indices, but the state index exists");
                    Ok(())
                } else {
                    Err(status_error(&self.opts, what, &reply))
                }
            }
            _ => Err(status_error(&self.opts, what, &reply)),
        }
    }

    fn decode_loaded(&self, id: &StateId, reply: &Reply, what: &str) -> Result<Stored> {
        let doc: GetReply<'_> =
            serde_json::from_slice(&reply.body).map_err(|e| self.unreadable(what, reply, e))?;
        if !doc.found {
            return Err(self.not_found(id));
        }
        let (Some(seq_no), Some(term)) = (doc.seq_no, doc.primary_term) else {
            return Err(self.unreadable(what, reply, "no _seq_no/_primary_term"));
        };
        let source = doc.source.ok_or_else(|| {
            self.corrupt(
                id.as_str(),
                "the document has no _source (is _source disabled?)",
            )
        })?;
        let stored: StoredEnvelope<'_> = serde_json::from_str(source.get()).map_err(|e| {
            self.corrupt(
                id.as_str(),
                format!("the document is not a state envelope ({e})"),
            )
        })?;
        let raw = stored
            .state
            .ok_or_else(|| self.corrupt(id.as_str(), "the document has no `state` field"))?;
        let state = ConnectorState::from_slice(
            raw.get().as_bytes(),
            id.as_str(),
            &self.location(id.as_str()),
        )?;
        if state.id != id.as_str() {
            return Err(self.corrupt(
                id.as_str(),
                format!("the document holds state `{}`", state.id),
            ));
        }
        Ok(Stored {
            state,
            revision: revision(seq_no, term),
            size_bytes: stored.size_bytes.unwrap_or(raw.get().len() as u64),
        })
    }

    /// `true` when a 404 reply says the document or the index is missing (and
    /// not, say, that a proxy knows no such path).
    fn is_missing(reply: &Reply) -> bool {
        if reply.status != StatusCode::NOT_FOUND {
            return false;
        }
        if error_type(&reply.body).as_deref() == Some("index_not_found_exception") {
            return true;
        }
        serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .is_some_and(|v| {
                v.get("found") == Some(&json!(false))
                    || v.get("result") == Some(&json!("not_found"))
            })
    }

    async fn refresh(&self) -> Result<bool> {
        let what = "refreshing the state index before listing";
        let url = format!("{}/_refresh", self.opts.index_path);
        let reply = self.call(Method::POST, &url, None, what).await?;
        if reply.status.is_success() {
            return Ok(true);
        }
        if Self::is_missing(&reply) {
            return Ok(false);
        }
        if matches!(
            reply.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            // Listing still works, only states saved in the last second may be missing.
            tracing::warn!(index = %self.opts.index, "{}", status_error(&self.opts, what, &reply));
            return Ok(true);
        }
        Err(status_error(&self.opts, what, &reply))
    }
}

#[async_trait]
impl StateStore for EsStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn load(&self, id: &StateId) -> Result<Stored> {
        let what = format!("loading state `{id}`");
        let reply = self
            .call(Method::GET, &self.doc_url("_doc", id.as_str()), None, &what)
            .await?;
        self.loaded(id, &reply, &what)
    }

    async fn save(&self, state: &ConnectorState, expect: &Precondition) -> Result<Revision> {
        let id = StateId::new(state.id.as_str())?;
        let what = format!("saving state `{id}`");
        let url = match expect {
            Precondition::Absent => self.doc_url("_create", id.as_str()),
            Precondition::Any => self.doc_url("_doc", id.as_str()),
            Precondition::Revision(rev) => {
                let Some((seq_no, term)) = parse_revision(rev) else {
                    return Err(StateError::conflict(
                        id.as_str(),
                        format!(
                            "expected revision {rev}, which is not an Elasticsearch revision (seq_no:primary_term)"
                        ),
                    ));
                };
                format!(
                    "{}?if_seq_no={seq_no}&if_primary_term={term}",
                    self.doc_url("_doc", id.as_str())
                )
            }
        };
        let reply = self
            .call(Method::PUT, &url, Some(envelope(state)), &what)
            .await?;
        if reply.status.is_success() {
            let written: WriteReply = serde_json::from_slice(&reply.body)
                .map_err(|e| self.unreadable(&what, &reply, e))?;
            return match (written.seq_no, written.primary_term) {
                (Some(seq_no), Some(term)) => Ok(revision(seq_no, term)),
                _ => Err(self.unreadable(&what, &reply, "no _seq_no/_primary_term")),
            };
        }
        if reply.status == StatusCode::CONFLICT {
            let found = describe_error_body(&reply.body);
            let reason = match expect {
                Precondition::Absent => {
                    format!("expected no stored state, but one exists ({found})")
                }
                Precondition::Revision(rev) => format!("expected revision {rev} ({found})"),
                Precondition::Any => found,
            };
            return Err(StateError::conflict(id.as_str(), reason));
        }
        Err(status_error(&self.opts, &what, &reply))
    }

    async fn delete(&self, id: &StateId) -> Result<bool> {
        let what = format!("deleting state `{id}`");
        let reply = self
            .call(
                Method::DELETE,
                &self.doc_url("_doc", id.as_str()),
                None,
                &what,
            )
            .await?;
        if reply.status.is_success() {
            let written: WriteReply = serde_json::from_slice(&reply.body)
                .map_err(|e| self.unreadable(&what, &reply, e))?;
            return Ok(written.result == "deleted");
        }
        if Self::is_missing(&reply) {
            return Ok(false);
        }
        Err(status_error(&self.opts, &what, &reply))
    }

    async fn list(&self) -> Result<Vec<StateEntry>> {
        if !self.refresh().await? {
            return Ok(Vec::new());
        }
        let what = "listing states";
        let url = format!("{}/_search", self.opts.index_path);
        let mut entries = Vec::new();
        let mut after: Option<Vec<serde_json::Value>> = None;
        loop {
            let mut query = json!({
                "size": self.opts.list_page_size,
                "query": { "match_all": {} },
                "sort": [{ "id": "asc" }],
                "_source": ["last_updated", "size_bytes"],
                "track_total_hits": false
            });
            if let Some(after) = after.take() {
                query["search_after"] = after.into();
            }
            let reply = self
                .call(
                    Method::POST,
                    &url,
                    Some(query.to_string().into_bytes()),
                    what,
                )
                .await?;
            let Some(page) = self.listed_page(&reply, what)? else {
                return Ok(Vec::new());
            };
            entries.extend(page.entries);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(entries),
            }
        }
    }
}

/// One page of the listing search, read.
pub(crate) struct ListedPage {
    /// The states on it (documents whose id is not a valid state id left out).
    pub entries: Vec<StateEntry>,
    /// The sort values to continue after, when the page was full.
    pub next: Option<Vec<serde_json::Value>>,
}

impl EsStore {
    /// What the reply to `GET <index>/_doc/<id>` says.
    pub(crate) fn loaded(&self, id: &StateId, reply: &Reply, what: &str) -> Result<Stored> {
        if reply.status == StatusCode::OK {
            return self.decode_loaded(id, reply, what);
        }
        if Self::is_missing(reply) {
            return Err(self.not_found(id));
        }
        Err(status_error(&self.opts, what, reply))
    }

    /// Reads one page of the listing search; `None` when the index is missing.
    pub(crate) fn listed_page(&self, reply: &Reply, what: &str) -> Result<Option<ListedPage>> {
        if !reply.status.is_success() {
            if Self::is_missing(reply) {
                return Ok(None);
            }
            return Err(status_error(&self.opts, what, reply));
        }
        let page: SearchReply =
            serde_json::from_slice(&reply.body).map_err(|e| self.unreadable(what, reply, e))?;
        let failed = page.shards.as_ref().map_or(0, |s| s.failed);
        if page.timed_out || failed > 0 {
            return Err(StateError::unavailable(
                BACKEND,
                format!(
                    "{what} in index `{}` at {}: the search was incomplete ({failed} shards failed, timed out: {}); retry later",
                    self.opts.index, self.opts.display, page.timed_out
                ),
            ));
        }
        let full_page = page.hits.hits.len() >= self.opts.list_page_size;
        let mut entries = Vec::with_capacity(page.hits.hits.len());
        let mut after = None;
        for hit in page.hits.hits {
            after = Some(hit.sort);
            let Ok(id) = StateId::new(hit.id.as_str()) else {
                tracing::warn!(index = %self.opts.index, id = ?hit.id, "skipping a document whose id is not a valid state id");
                continue;
            };
            let source = hit
                .source
                .ok_or_else(|| self.corrupt(&hit.id, "the document has no _source"))?;
            let last_updated = source
                .last_updated
                .as_ref()
                .and_then(parse_date)
                .ok_or_else(|| self.corrupt(&hit.id, "`last_updated` is missing or not a date"))?;
            let size = source
                .size_bytes
                .ok_or_else(|| self.corrupt(&hit.id, "`size_bytes` is missing"))?;
            entries.push(StateEntry::new(id, last_updated, size));
        }
        let next = after.filter(|after| full_page && !after.is_empty());
        Ok(Some(ListedPage { entries, next }))
    }
}

impl EsStore {
    fn not_found(&self, id: &StateId) -> StateError {
        StateError::NotFound {
            id: id.to_string(),
            backend: BACKEND,
        }
    }
}

impl fmt::Debug for EsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsStore")
            .field("url", &self.opts.display)
            .field("index", &self.opts.index)
            .field("auth", &self.opts.auth)
            .field("timeout", &self.opts.timeout)
            .finish_non_exhaustive()
    }
}
