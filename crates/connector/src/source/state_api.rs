//! The documented state API of the source: `load_state`, `get_state`,
//! `export_state`, `import_state`, `reset_state`, and `get_state_manager` (for
//! `get_state_stats`/`cleanup_old_states`). Inherent methods: the source is the
//! only thing that has them, so no trait needs importing.

use serde_json::Value;
use state_core::{ConnectorState, StateManager};

use super::ElasticsearchSource;
use crate::error::Result;

/// State management on a source, as documented upstream
/// (`connector.get_state()`, `connector.export_state()`, `connector.get_state_manager()`).
///
/// `get_state_manager()` returns the manager once the store is open: after
/// [`ElasticsearchSource::open`] or [`ElasticsearchSource::load_state`]
/// (opening a Redis or Elasticsearch store is IO, which `new` does not do), and
/// only when a `state` block is enabled.
impl ElasticsearchSource {
    /// Opens the store if needed and reads the stored state; the source resumes from it.
    pub async fn load_state(&mut self) -> Result<ConnectorState> {
        let manager = self.manager().await?;
        let mut state = manager.load().await?;
        manager.set_metadata(self.metadata()).await;
        state.metadata = self.metadata();
        self.adopt(&state).await?;
        Ok(state)
    }

    /// The current state (what the next save writes).
    pub async fn get_state(&mut self) -> Result<ConnectorState> {
        Ok(self.manager().await?.get().await)
    }

    /// The current state as the documented JSON document.
    pub async fn export_state(&mut self) -> Result<Value> {
        Ok(self.manager().await?.export_state().await?)
    }

    /// Replaces the stored state with `document` (validated); the source resumes from it.
    pub async fn import_state(&mut self, document: Value) -> Result<()> {
        let manager = self.manager().await?;
        manager.import_state(document).await?;
        let state = manager.get().await;
        self.adopt(&state).await
    }

    /// Starts over: a fresh state is stored (metadata kept); the next poll reads from the start.
    pub async fn reset_state(&mut self) -> Result<()> {
        let manager = self.manager().await?;
        manager.reset_state().await?;
        let state = manager.get().await;
        self.adopt(&state).await
    }

    /// The manager, when state is enabled and its store open.
    pub fn get_state_manager(&self) -> Option<&StateManager> {
        self.state.as_ref().filter(|_| self.persistent)
    }
}
