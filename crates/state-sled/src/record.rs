//! The bytes stored under each key: a fixed header, then the JSON document.
//!
//! ```text
//! offset  size  field
//!      0     1  layout version (1)
//!      1     8  revision, u64 big-endian, from sled's persistent id generator
//!      9     8  last_updated seconds since the Unix epoch, i64 big-endian
//!     17     4  last_updated nanoseconds, u32 big-endian
//!     21     -  the compact JSON state document
//! ```
//!
//! The revision makes every stored value unique, so sled's byte-wise
//! compare-and-swap on the whole value is a compare-and-swap on the revision
//! (no ABA when a writer saves identical content twice). The timestamp lets
//! `list` answer without parsing documents.

use chrono::{DateTime, Utc};
use state_core::Revision;

const LAYOUT_VERSION: u8 = 1;
const HEADER_LEN: usize = 21;

/// A stored value, borrowed.
pub(crate) struct Record<'a> {
    pub(crate) revision: u64,
    pub(crate) last_updated: DateTime<Utc>,
    pub(crate) document: &'a [u8],
}

impl<'a> Record<'a> {
    /// Splits a stored value; `Err` says why it is not one of ours.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        if bytes.len() < HEADER_LEN {
            return Err(format!(
                "the stored value is {} bytes, shorter than the {HEADER_LEN}-byte header, probably truncated",
                bytes.len()
            ));
        }
        let (header, document) = bytes.split_at(HEADER_LEN);
        if header[0] != LAYOUT_VERSION {
            return Err(format!(
                "unknown value layout {} (this build writes layout {LAYOUT_VERSION}); it was written by \
                 another program or a newer version",
                header[0]
            ));
        }
        let revision = u64::from_be_bytes(array(&header[1..9]));
        let secs = i64::from_be_bytes(array(&header[9..17]));
        let nanos = u32::from_be_bytes(array(&header[17..21]));
        let last_updated = DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| format!("the header's timestamp {secs}s {nanos}ns is out of range"))?;
        Ok(Record {
            revision,
            last_updated,
            document,
        })
    }

    pub(crate) fn revision(&self) -> Revision {
        Revision::new(self.revision.to_string())
    }
}

/// Encodes a state's compact JSON `document` with its header.
pub(crate) fn encode(document: &[u8], last_updated: DateTime<Utc>, revision: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + document.len());
    out.push(LAYOUT_VERSION);
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(&last_updated.timestamp().to_be_bytes());
    out.extend_from_slice(&last_updated.timestamp_subsec_nanos().to_be_bytes());
    out.extend_from_slice(document);
    out
}

fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use state_core::ConnectorState;

    #[test]
    fn header_round_trips_and_short_values_are_refused() {
        let state = ConnectorState::new("r");
        let bytes = encode(&state.to_json(), state.last_updated, 42);
        let record = Record::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(record.revision, 42);
        assert_eq!(record.last_updated, state.last_updated);
        assert_eq!(record.document, state.to_json().as_slice());
        assert!(Record::parse(&bytes[..10]).is_err());
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(Record::parse(&other).is_err());
    }
}
