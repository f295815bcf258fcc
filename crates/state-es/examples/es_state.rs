//! Saves, updates, lists and deletes a state in an Elasticsearch/OpenSearch index.
//!
//! `ES_URL=http://127.0.0.1:9200 cargo run -p state-es --example es_state`
#![allow(clippy::print_stdout, clippy::print_stderr)]

use state_core::{ConnectorState, Precondition, StateId, StateStore};
use state_es::EsStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(url) = std::env::var("ES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        eprintln!("ES_URL is not set: give the cluster URL, e.g. ES_URL=http://127.0.0.1:9200");
        return Ok(());
    };
    let store = EsStore::connect(url, "connector_states_example").await?;
    println!("using {store:?}");

    let id = StateId::new("example_connector")?;
    // Start from what is stored, or from scratch.
    let (mut state, expect) = match store.load(&id).await {
        Ok(stored) => (stored.state, Precondition::Revision(stored.revision)),
        Err(state_core::StateError::NotFound { .. }) => {
            (ConnectorState::new(id.as_str()), Precondition::Absent)
        }
        Err(e) => return Err(e.into()),
    };
    state.data.poll_count += 1;
    state.data.total_documents_fetched += 100;
    state.last_updated = chrono::Utc::now();
    let revision = store.save(&state, &expect).await?;
    println!(
        "saved poll #{} at revision {revision}",
        state.data.poll_count
    );

    for entry in store.list().await? {
        println!(
            "{}\t{}\t{} bytes",
            entry.id, entry.last_updated, entry.size_bytes
        );
    }
    Ok(())
}
