//! Without `tiebreaker_field`, documents are ordered by `_shard_doc`, whose values
//! mean nothing in another point in time: a new pass resumes at the start of the
//! cursor's timestamp and re-reads the documents sharing it. This remembers which
//! of them were already returned, so a long-running source does not deliver them
//! again at every pass. In memory only: after a restart they may come once more.

use std::collections::HashSet;

use es_query::Hit;
use serde_json::Value;

use crate::message::MessageId;

/// Most ids remembered for one timestamp; beyond it, duplicates are possible.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, Default)]
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

    /// Forgets everything (the read position moved back).
    pub(crate) fn clear(&mut self) {
        self.timestamp = None;
        self.ids.clear();
    }
}
