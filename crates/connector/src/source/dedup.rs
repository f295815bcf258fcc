//! Without `tiebreaker_field`, documents are ordered by `_shard_doc`, whose values
//! mean nothing in another point in time: a new pass resumes at the start of the
//! cursor's timestamp and re-reads the documents sharing it. This remembers which
//! of them were already returned, so a long-running source does not deliver them
//! again at every pass. The ones committed at the committed cursor's timestamp are
//! stored with the state (`data.seen_at_cursor`), so a restart does not deliver
//! them again either.
//!
//! What is remembered is a 64-bit fingerprint of each [`MessageId`], and the
//! state holds them as one compact string per slice ([`SeenAtTimestamp::encode`]):
//! 8 bytes per document before base64, about 10.7 after, so a commit inside a
//! group of [`MAX_REMEMBERED`] documents writes at most about 1.1 MB per slice
//! (the 32-digit hex ids of earlier releases took about 42 bytes each in the
//! pretty-printed file). Two different documents share a fingerprint with a
//! probability of about 2^-64 per pair: across 100,000 remembered ids, about
//! 5 × 10^-15 per new document.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use es_query::Hit;
use serde_json::Value;

use crate::message::MessageId;

/// Most ids remembered for one timestamp; beyond it, duplicates are possible.
pub(crate) const MAX_REMEMBERED: usize = 100_000;

/// What starts the compact form of a slice's fingerprints in the state.
pub(crate) const ENCODING_PREFIX: &str = "fp64:";

/// The 64 bits of a [`MessageId`] that stand for it here.
pub(crate) fn fingerprint(id: MessageId) -> u64 {
    // Both halves of the 128-bit FNV-1a hash, folded.
    (id.0 >> 64) as u64 ^ id.0 as u64
}

#[derive(Debug, Default, Clone)]
pub(crate) struct SeenAtTimestamp {
    timestamp: Option<Value>,
    ids: HashSet<u64>,
}

impl SeenAtTimestamp {
    /// Drops hits returned before and remembers the others.
    pub(crate) fn filter(&mut self, hits: Vec<Hit>) -> Vec<Hit> {
        let mut kept = Vec::with_capacity(hits.len());
        for hit in hits {
            let id = fingerprint(MessageId::of(&hit.index, &hit.id, hit.seq_no));
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

    /// Fingerprints known at `timestamp` (the committed ones, after a restart).
    pub(crate) fn with_fingerprints(timestamp: Value, ids: impl IntoIterator<Item = u64>) -> Self {
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
            self.ids.insert(fingerprint(*id));
        }
    }

    /// Whether nothing is remembered.
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The state's form: [`encode_fingerprints`] of the set.
    pub(crate) fn encode(&self) -> String {
        encode_fingerprints(self.ids.iter().copied())
    }

    /// The fingerprints of [`encode`](Self::encode)'s string; `Err` says what is wrong.
    pub(crate) fn decode(text: &str) -> Result<Vec<u64>, String> {
        decode_fingerprints(text)
    }
}

/// The 64 bits that stand for a document (not a version of it) in the late window
/// and the audit: its index and id.
pub(crate) fn document_key(index: &str, id: &str) -> u64 {
    fingerprint(MessageId::of(index, id, None))
}

/// The state's form of a set of fingerprints: [`ENCODING_PREFIX`], then the
/// fingerprints sorted ascending, 8 bytes each big-endian, in base64 without
/// padding (the same set always gives the same string).
pub(crate) fn encode_fingerprints(ids: impl Iterator<Item = u64>) -> String {
    let mut ids: Vec<u64> = ids.collect();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    let mut out = String::with_capacity(ENCODING_PREFIX.len() + bytes.len() * 4 / 3 + 4);
    out.push_str(ENCODING_PREFIX);
    STANDARD_NO_PAD.encode_string(&bytes, &mut out);
    out
}

/// The fingerprints of [`encode_fingerprints`]'s string; `Err` says what is wrong.
pub(crate) fn decode_fingerprints(text: &str) -> Result<Vec<u64>, String> {
    let Some(body) = text.strip_prefix(ENCODING_PREFIX) else {
        return Err(format!("does not start with `{ENCODING_PREFIX}`"));
    };
    let bytes = STANDARD_NO_PAD
        .decode(body)
        .map_err(|e| format!("is not base64: {e}"))?;
    if bytes.len() % 8 != 0 {
        return Err(format!(
            "holds {} bytes, not a whole number of 8-byte fingerprints",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<MessageId> {
        (0..n)
            .map(|i| MessageId::of("logs", &i.to_string(), Some(1)))
            .collect()
    }

    #[test]
    fn the_encoding_round_trips_and_is_stable() {
        let mut seen = SeenAtTimestamp::default();
        seen.record(Some(&Value::from(7)), &ids(1000));
        let text = seen.encode();
        let mut decoded = SeenAtTimestamp::decode(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut expected: Vec<u64> = ids(1000).into_iter().map(fingerprint).collect();
        decoded.sort_unstable();
        expected.sort_unstable();
        assert_eq!(decoded, expected);
        let again = SeenAtTimestamp::with_fingerprints(Value::from(7), decoded);
        assert_eq!(again.encode(), text, "the same set encodes the same way");
        for bad in ["", "fp64:***", "fp64:AAAA", "[1]"] {
            assert!(SeenAtTimestamp::decode(bad).is_err(), "{bad:?} decoded");
        }
    }

    #[test]
    fn a_full_group_costs_under_eleven_bytes_a_document() {
        let mut seen = SeenAtTimestamp::default();
        seen.record(Some(&Value::from(7)), &ids(MAX_REMEMBERED + 10));
        let text = seen.encode();
        assert!(
            text.len() <= ENCODING_PREFIX.len() + MAX_REMEMBERED * 11,
            "{} bytes for {MAX_REMEMBERED} ids",
            text.len()
        );
    }

    #[test]
    fn a_new_timestamp_forgets_the_old_group() {
        let mut seen = SeenAtTimestamp::default();
        seen.record(Some(&Value::from(1)), &ids(10));
        seen.record(Some(&Value::from(2)), &ids(3));
        assert_eq!(
            SeenAtTimestamp::decode(&seen.encode()).map(|v| v.len()),
            Ok(3)
        );
    }
}
