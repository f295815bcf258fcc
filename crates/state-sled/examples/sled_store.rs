//! Saves, updates, lists and reloads a state in a sled database under a temporary directory.
//!
//! `cargo run -p state-sled --example sled_store [DIR]`
#![allow(clippy::print_stdout)]

use state_core::{ConnectorState, Precondition, StateId, StateStore};
use state_sled::SledStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("connector_states.db"));
    let id = StateId::new("example_connector")?;

    {
        let store = SledStore::open(&path)?;
        let mut state = ConnectorState::new(id.as_str());
        let revision = store.save(&state, &Precondition::Any).await?;
        println!("saved {id} at revision {revision} in {}", path.display());

        state.data.total_documents_fetched += 500;
        state.data.last_document_id = Some("doc_500".into());
        let revision = store
            .save(&state, &Precondition::Revision(revision))
            .await?;
        println!("updated {id}, now at revision {revision}");

        // A second open of the same directory is refused while this store is open.
        if let Err(e) = SledStore::open(&path) {
            println!("second open refused as expected: {e}");
        }
    }

    // Dropping the store released the lock: reopen and read back.
    let store = SledStore::open(&path)?;
    let stored = store.load(&id).await?;
    println!(
        "reloaded {id}: {} documents fetched, revision {}, {} bytes",
        stored.state.data.total_documents_fetched, stored.revision, stored.size_bytes
    );
    for entry in store.list().await? {
        println!(
            "listed {} (last updated {}, {} bytes)",
            entry.id, entry.last_updated, entry.size_bytes
        );
    }
    Ok(())
}
