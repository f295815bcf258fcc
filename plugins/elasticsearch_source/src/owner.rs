//! Who owns the cursor, and the runtime-owned state's encoding.
//!
//! Exactly one place holds the cursor, so the runtime's state file and the
//! configured store can never disagree:
//!
//! - [`CursorOwner::Store`] when `plugin_config.state` is enabled: the plugin never
//!   hands the runtime a state (`ProducedMessages::state` is always `None`), ignores
//!   any state the runtime passes in, and saves to its store in `on_batch_result`.
//! - [`CursorOwner::Runtime`] otherwise: the plugin keeps its state in memory, hands
//!   the runtime the whole state document after each batch, and restores from the
//!   state the runtime passes to `new`. The runtime saves it after sending the batch
//!   and acknowledges only once it is saved.

use connector::PluginConfig;
use iggy_connector_sdk::ConnectorState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plugin::CONNECTOR_NAME;

/// Where the cursor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorOwner {
    /// The store of an enabled `plugin_config.state` block.
    Store,
    /// The runtime's state file (`<state.path>/source_<key>.state`).
    Runtime,
}

impl CursorOwner {
    /// For logs: who owns the cursor.
    pub fn describe(self) -> &'static str {
        match self {
            CursorOwner::Store => "the configured state store (plugin_config.state)",
            CursorOwner::Runtime => "the runtime's state file",
        }
    }

    /// The owner `config` implies: the store when a `state` block is enabled.
    pub fn of(config: &PluginConfig) -> Self {
        match &config.state {
            Some(state) if state.enabled => CursorOwner::Store,
            _ => CursorOwner::Runtime,
        }
    }
}

/// Version of [`RuntimeState`]; a newer one is refused, never overwritten.
pub const RUNTIME_STATE_FORMAT: u32 = 1;

/// What the plugin stores in the runtime's state (MessagePack, via
/// [`ConnectorState::serialize`]): the state document as JSON text, exactly what
/// `es-connector state export` prints, so it can be inspected and moved to a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeState {
    /// [`RUNTIME_STATE_FORMAT`] when written by this build.
    pub format: u32,
    /// The state document (`{"id", "last_updated", "version", "data", "metadata"}`).
    pub document: String,
}

/// Encodes `document` for the runtime; `None` (logged by the SDK) if it cannot be.
pub fn encode(document: &Value, plugin_id: u32) -> Option<ConnectorState> {
    let state = RuntimeState {
        format: RUNTIME_STATE_FORMAT,
        document: document.to_string(),
    };
    ConnectorState::serialize(&state, CONNECTOR_NAME, plugin_id)
}

/// Decodes the runtime's state into the state document. An unreadable or newer
/// state is an error naming what to do: it is never replaced by a fresh one.
pub fn decode(state: ConnectorState, plugin_id: u32) -> Result<Value, String> {
    let bytes = state.0.len();
    let Some(state) = state.deserialize::<RuntimeState>(CONNECTOR_NAME, plugin_id) else {
        return Err(format!(
            "the runtime's state of this connector ({bytes} bytes) is not a state this plugin wrote; \
             remove the runtime's state file (<state.path>/source_<key>.state) to start from the beginning"
        ));
    };
    if state.format > RUNTIME_STATE_FORMAT {
        return Err(format!(
            "the runtime's state of this connector has format {}, newer than this plugin's {RUNTIME_STATE_FORMAT}; \
             upgrade the plugin",
            state.format
        ));
    }
    serde_json::from_str(&state.document).map_err(|e| {
        format!(
            "the runtime's state of this connector holds an unreadable document ({e}); \
             remove the runtime's state file (<state.path>/source_<key>.state) to start from the beginning"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(state: Value) -> PluginConfig {
        let mut c = json!({"url": "http://localhost:9200", "index": "logs-*"});
        if !state.is_null() {
            c["state"] = state;
        }
        serde_json::from_value(c).unwrap_or_else(|e| unreachable!("test config: {e}"))
    }

    #[test]
    fn an_enabled_state_block_owns_the_cursor_otherwise_the_runtime() {
        assert_eq!(CursorOwner::of(&config(Value::Null)), CursorOwner::Runtime);
        assert_eq!(
            CursorOwner::of(&config(json!({"storage_type": "file"}))),
            CursorOwner::Store,
            "enabled defaults to true once a state block is written"
        );
        assert_eq!(
            CursorOwner::of(&config(json!({"enabled": false}))),
            CursorOwner::Runtime
        );
    }

    #[test]
    fn the_document_survives_the_runtime_round_trip() {
        let document = json!({
            "id": "elasticsearch_source_3",
            "last_updated": "2024-01-15T10:30:00Z",
            "version": 1,
            "data": {"cursor": {"sort": [1705314600000u64, "doc-9"]}, "total_documents_fetched": 15000},
            "metadata": {"connector_type": "elasticsearch_source", "connector_id": 3}
        });
        let state = encode(&document, 3).unwrap_or_else(|| unreachable!("encodable"));
        // What the runtime writes to its file and hands back at the next start.
        let reloaded = ConnectorState(state.0.clone());
        assert_eq!(decode(reloaded, 3), Ok(document));
    }

    #[test]
    fn an_unreadable_state_is_refused_not_replaced() {
        let error = decode(ConnectorState(vec![0xc1, 0x00, 0x17]), 3).err();
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("source_<key>.state")),
            "{error:?}"
        );
    }

    #[test]
    fn a_newer_format_is_refused() {
        let newer = RuntimeState {
            format: RUNTIME_STATE_FORMAT + 1,
            document: "{}".into(),
        };
        let state = ConnectorState::serialize(&newer, CONNECTOR_NAME, 3)
            .unwrap_or_else(|| unreachable!("encodable"));
        let error = decode(state, 3).err();
        assert!(
            error.as_deref().is_some_and(|e| e.contains("upgrade")),
            "{error:?}"
        );
    }
}
