//! Bulk requests: built by the user, encoded to NDJSON once, when added.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::Serialize;

/// The bulk operation of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpType {
    /// Index (create or replace) a document.
    Index,
    /// Create a document; fails with 409 if the id exists.
    Create,
    /// Update a document: a partial document (`doc`, optionally
    /// `doc_as_upsert`) or a script (`script`, optionally `upsert`).
    Update,
    /// Delete a document.
    Delete,
}

impl OpType {
    /// The action name in the bulk body.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Index => "index",
            OpType::Create => "create",
            OpType::Update => "update",
            OpType::Delete => "delete",
        }
    }
}

/// `version_type` of a versioned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionType {
    /// `internal`.
    Internal,
    /// `external`.
    External,
    /// `external_gte`.
    ExternalGte,
}

impl VersionType {
    fn as_str(self) -> &'static str {
        match self {
            VersionType::Internal => "internal",
            VersionType::External => "external",
            VersionType::ExternalGte => "external_gte",
        }
    }
}

/// One bulk request. Build with [`BulkRequest::index`], [`BulkRequest::create`],
/// [`BulkRequest::update`] or [`BulkRequest::delete`] and the setters.
///
/// The document is serialised by [`BulkRequest::doc`] (once); the NDJSON lines
/// are assembled when the request is added to a processor.
///
/// What happens to a request whose attempt may have been applied (the answer
/// was lost) is decided by [`BulkRequest::resend`].
#[derive(Clone)]
pub struct BulkRequest {
    op: OpType,
    index: Option<String>,
    id: Option<String>,
    routing: Option<String>,
    pipeline: Option<String>,
    version: Option<i64>,
    version_type: Option<VersionType>,
    if_seq_no: Option<i64>,
    if_primary_term: Option<i64>,
    retry_on_conflict: Option<u32>,
    doc_as_upsert: bool,
    source: Option<Result<Bytes, String>>,
    script: Option<Result<Bytes, String>>,
    upsert: Option<Result<Bytes, String>>,
    action: Option<Vec<u8>>,
    encoded_len: usize,
    maybe_applied: bool,
    tag: Option<u64>,
}

/// What sending a request again does when an earlier attempt of it may have
/// been applied (the connection was lost after the request was sent, the answer
/// was cut off, a gateway timed out). [`BulkRequest::resend`] tells which
/// applies; the processor resends accordingly, and requests that are never sent
/// at all (connection refused) are always sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resend {
    /// Applying it twice gives the same document: `index` with an id, `delete`,
    /// `update` with a partial document (`doc`, `doc_as_upsert`). Sent again.
    Idempotent,
    /// Applied once, it then conflicts: `create` with an id, `index` or `delete`
    /// with an external version (`version_type` `external`/`external_gte`). Sent
    /// again; a `409 version_conflict_engine_exception` on that resend means the
    /// document is there already (at this version or a newer one), most likely
    /// from the earlier attempt: it counts as success
    /// ([`ItemDecision::AlreadyApplied`](crate::ItemDecision::AlreadyApplied),
    /// counted in `already_applied`).
    ConflictMeansApplied,
    /// Conditional on the document's current state (`if_seq_no`/`if_primary_term`,
    /// or an internal `version`). Sent again: success then is certain; but a 409
    /// can be the earlier attempt's own write or another writer's, so it is
    /// reported as [`FailureKind::OutcomeUnknown`](crate::FailureKind::OutcomeUnknown).
    Conditional,
    /// Applying it twice does it twice: `index` or `create` without an id (the
    /// server makes a new document each time), `update` with a script. Not sent
    /// again: reported as [`FailureKind::OutcomeUnknown`](crate::FailureKind::OutcomeUnknown),
    /// so nothing is doubled; the caller decides.
    Never,
}

impl BulkRequest {
    fn new(op: OpType, index: impl Into<String>) -> Self {
        BulkRequest {
            op,
            index: Some(index.into()).filter(|i| !i.is_empty()),
            id: None,
            routing: None,
            pipeline: None,
            version: None,
            version_type: None,
            if_seq_no: None,
            if_primary_term: None,
            retry_on_conflict: None,
            doc_as_upsert: false,
            source: None,
            script: None,
            upsert: None,
            action: None,
            encoded_len: 0,
            maybe_applied: false,
            tag: None,
        }
    }

