//! Saves a state into a directory (the first argument, or a fresh temp
//! directory) and prints the file it wrote.
//!
//! `cargo run -p state-file --example file_store [directory]`
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use state_core::{ManagerOptions, StateId, StateManager, StateStoreExt};
use state_file::FileStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let base_path = match std::env::args_os().nth(1) {
        Some(dir) => dir.into(),
        None => temp.path().join("connector_states"),
    };
    let store = Arc::new(FileStore::new(&base_path)?);
    let id = StateId::new("quickstart_connector")?;
    let manager = StateManager::new(store.clone(), id.clone(), ManagerOptions::default())?;

    let state = manager.load().await?;
    println!(
        "loaded `{id}`: {} documents fetched so far",
        state.data.total_documents_fetched
    );
    manager
        .update(|s| {
            s.data.total_documents_fetched += 100;
            s.data.poll_count += 1;
            s.data.last_document_id = Some("doc_12345".into());
        })
        .await;
    let revision = manager.save().await?;
    manager.close().await?;

    let path = store.path_of(&id);
    println!("saved revision {revision} to {}:", path.display());
    println!("{}", std::fs::read_to_string(&path)?);
    println!("stats: {:?}", store.stats().await?);
    Ok(())
}
