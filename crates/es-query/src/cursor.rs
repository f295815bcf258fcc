//! Where an incremental read stands: the sort values of the last delivered hit.

use serde::{Deserialize, Serialize};

use crate::response::Hit;

/// How many sort values a cursor holds: every search sorts on `[timestamp, tiebreaker]`.
pub(crate) const SORT_KEYS: usize = 2;

/// The sort values `[timestamp, tiebreaker]` of the last delivered hit, kept exactly
/// as the server returned them and sent back verbatim as `search_after`.
///
/// Serialises as `{"sort": [...]}` so the connector can store it in its state document.
///
/// ```
/// use es_query::Cursor;
/// let cursor = Cursor::new(vec![1705314600000_i64.into(), "e2".into()]);
/// let stored = serde_json::to_string(&cursor)?;
/// assert_eq!(stored, r#"{"sort":[1705314600000,"e2"]}"#);
/// assert_eq!(serde_json::from_str::<Cursor>(&stored)?, cursor);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The hit's `sort` array.
    pub sort: Vec<serde_json::Value>,
}

impl Cursor {
    /// A cursor from raw sort values.
    pub fn new(sort: Vec<serde_json::Value>) -> Self {
        Cursor { sort }
    }

    /// The cursor just after `hit`: its first two sort values, the ones this crate's
    /// searches sort on; `None` if the hit has no sort values (a search not built by
    /// this crate).
    ///
    /// Inside a point in time, Elasticsearch >= 7.12 appends an implicit `_shard_doc`
    /// value to every hit's `sort` when the request's sort does not end in
    /// `_shard_doc` (with `tiebreaker_field`: `[timestamp, tiebreaker, shard_doc]`).
    /// It is left out: the unique tiebreaker already orders every hit, and a
    /// `search_after` of the two requested values resumes in any point in time.
    pub fn from_hit(hit: &Hit) -> Option<Cursor> {
        if hit.sort.is_empty() {
            None
        } else {
            Some(Cursor::new(
                hit.sort.iter().take(SORT_KEYS).cloned().collect(),
            ))
        }
    }

    /// The timestamp sort value (the first one).
    pub fn timestamp_value(&self) -> Option<&serde_json::Value> {
        self.sort.first()
    }

    /// The tiebreaker sort value (the second one).
    pub fn tiebreaker_value(&self) -> Option<&serde_json::Value> {
        self.sort.get(1)
    }
}
