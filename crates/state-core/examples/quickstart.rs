//! Keep a connector's progress in memory, then export it as the documented JSON.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use state_core::{InMemoryStore, ManagerOptions, StateId, StateManager};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(InMemoryStore::new());
    let options = ManagerOptions {
        auto_save_interval: Some(Duration::from_secs(5)),
        tracked_fields: vec!["total_documents_fetched".into()],
    };
    let manager = StateManager::new(store, StateId::new("quickstart")?, options)?;
    manager.load().await?;
    manager.start_auto_save();
    for batch in 0..3u64 {
        manager
            .update(|s| {
                s.data.poll_count += 1;
                s.data.total_documents_fetched += 100;
                s.data.last_document_id = Some(format!("doc_{}", batch * 100 + 99));
            })
            .await;
    }
    manager.close().await?; // saves what changed
    println!(
        "{}",
        serde_json::to_string_pretty(&manager.export_state().await?)?
    );
    Ok(())
}
