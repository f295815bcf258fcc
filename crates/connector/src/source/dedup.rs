//! Without `tiebreaker_field`, documents are ordered by `_shard_doc`, whose values
//! mean nothing in another point in time: a new pass resumes at the start of the
//! cursor's timestamp and re-reads the documents sharing it. This remembers which
//! of them were already returned, so a long-running source does not deliver them
//! again at every pass. The ids committed at the committed cursor's timestamp are
//! stored with the state (`data.seen_at_cursor`), so a restart does not deliver
//! them again either.

use std::collections::HashSet;

use es_query::Hit;
use serde_json::Value;

use crate::message::MessageId;

/// Most ids remembered for one timestamp; beyond it, duplicates are possible.
pub(crate) const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, Default, Clone)]
pub(crate) struct SeenAtTimestamp {
    timestamp: Option<Value>,
    ids: HashSet<MessageId>,
}

impl SeenAtTimestamp {
    /// Drops hits returned before and remembers the others.
    pub(crate) fn filter(&mut self, hits: Vec<Hit>) -> Vec<Hit> {
        let mut kept = Vec::with_capacity(hits.len());
        for hit in hits {
            let id = MessageId::of(&hit.index, &hit.id, hit.seq_no);
            let ts = hit.sort.first().cloned();
            if ts.is_some() && ts == self.timestamp {
                if self.ids.contains(&id) {
                    continue;
                }
            } else {
                self.timestamp = ts;
                self.ids.clear();
            }
            if self.ids.len() < MAX_REMEMBERED {
                self.ids.insert(id);
            }
            kept.push(hit);
        }
        kept
    }

    /// Ids known at `timestamp` (the committed ones, after a restart).
    pub(crate) fn with_ids(timestamp: Value, ids: impl IntoIterator<Item = MessageId>) -> Self {
        SeenAtTimestamp {
            timestamp: Some(timestamp),
            ids: ids.into_iter().take(MAX_REMEMBERED).collect(),
        }
    }

    /// Adds the ids of a committed batch whose last documents are at `timestamp`:
    /// they join the ids already there when the timestamp is the same, replace
    /// them otherwise.
    pub(crate) fn record(&mut self, timestamp: Option<&Value>, ids: &[MessageId]) {
        if timestamp != self.timestamp.as_ref() {
            self.timestamp = timestamp.cloned();
            self.ids.clear();
        }
        for id in ids {
            if self.ids.len() >= MAX_REMEMBERED {
                break;
            }
            self.ids.insert(*id);
        }
    }

    /// The ids, sorted (for a stable state document).
    pub(crate) fn sorted_ids(&self) -> Vec<MessageId> {
        let mut ids: Vec<MessageId> = self.ids.iter().copied().collect();
        ids.sort_unstable();
        ids
    }
}
