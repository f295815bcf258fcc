//! The documented state conveniences of the source: load, get, export, import,
//! reset, and the manager itself (for `get_state_stats`/`cleanup_old_states`).

use async_trait::async_trait;
use serde_json::Value;
use state_core::{ConnectorState, StateManager};

use super::ElasticsearchSource;
use crate::error::Result;

/// State management on a source, as documented upstream.
///
/// `get_state_manager()` returns the manager once the store is open: after
/// [`ElasticsearchSource::open`] or [`StateManagerExt::load_state`]
/// (opening a Redis or Elasticsearch store is IO, which `new` does not do), and
/// only when a `state` block is enabled.
#[async_trait]
pub trait StateManagerExt {
    /// Opens the store if needed and reads the stored state; the source resumes from it.
    async fn load_state(&mut self) -> Result<ConnectorState>;
    /// The current state (what the next save writes).
    async fn get_state(&mut self) -> Result<ConnectorState>;
    /// The current state as the documented JSON document.
    async fn export_state(&mut self) -> Result<Value>;
    /// Replaces the stored state with `document` (validated); the source resumes from it.
    async fn import_state(&mut self, document: Value) -> Result<()>;
    /// Starts over: a fresh state is stored (metadata kept); the next poll reads from the start.
    async fn reset_state(&mut self) -> Result<()>;
    /// The manager, when state is enabled and its store open.
    fn get_state_manager(&self) -> Option<&StateManager>;
}

#[async_trait]
impl StateManagerExt for ElasticsearchSource {
    async fn load_state(&mut self) -> Result<ConnectorState> {
        let manager = self.manager().await?;
        let mut state = manager.load().await?;
        manager.set_metadata(self.metadata()).await;
        state.metadata = self.metadata();
        self.adopt(&state).await?;
        Ok(state)
    }

    async fn get_state(&mut self) -> Result<ConnectorState> {
        Ok(self.manager().await?.get().await)
    }

    async fn export_state(&mut self) -> Result<Value> {
        Ok(self.manager().await?.export_state().await?)
    }

    async fn import_state(&mut self, document: Value) -> Result<()> {
        let manager = self.manager().await?;
        manager.import_state(document).await?;
        let state = manager.get().await;
        self.adopt(&state).await
    }

    async fn reset_state(&mut self) -> Result<()> {
        let manager = self.manager().await?;
        manager.reset_state().await?;
        let state = manager.get().await;
        self.adopt(&state).await
    }

    fn get_state_manager(&self) -> Option<&StateManager> {
        self.state.as_ref().filter(|_| self.persistent)
    }
}
