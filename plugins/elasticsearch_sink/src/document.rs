//! What a consumed message becomes: a document id and a JSON object.

use std::collections::BTreeMap;

use connector::MessageId;
use connector::message::{HEADER_ID, HEADER_INDEX, HEADER_SEQ_NO, TargetDocument};
use iggy_common::{HeaderKey, HeaderValue};
use iggy_connector_sdk::Payload;
use serde_json::value::RawValue;

/// Where the message's document goes: [`TargetDocument`] of its `es_index`,
/// `es_id` and `es_seq_no` headers (a message of the Elasticsearch source), the
/// same rule as `es-connector`'s Elasticsearch output: `_id` `{es_index}/{es_id}`
/// versioned by `_seq_no`, else the message id in the 32 hex digits
/// [`MessageId`] prints.
pub fn target_document(
    message_id: u128,
    headers: Option<&BTreeMap<HeaderKey, HeaderValue>>,
) -> TargetDocument {
    let header = |name: &str| {
        HeaderKey::try_from(name)
            .ok()
            .and_then(|key| headers?.get(&key))
            .and_then(|value| value.as_str().ok())
    };
    TargetDocument::of(
        header(HEADER_INDEX),
        header(HEADER_ID),
        header(HEADER_SEQ_NO),
        MessageId(message_id),
    )
}

/// The document's JSON bytes: a JSON payload, or a raw or text payload that holds
/// a JSON object. Anything else is refused with the reason and the payload's bytes
/// (for the dead-letter file): Elasticsearch indexes JSON objects only.
pub fn document_json(payload: Payload) -> Result<Vec<u8>, (String, Vec<u8>)> {
    let schema = match &payload {
        Payload::Json(_) | Payload::Raw(_) | Payload::Text(_) => None,
        Payload::Proto(_) => Some("proto"),
        Payload::FlatBuffer(_) => Some("flatbuffer"),
        Payload::Avro(_) => Some("avro"),
    };
    let bytes = payload
        .try_into_vec()
        .map_err(|e| (format!("unreadable payload: {e}"), Vec::new()))?;
    if let Some(schema) = schema {
        return Err((not_json(schema), bytes));
    }
    let raw: &RawValue = match serde_json::from_slice(&bytes) {
        Ok(raw) => raw,
        Err(e) => return Err((format!("the payload is not JSON: {e}"), bytes)),
    };
    if !raw.get().starts_with('{') {
        return Err((
            "the payload is JSON but not an object; Elasticsearch indexes objects".into(),
            bytes,
        ));
    }
    Ok(bytes)
}

fn not_json(schema: &str) -> String {
    format!(
        "the payload has schema {schema}; this sink indexes JSON objects (schema json, raw or text)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<HeaderKey, HeaderValue> {
        pairs
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderKey::try_from(*k).ok()?,
                    HeaderValue::try_from(*v).ok()?,
                ))
            })
            .collect()
    }

    fn document_id(message_id: u128, headers: Option<&BTreeMap<HeaderKey, HeaderValue>>) -> String {
        target_document(message_id, headers).id
    }

    #[test]
    fn the_source_index_and_id_name_the_document() {
        let h = headers(&[
            ("es_id", "doc-42"),
            ("es_index", "logs"),
            ("es_seq_no", "9"),
        ]);
        assert_eq!(document_id(7, Some(&h)), "logs/doc-42");
        assert_eq!(target_document(7, Some(&h)).version, Some(9));
        let other = headers(&[("es_id", "doc-42"), ("es_index", "logs-b")]);
        assert_eq!(document_id(7, Some(&other)), "logs-b/doc-42");
    }

    #[test]
    fn without_es_id_the_message_id_in_hex() {
        assert_eq!(document_id(0xabc, None), "00000000000000000000000000000abc");
        let h = headers(&[("es_index", "logs")]);
        assert_eq!(document_id(1, Some(&h)), format!("{:032x}", 1));
        assert_eq!(target_document(1, Some(&h)).version, None);
        // Same format as the source's message ids.
        assert_eq!(document_id(5, None), MessageId(5).to_string());
    }

    #[test]
    fn json_objects_pass_byte_for_byte_when_raw() {
        let doc = br#"{"msg":"hi","n":1.50}"#.to_vec();
        assert_eq!(document_json(Payload::Raw(doc.clone())), Ok(doc));
        assert_eq!(
            document_json(Payload::Text(r#"{"a":1}"#.into())),
            Ok(br#"{"a":1}"#.to_vec())
        );
    }

    #[test]
    fn json_payloads_are_serialised() {
        // Decoded by the SDK as the runtime decodes a `schema = "json"` stream.
        let payload = iggy_connector_sdk::Schema::Json
            .try_into_payload(br#"{"a":[1,2],"b":"c"}"#.to_vec())
            .unwrap_or_else(|e| unreachable!("valid JSON: {e}"));
        assert!(matches!(payload, Payload::Json(_)));
        let out = document_json(payload).unwrap_or_default();
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(parsed, serde_json::json!({"a": [1, 2], "b": "c"}));
    }

    #[test]
    fn anything_but_a_json_object_is_refused_with_the_reason() {
        let not_json = document_json(Payload::Raw(b"hello".to_vec()));
        assert!(
            not_json
                .as_ref()
                .is_err_and(|(e, bytes)| e.contains("not JSON") && bytes == b"hello"),
            "{not_json:?}"
        );
        let array = document_json(Payload::Text("[1,2]".into()));
        assert!(
            array
                .as_ref()
                .is_err_and(|(e, _)| e.contains("not an object")),
            "{array:?}"
        );
        let avro = document_json(Payload::Avro(vec![1, 2]));
        assert!(
            avro.as_ref().is_err_and(|(e, _)| e.contains("avro")),
            "{avro:?}"
        );
    }
}
