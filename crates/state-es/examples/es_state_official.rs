//! An `EsStore` over the official `elasticsearch` client: saves a state with
//! compare-and-set, loads it back and lists the index.
//!
//! `ES_URL=http://127.0.0.1:9200 cargo run -p state-es --example es_state_official`
//! (`ES_URL` defaults to `http://localhost:9200`).
#![allow(clippy::print_stdout)]

use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport;
use state_core::{ConnectorState, Precondition, StateError, StateId, StateStore};
use state_es::EsStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "http://localhost:9200".to_owned());
    // The client a Rust user of Elasticsearch already holds; its credentials,
    // certificates and node pool are the store's.
    let client = Elasticsearch::new(Transport::single_node(&url)?);
    let store = EsStore::from_elasticsearch(client)
        .with_index("connector_states_official_example")
        .build()
        .await?;
    println!("using {store:?}");

    let id = StateId::new("official_client_example")?;
    let (mut state, expect) = match store.load(&id).await {
        Ok(stored) => (stored.state, Precondition::Revision(stored.revision)),
        Err(StateError::NotFound { .. }) => {
            (ConnectorState::new(id.as_str()), Precondition::Absent)
        }
        Err(e) => return Err(e.into()),
    };
    state.data.poll_count += 1;
    state.last_updated = chrono::Utc::now();
    let revision = store.save(&state, &expect).await?;
    println!(
        "saved poll #{} at revision {revision}",
        state.data.poll_count
    );

    // A save naming a stale revision is refused by the cluster.
    if let Precondition::Revision(old) = expect {
        match store.save(&state, &Precondition::Revision(old)).await {
            Err(StateError::Conflict { .. }) => {
                println!("a save at the stale revision was refused")
            }
            other => return Err(format!("expected a conflict, got {other:?}").into()),
        }
    }
    for entry in store.list().await? {
        println!(
            "{}\t{}\t{} bytes",
            entry.id, entry.last_updated, entry.size_bytes
        );
    }
    Ok(())
}
