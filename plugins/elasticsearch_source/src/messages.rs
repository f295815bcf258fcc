//! A source [`Message`] as the SDK's [`ProducedMessage`].

use std::collections::BTreeMap;

use connector::Message;
use iggy_common::{HeaderKey, HeaderValue};
use iggy_connector_sdk::ProducedMessage;

/// The message for `message`: the deterministic id as the Iggy message id, the
/// `_source` bytes as the JSON payload, the `es_*` headers as string headers.
///
/// Iggy header values hold at most 255 bytes; a longer value (an `_id` may have up
/// to 512) is left out, with a debug log, rather than failing the batch.
pub fn to_produced(message: Message) -> ProducedMessage {
    let mut headers = BTreeMap::new();
    for (name, value) in &message.headers {
        match (
            HeaderKey::try_from(*name),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(key), Ok(value)) => {
                headers.insert(key, value);
            }
            _ => tracing::debug!(
                "header {name} of message {} left out: its {} bytes are not 1 to 255, Iggy's limit",
                message.id,
                value.len()
            ),
        }
    }
    ProducedMessage {
        id: Some(message.id.0),
        checksum: None,
        timestamp: None,
        origin_timestamp: None,
        headers: Some(headers),
        payload: message.payload.get().as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector::message::{HEADER_ID, HEADER_INDEX, HEADER_SEQ_NO, HEADER_TIMESTAMP};
    use serde_json::value::RawValue;

    fn message(id: &str, payload: &str) -> Message {
        let payload = RawValue::from_string(payload.to_owned())
            .unwrap_or_else(|e| unreachable!("test payload is JSON: {e}"));
        Message::new(
            "logs-1",
            id,
            Some(7),
            Some("2024-01-15T10:30:00Z".into()),
            payload,
        )
    }

    fn header(produced: &ProducedMessage, name: &str) -> Option<String> {
        let key = HeaderKey::try_from(name).ok()?;
        let value = produced.headers.as_ref()?.get(&key)?;
        value.as_str().ok().map(str::to_owned)
    }

    #[test]
    fn id_payload_and_headers_are_carried_over() {
        let m = message("doc-1", r#"{"msg":"hi","n":1.50}"#);
        let id = m.id;
        let produced = to_produced(m);
        assert_eq!(produced.id, Some(id.0));
        assert_eq!(
            produced.payload,
            br#"{"msg":"hi","n":1.50}"#.to_vec(),
            "payload byte for byte"
        );
        assert_eq!(header(&produced, HEADER_INDEX).as_deref(), Some("logs-1"));
        assert_eq!(header(&produced, HEADER_ID).as_deref(), Some("doc-1"));
        assert_eq!(header(&produced, HEADER_SEQ_NO).as_deref(), Some("7"));
        assert_eq!(
            header(&produced, HEADER_TIMESTAMP).as_deref(),
            Some("2024-01-15T10:30:00Z")
        );
    }

    #[test]
    fn a_header_too_long_for_iggy_is_left_out_not_fatal() {
        let long_id = "x".repeat(300);
        let produced = to_produced(message(&long_id, "{}"));
        assert_eq!(header(&produced, HEADER_ID), None);
        assert_eq!(header(&produced, HEADER_INDEX).as_deref(), Some("logs-1"));
        assert!(produced.id.is_some(), "the id still names the document");
    }
}
