//! An Iggy message as the sink (`es-connector sink`) reads it: the user headers
//! (Iggy's TLV encoding, of which the sink keeps the `es_*` ones), the payload
//! (JSON, else dead-lettered), then the target document and its bulk request.
//!
//! Input: a 4-byte little-endian length, that many bytes of user headers, then
//! the payload.
#![no_main]

use bytes::Bytes;
use connector::iggy::Consumed;
use connector::message::{HEADER_TIMESTAMP, TargetDocument, timestamp_millis};
use iggy::prelude::{IggyMessage, IggyMessageHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (headers, payload) = rest.split_at(len);
    let message = IggyMessage {
        header: IggyMessageHeader {
            checksum: 0,
            id: u128::from(len as u64) << 64 | payload.len() as u128,
            offset: 7,
            timestamp: 1_705_314_600_000_000,
            origin_timestamp: 1_705_314_600_000_000,
            user_headers_length: headers.len() as u32,
            payload_length: payload.len() as u32,
            reserved: 0,
        },
        payload: Bytes::copy_from_slice(payload),
        user_headers: (!headers.is_empty()).then(|| Bytes::copy_from_slice(headers)),
    };
    match connector::fuzzing::consume(&message) {
        Consumed::Message(m) => {
            let target = TargetDocument::of_message(&m);
            assert!(
                !target.id.is_empty() && target.id.len() <= 512,
                "{target:?}"
            );
            if let Some(ts) = m.headers.get(HEADER_TIMESTAMP) {
                let _ = timestamp_millis(ts);
            }
            let _ = target.index_request("target", m.payload.get().as_bytes().to_vec());
            let line = m.to_json_line();
            // JSON by the grammar, which sets no bound on numbers: `1e99999` is
            // JSON (Elasticsearch refuses it, and the sink dead-letters it),
            // though serde_json's `Value` cannot hold it.
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(&line).is_ok());
        }
        Consumed::Invalid { reason, .. } => assert!(!reason.is_empty()),
    }
});