    /// Index a document into `index` (create or replace).
    pub fn index(index: impl Into<String>) -> Self {
        Self::new(OpType::Index, index)
    }
    /// Create a document in `index`; a 409 if the id exists.
    pub fn create(index: impl Into<String>) -> Self {
        Self::new(OpType::Create, index)
    }
    /// Update a document; set `.id(..)` and either `.doc(..)` (a partial
    /// document, optionally `.doc_as_upsert(true)`) or `.script(..)`.
    pub fn update(index: impl Into<String>) -> Self {
        Self::new(OpType::Update, index)
    }
    /// Delete a document; set `.id(..)`.
    pub fn delete(index: impl Into<String>) -> Self {
        Self::new(OpType::Delete, index)
    }

    /// The document id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// Routing value.
    pub fn routing(mut self, routing: impl Into<String>) -> Self {
        self.routing = Some(routing.into());
        self
    }
    /// Ingest pipeline.
    pub fn pipeline(mut self, pipeline: impl Into<String>) -> Self {
        self.pipeline = Some(pipeline.into());
        self
    }
    /// Expected or external version.
    pub fn version(mut self, version: i64) -> Self {
        self.version = Some(version);
        self
    }
    /// How `version` is interpreted.
    pub fn version_type(mut self, version_type: VersionType) -> Self {
        self.version_type = Some(version_type);
        self
    }
    /// Optimistic concurrency: only if the document is at this sequence number...
    pub fn if_seq_no(mut self, seq_no: i64) -> Self {
        self.if_seq_no = Some(seq_no);
        self
    }
    /// ...and this primary term.
    pub fn if_primary_term(mut self, primary_term: i64) -> Self {
        self.if_primary_term = Some(primary_term);
        self
    }
    /// Update only: retries of the update on version conflicts, server side.
    pub fn retry_on_conflict(mut self, times: u32) -> Self {
        self.retry_on_conflict = Some(times);
        self
    }
    /// Update only: create the document from `doc` when missing.
    pub fn doc_as_upsert(mut self, upsert: bool) -> Self {
        self.doc_as_upsert = upsert;
        self
    }
    /// The document (index/create) or the partial document (update), serialised now.
    /// A document that cannot be serialised makes `add` fail with an error naming it.
    pub fn doc<T: Serialize + ?Sized>(mut self, doc: &T) -> Self {
        self.source = Some(
            serde_json::to_vec(doc)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
        );
        self
    }
    /// The document as already-serialised JSON bytes (must be one line of JSON).
    pub fn doc_json(mut self, json: impl Into<Bytes>) -> Self {
        self.source = Some(Ok(json.into()));
        self
    }
    /// Update only: the script (`{"source": "ctx._source.n += params.k", "params": {"k": 1}}`),
    /// serialised now; instead of `.doc(..)`. A scripted update is not idempotent:
    /// see [`Resend::Never`].
    pub fn script<T: Serialize + ?Sized>(mut self, script: &T) -> Self {
        self.script = Some(
            serde_json::to_vec(script)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
        );
        self
    }
    /// Update only: the document to create when the document is missing.
    pub fn upsert<T: Serialize + ?Sized>(mut self, doc: &T) -> Self {
        self.upsert = Some(
            serde_json::to_vec(doc)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
        );
        self
    }

    /// The caller's own mark for this request, never sent to the server and
    /// handed back with it wherever the processor hands the request back: in a
    /// [`FailedItem`](crate::FailedItem) ([`FailedItem::caller_tag`](crate::FailedItem::caller_tag)),
    /// to the `before`/`after` callbacks (which see every request of a call,
    /// successes included) and in a [`CloseReport`](crate::CloseReport). Use it
    /// to find the caller's record of a request (a position in a batch, a key
    /// into a map of messages) without matching on document ids, which need
    /// not be unique or present.
    ///
    /// A plain `u64` rather than a generic parameter or an `Arc<dyn Any>`: it
    /// costs nothing per request, keeps `BulkRequest` one type, and any richer
    /// context can live in the caller's own table, keyed by it.
    pub fn tag(mut self, tag: u64) -> Self {
        self.tag = Some(tag);
        self
    }

    /// The operation.
    pub fn op(&self) -> OpType {
        self.op
    }
    /// The target index, if set.
    pub fn index_name(&self) -> Option<&str> {
        self.index.as_deref()
    }
    /// The caller's tag (set with [`BulkRequest::tag`](Self::tag)), if any.
    pub fn caller_tag(&self) -> Option<u64> {
        self.tag
    }
    /// The document id, if set.
    pub fn doc_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    /// The serialised document, if any.
    pub fn source(&self) -> Option<&[u8]> {
        match &self.source {
            Some(Ok(b)) => Some(b),
            _ => None,
        }
    }

