//! Bulk requests: built by the user, encoded to NDJSON once, when added.

use std::fmt;
use std::io::Write;

use bytes::Bytes;
use serde::Serialize;

/// The bulk operation of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpType {
    /// Index (create or replace) a document.
    Index,
    /// Create a document; fails with 409 if the id exists.
    Create,
    /// Partially update a document (`doc`, optionally `doc_as_upsert`).
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
    action: Option<Vec<u8>>,
    encoded_len: usize,
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
            action: None,
            encoded_len: 0,
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
    /// Partially update a document; set `.doc(..)` and optionally `.doc_as_upsert(true)`.
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

    /// The operation.
    pub fn op(&self) -> OpType {
        self.op
    }
    /// The target index, if set.
    pub fn index_name(&self) -> Option<&str> {
        self.index.as_deref()
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

    /// Builds the action line and checks the request; called once by `add`.
    pub(crate) fn encode(&mut self) -> Result<usize, String> {
        let body_len = match (self.op, &self.source) {
            (OpType::Delete, Some(_)) => return Err("a delete takes no document".into()),
            (OpType::Delete, None) => {
                if self.id.is_none() {
                    return Err("a delete needs an id".into());
                }
                0
            }
            (_, None) => {
                return Err(format!(
                    "an {} request needs a document: call .doc(..)",
                    self.op.as_str()
                ));
            }
            (_, Some(Err(e))) => return Err(format!("the document cannot be serialised: {e}")),
            (OpType::Update, Some(Ok(doc))) => {
                if self.id.is_none() {
                    return Err("an update needs an id".into());
                }
                // {"doc":<doc>,"doc_as_upsert":true}\n
                let upsert = if self.doc_as_upsert {
                    r#","doc_as_upsert":true"#.len()
                } else {
                    0
                };
                r#"{"doc":"#.len() + doc.len() + upsert + "}\n".len()
            }
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
        // Writing into a Vec cannot fail; serialising plain strings and numbers cannot either.
        let _ = write!(line, "{{\"{}\":", self.op.as_str());
        serde_json::to_writer(&mut line, &meta).map_err(|e| e.to_string())?;
        line.extend_from_slice(b"}\n");
        let len = line.len() + body_len;
        self.action = Some(line);
        self.encoded_len = len;
        Ok(len)
    }

    /// Appends this request's NDJSON lines to `out`.
    pub(crate) fn write_ndjson(&self, out: &mut Vec<u8>) {
        if let Some(action) = &self.action {
            out.extend_from_slice(action);
        }
        if let Some(Ok(doc)) = &self.source {
            if self.op == OpType::Update {
                out.extend_from_slice(b"{\"doc\":");
                out.extend_from_slice(doc);
                if self.doc_as_upsert {
                    out.extend_from_slice(b",\"doc_as_upsert\":true");
                }
                out.extend_from_slice(b"}\n");
            } else {
                out.extend_from_slice(doc);
                out.push(b'\n');
            }
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
        let mut out = Vec::new();
        r.write_ndjson(&mut out);
        (len, String::from_utf8(out).unwrap_or_default())
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
    fn refuses_incomplete_requests_with_a_reason() {
        let mut no_doc = BulkRequest::index("logs");
        assert!(no_doc.encode().err().unwrap_or_default().contains(".doc("));
        let mut no_id = BulkRequest::delete("logs");
        assert!(no_id.encode().err().unwrap_or_default().contains("id"));
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
