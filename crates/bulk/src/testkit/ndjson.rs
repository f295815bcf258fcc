//! Reading `_bulk` bodies the cheap way: only action lines are parsed, and only
//! for the fields the test servers echo back (kept as raw JSON, never unescaped).

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One request of a `_bulk` body.
#[derive(Debug)]
pub(crate) struct Action<'a> {
    /// `index`, `create`, `update` or `delete`.
    pub op: &'static str,
    /// The `_index` value as raw JSON, when the action names one.
    pub index: Option<&'a RawValue>,
    /// The `_id` value as raw JSON, when the action names one.
    pub id: Option<&'a RawValue>,
    /// The bytes of the action line and its document line, newlines included.
    pub range: Range<usize>,
}

#[derive(Deserialize)]
enum ActionLine<'a> {
    #[serde(rename = "index", borrow)]
    Index(Meta<'a>),
    #[serde(rename = "create", borrow)]
    Create(Meta<'a>),
    #[serde(rename = "update", borrow)]
    Update(Meta<'a>),
    #[serde(rename = "delete", borrow)]
    Delete(Meta<'a>),
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(rename = "_index", borrow, default)]
    index: Option<&'a RawValue>,
    #[serde(rename = "_id", borrow, default)]
    id: Option<&'a RawValue>,
}

/// The requests of an NDJSON `_bulk` body, in order. A document line follows
/// every action but `delete`; blank lines are skipped. Yields an error (and
/// then stops) at the first line that is not a valid action.
pub(crate) fn actions(body: &[u8]) -> Actions<'_> {
    Actions {
        body,
        pos: 0,
        failed: false,
    }
}

/// Iterator returned by [`actions`].
#[derive(Debug)]
pub(crate) struct Actions<'a> {
    body: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Actions<'a> {
    /// The next line (without its newline) and the position after it.
    fn line(&self, from: usize) -> Option<(&'a [u8], usize)> {
        if from >= self.body.len() {
            return None;
        }
        let rest = &self.body[from..];
        Some(match rest.iter().position(|&b| b == b'\n') {
            Some(n) => (&rest[..n], from + n + 1),
            None => (rest, self.body.len()),
        })
    }

    fn fail(&mut self, reason: String) -> Option<Result<Action<'a>, String>> {
        self.failed = true;
        Some(Err(reason))
    }
}

impl<'a> Iterator for Actions<'a> {
    type Item = Result<Action<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let (start, line, after) = loop {
            let start = self.pos;
            let (line, after) = self.line(start)?;
            self.pos = after;
            if !line.trim_ascii().is_empty() {
                break (start, line, after);
            }
        };
        let parsed: ActionLine<'a> = match serde_json::from_slice(line) {
            Ok(parsed) => parsed,
            Err(e) => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
                return self.fail(format!(
                    "malformed action line at byte {start} ({e}): {shown}"
                ));
            }
        };
        let (op, meta, has_doc) = match parsed {
            ActionLine::Index(m) => ("index", m, true),
            ActionLine::Create(m) => ("create", m, true),
            ActionLine::Update(m) => ("update", m, true),
            ActionLine::Delete(m) => ("delete", m, false),
        };
        let end = if has_doc {
            match self.line(after) {
                Some((doc, end)) if !doc.trim_ascii().is_empty() => end,
                _ => {
                    return self.fail(format!(
                        "the {op} action at byte {start} has no document line"
                    ));
                }
            }
        } else {
            after
        };
        self.pos = end;
        Some(Ok(Action {
            op,
            index: meta.index,
            id: meta.id,
            range: start..end,
        }))
    }
}

/// The index named by a `/{index}/_bulk` path, as a JSON string; `None` for `/_bulk`.
pub(crate) fn path_index(path: &str) -> Option<String> {
    let index = path.strip_suffix("/_bulk")?.trim_start_matches('/');
    (!index.is_empty()).then(|| serde_json::Value::String(index.to_owned()).to_string())
}

/// Whether `path` is a `_bulk` endpoint.
pub(crate) fn is_bulk_path(path: &str) -> bool {
    path == "/_bulk" || (path.ends_with("/_bulk") && path.len() > "/_bulk".len() + 1)
}

/// Appends `{"<op>":{"_index":..,"_id":..,<fields>}}`; `fields` is JSON object
/// members without braces, starting with a comma.
pub(crate) fn write_item(
    out: &mut Vec<u8>,
    action: &Action<'_>,
    default_index: &[u8],
    fields: &[&[u8]],
) {
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(action.op.as_bytes());
    out.extend_from_slice(b"\":{\"_index\":");
    out.extend_from_slice(
        action
            .index
            .map(|r| r.get().as_bytes())
            .unwrap_or(default_index),
    );
    out.extend_from_slice(b",\"_id\":");
    out.extend_from_slice(action.id.map(|r| r.get().as_bytes()).unwrap_or(b"null"));
    for f in fields {
        out.extend_from_slice(f);
    }
    out.extend_from_slice(b"}}");
}

/// An Elasticsearch-style error body.
pub(crate) fn error_body(kind: &str, reason: &str, status: u16) -> Vec<u8> {
    serde_json::json!({
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_actions_and_skips_documents() {
        let body = b"{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"delete\":1}\n\n{\"delete\":{\"_id\":\"x\\\"y\"}}\n{\"create\":{\"_id\":2,\"routing\":\"r\"}}\n{\"n\":2}";
        let got: Vec<_> = actions(body)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let ops: Vec<_> = got.iter().map(|a| a.op).collect();
        assert_eq!(ops, ["index", "delete", "create"]);
        assert_eq!(got[0].index.map(RawValue::get), Some("\"a\""));
        assert_eq!(got[1].id.map(RawValue::get), Some("\"x\\\"y\""));
        assert_eq!(got[1].index.map(RawValue::get), None);
        assert_eq!(got[2].id.map(RawValue::get), Some("2"));
        assert_eq!(
            &body[got[0].range.clone()],
            b"{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"delete\":1}\n"
        );
        assert_eq!(
            &body[got[2].range.clone()],
            b"{\"create\":{\"_id\":2,\"routing\":\"r\"}}\n{\"n\":2}"
        );
    }

    #[test]
    fn refuses_bad_lines() {
        let missing_doc = actions(b"{\"index\":{}}\n").collect::<Result<Vec<_>, _>>();
        assert!(
            missing_doc
                .err()
                .unwrap_or_default()
                .contains("no document line")
        );
        let bad = actions(b"{\"upsert\":{}}\n{}\n").collect::<Result<Vec<_>, _>>();
        assert!(
            bad.err()
                .unwrap_or_default()
                .contains("malformed action line")
        );
    }

    #[test]
    fn paths() {
        assert!(is_bulk_path("/_bulk"));
        assert!(is_bulk_path("/logs/_bulk"));
        assert!(!is_bulk_path("//_bulk"));
        assert!(!is_bulk_path("/_bulkx"));
        assert_eq!(path_index("/logs/_bulk").as_deref(), Some("\"logs\""));
        assert_eq!(path_index("/_bulk"), None);
    }
}