    /// Exact NDJSON size in bytes (0 before the request was added).
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// Whether an attempt of this request may have been applied by the server
    /// without the processor learning its outcome (set by the processor; see
    /// [`Resend`]). A request handed back or reported failed with this set may be
    /// in the index already.
    pub fn maybe_applied(&self) -> bool {
        self.maybe_applied
    }

    pub(crate) fn mark_maybe_applied(&mut self) {
        self.maybe_applied = true;
    }

    /// What sending this request again does when an earlier attempt may have
    /// been applied; see [`Resend`] for each case.
    pub fn resend(&self) -> Resend {
        match self.op {
            OpType::Update if self.script.is_some() => Resend::Never,
            OpType::Index | OpType::Create if self.id.is_none() => Resend::Never,
            _ if self.if_seq_no.is_some() || self.if_primary_term.is_some() => Resend::Conditional,
            _ if self.version.is_some() => match self.version_type {
                Some(VersionType::External | VersionType::ExternalGte) => {
                    Resend::ConflictMeansApplied
                }
                _ => Resend::Conditional,
            },
            OpType::Create => Resend::ConflictMeansApplied,
            OpType::Index | OpType::Update | OpType::Delete => Resend::Idempotent,
        }
    }

    /// Builds the action line and checks the request; called once by `add`.
    pub(crate) fn encode(&mut self) -> Result<usize, String> {
        if self.op != OpType::Update && (self.script.is_some() || self.upsert.is_some()) {
            return Err(format!(
                "only an update takes .script(..) or .upsert(..), not an {}",
                self.op.as_str()
            ));
        }
        let body_len = match (self.op, &self.source) {
            (OpType::Delete, Some(_)) => return Err("a delete takes no document".into()),
            (OpType::Delete, None) => {
                if self.id.is_none() {
                    return Err("a delete needs an id".into());
                }
                0
            }
            (OpType::Update, source) => {
                if self.id.is_none() {
                    return Err("an update needs an id".into());
                }
                self.update_body_len(source.as_ref())?
            }
            (_, None) => {
                return Err(format!(
                    "an {} request needs a document: call .doc(..)",
                    self.op.as_str()
                ));
            }
            (_, Some(Err(e))) => return Err(format!("the document cannot be serialised: {e}")),
            (_, Some(Ok(doc))) => {
                if memchr::memchr(b'\n', doc).is_some() {
                    return Err("the document's JSON contains a newline; bulk bodies are one line per document".into());
                }
                doc.len() + 1
            }
        };
        let mut line = Vec::with_capacity(64);
        let meta = ActionMeta {
            index: self.index.as_deref(),
            id: self.id.as_deref(),
            routing: self.routing.as_deref(),
            pipeline: self.pipeline.as_deref(),
            version: self.version,
            version_type: self.version_type.map(VersionType::as_str),
            if_seq_no: self.if_seq_no,
            if_primary_term: self.if_primary_term,
            retry_on_conflict: self.retry_on_conflict,
        };
        line.extend_from_slice(b"{\"");
        line.extend_from_slice(self.op.as_str().as_bytes());
        line.extend_from_slice(b"\":");
        // Serialising plain strings and numbers into a Vec cannot fail.
        serde_json::to_writer(&mut line, &meta).map_err(|e| e.to_string())?;
        line.extend_from_slice(b"}\n");
        let len = line.len() + body_len;
        self.action = Some(line);
        self.encoded_len = len;
        Ok(len)
    }

    /// The size of an update's body line: `{"doc":D[,"doc_as_upsert":true][,"upsert":U]}\n`
    /// or `{"script":S[,"upsert":U]}\n`.
    fn update_body_len(&self, doc: Option<&Result<Bytes, String>>) -> Result<usize, String> {
        let part = |what: &str, v: Option<&Result<Bytes, String>>| match v {
            None => Ok(None),
            Some(Err(e)) => Err(format!("the {what} cannot be serialised: {e}")),
            Some(Ok(b)) if memchr::memchr(b'\n', b).is_some() => {
                Err(format!("the {what}'s JSON contains a newline"))
            }
            Some(Ok(b)) => Ok(Some(b.len())),
        };
        let doc = part("document", doc)?;
        let script = part("script", self.script.as_ref())?;
        let upsert = part("upsert document", self.upsert.as_ref())?;
        let head = match (doc, script) {
            (Some(_), Some(_)) => {
                return Err("an update takes .doc(..) or .script(..), not both".into());
            }
            (None, None) => {
                return Err("an update request needs .doc(..) or .script(..)".into());
            }
            (Some(doc), None) => {
                let as_upsert = if self.doc_as_upsert {
                    r#","doc_as_upsert":true"#.len()
                } else {
                    0
                };
                r#"{"doc":"#.len() + doc + as_upsert
            }
            (None, Some(script)) => {
                if self.doc_as_upsert {
                    return Err(
                        "doc_as_upsert needs .doc(..); with a script, use .upsert(..)".into(),
                    );
                }
                r#"{"script":"#.len() + script
            }
        };
        let upsert = upsert.map_or(0, |u| r#","upsert":"#.len() + u);
        Ok(head + upsert + "}\n".len())
    }

    /// Appends this request's NDJSON lines to `out`.
    pub(crate) fn write_ndjson(&self, out: &mut BytesMut) {
        if let Some(action) = &self.action {
            out.extend_from_slice(action);
        }
        if self.op == OpType::Update {
            if let Some(Ok(doc)) = &self.source {
                out.extend_from_slice(b"{\"doc\":");
                out.extend_from_slice(doc);
                if self.doc_as_upsert {
                    out.extend_from_slice(b",\"doc_as_upsert\":true");
                }
            } else if let Some(Ok(script)) = &self.script {
                out.extend_from_slice(b"{\"script\":");
                out.extend_from_slice(script);
            }
            if let Some(Ok(upsert)) = &self.upsert {
                out.extend_from_slice(b",\"upsert\":");
                out.extend_from_slice(upsert);
            }
            out.extend_from_slice(b"}\n");
        } else if let Some(Ok(doc)) = &self.source {
            out.extend_from_slice(doc);
            out.extend_from_slice(b"\n");
        }
    }
}

impl fmt::Debug for BulkRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkRequest")
            .field("op", &self.op)
            .field("index", &self.index)
            .field("id", &self.id)
            .field("source_bytes", &self.source().map(<[u8]>::len))
            .field("scripted", &self.script.is_some())
            .field("maybe_applied", &self.maybe_applied)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct ActionMeta<'a> {
    #[serde(rename = "_index", skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    if_seq_no: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    if_primary_term: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_on_conflict: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ndjson(mut r: BulkRequest) -> (usize, String) {
        let len = r.encode().unwrap_or_else(|e| panic!("{e}"));
        let mut out = BytesMut::new();
        r.write_ndjson(&mut out);
        (len, String::from_utf8(out.to_vec()).unwrap_or_default())
    }

    #[test]
    fn encodes_every_operation_and_counts_exact_bytes() {
        let cases = [
            (
                BulkRequest::index("logs")
                    .id("1")
                    .routing("r")
                    .pipeline("p")
                    .doc(&json!({"a": 1})),
                "{\"index\":{\"_index\":\"logs\",\"_id\":\"1\",\"routing\":\"r\",\"pipeline\":\"p\"}}\n{\"a\":1}\n",
            ),
            (
                BulkRequest::create("logs")
                    .id("2")
                    .if_seq_no(3)
                    .if_primary_term(1)
                    .doc(&json!({"b": "x"})),
                "{\"create\":{\"_index\":\"logs\",\"_id\":\"2\",\"if_seq_no\":3,\"if_primary_term\":1}}\n{\"b\":\"x\"}\n",
            ),
            (
                BulkRequest::update("logs")
                    .id("3")
                    .doc_as_upsert(true)
                    .retry_on_conflict(2)
                    .doc(&json!({"c": true})),
                "{\"update\":{\"_index\":\"logs\",\"_id\":\"3\",\"retry_on_conflict\":2}}\n{\"doc\":{\"c\":true},\"doc_as_upsert\":true}\n",
            ),
            (
                BulkRequest::update("logs").id("3").doc(&json!({"c": 1})),
                "{\"update\":{\"_index\":\"logs\",\"_id\":\"3\"}}\n{\"doc\":{\"c\":1}}\n",
            ),
            (
                BulkRequest::update("logs")
                    .id("5")
                    .script(&json!({"source": "ctx._source.n += 1"})),
                "{\"update\":{\"_index\":\"logs\",\"_id\":\"5\"}}\n{\"script\":{\"source\":\"ctx._source.n += 1\"}}\n",
            ),
            (
                BulkRequest::update("logs")
                    .id("6")
                    .script(&json!({"source": "ctx._source.n += 1"}))
                    .upsert(&json!({"n": 0})),
                "{\"update\":{\"_index\":\"logs\",\"_id\":\"6\"}}\n{\"script\":{\"source\":\"ctx._source.n += 1\"},\"upsert\":{\"n\":0}}\n",
            ),
            (
                BulkRequest::update("logs")
                    .id("7")
                    .doc(&json!({"c": 1}))
                    .upsert(&json!({"c": 0})),
                "{\"update\":{\"_index\":\"logs\",\"_id\":\"7\"}}\n{\"doc\":{\"c\":1},\"upsert\":{\"c\":0}}\n",
            ),
            (
                BulkRequest::delete("logs")
                    .id("4")
                    .version(7)
                    .version_type(VersionType::External),
                "{\"delete\":{\"_index\":\"logs\",\"_id\":\"4\",\"version\":7,\"version_type\":\"external\"}}\n",
            ),
        ];
        for (req, want) in cases {
            let (len, text) = ndjson(req);
            assert_eq!(text, want);
            assert_eq!(len, want.len(), "size must be the exact NDJSON size");
        }
    }

    #[test]
    fn each_operation_says_what_resending_it_does() {
        let doc = json!({"a": 1});
        let cases = [
            (
                BulkRequest::index("i").id("1").doc(&doc),
                Resend::Idempotent,
            ),
            (BulkRequest::index("i").doc(&doc), Resend::Never),
            (BulkRequest::create("i").doc(&doc), Resend::Never),
            (
                BulkRequest::create("i").id("1").doc(&doc),
                Resend::ConflictMeansApplied,
            ),
            (
                BulkRequest::index("i")
                    .id("1")
                    .version(3)
                    .version_type(VersionType::External)
                    .doc(&doc),
                Resend::ConflictMeansApplied,
            ),
            (
                BulkRequest::delete("i")
                    .id("1")
                    .version(3)
                    .version_type(VersionType::ExternalGte),
                Resend::ConflictMeansApplied,
            ),
            (
                BulkRequest::index("i")
                    .id("1")
                    .if_seq_no(4)
                    .if_primary_term(1)
                    .doc(&doc),
                Resend::Conditional,
            ),
            (
                BulkRequest::delete("i").id("1").version(2),
                Resend::Conditional,
            ),
            (BulkRequest::delete("i").id("1"), Resend::Idempotent),
            (
                BulkRequest::update("i")
                    .id("1")
                    .doc(&doc)
                    .doc_as_upsert(true),
                Resend::Idempotent,
            ),
            (
                BulkRequest::update("i")
                    .id("1")
                    .script(&json!({"source": "ctx._source.n++"})),
                Resend::Never,
            ),
        ];
        for (request, want) in cases {
            assert_eq!(request.resend(), want, "{request:?}");
            assert!(!request.maybe_applied());
        }
    }

    #[test]
    fn refuses_incomplete_requests_with_a_reason() {
        let mut no_doc = BulkRequest::index("logs");
        assert!(no_doc.encode().err().unwrap_or_default().contains(".doc("));
        let mut no_id = BulkRequest::delete("logs");
        assert!(no_id.encode().err().unwrap_or_default().contains("id"));
        let mut both = BulkRequest::update("logs")
            .id("1")
            .doc(&json!({"a": 1}))
            .script(&json!({"source": "x"}));
        assert!(both.encode().err().unwrap_or_default().contains("not both"));
        let mut neither = BulkRequest::update("logs").id("1");
        assert!(
            neither
                .encode()
                .err()
                .unwrap_or_default()
                .contains(".script(")
        );
        let mut scripted_index = BulkRequest::index("logs")
            .doc(&json!({"a": 1}))
            .script(&json!({"source": "x"}));
        assert!(
            scripted_index
                .encode()
                .err()
                .unwrap_or_default()
                .contains("only an update")
        );
        let mut newline = BulkRequest::index("logs").doc_json(&b"{\"a\":\n1}"[..]);
        assert!(
            newline
                .encode()
                .err()
                .unwrap_or_default()
                .contains("newline")
        );
    }
}
