//! Saves, updates, lists and reloads a state in the Redis at `REDIS_URL`,
//! under a throwaway key prefix that it deletes at the end.
//!
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run -p state-redis --example redis_store`
#![allow(clippy::print_stdout, clippy::print_stderr)]

use state_core::{ConnectorState, Precondition, StateId, StateStore, redact_url};
use state_redis::RedisStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(url) = std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!(
            "REDIS_URL is not set; start Redis and run e.g.\n  REDIS_URL=redis://127.0.0.1:6379 cargo run -p state-redis --example redis_store"
        );
        std::process::exit(2);
    };
    let prefix = format!("state-redis-example:{}:", std::process::id());
    let store = RedisStore::connect(&url, prefix.as_str()).await?;
    println!(
        "connected to {} with key prefix {prefix:?}",
        redact_url(&url)
    );

    let id = StateId::new("example_connector")?;
    let mut state = ConnectorState::new(id.as_str());
    let revision = store.save(&state, &Precondition::Absent).await?;
    println!(
        "saved {id} under key {} at revision {revision}",
        store.key(&id)
    );

    state.data.total_documents_fetched += 500;
    let newer = store
        .save(&state, &Precondition::Revision(revision.clone()))
        .await?;
    println!("updated {id}, now at revision {newer}");

    // A writer still holding the old revision is refused.
    match store.save(&state, &Precondition::Revision(revision)).await {
        Err(e) => println!("stale writer refused as expected: {e}"),
        Ok(_) => println!("unexpected: a stale revision was accepted"),
    }

    let stored = store.load(&id).await?;
    println!(
        "loaded {id}: {} documents fetched, {} bytes",
        stored.state.data.total_documents_fetched, stored.size_bytes
    );
    for entry in store.list().await? {
        println!(
            "listed {} (last updated {}, {} bytes)",
            entry.id, entry.last_updated, entry.size_bytes
        );
    }
    store.delete(&id).await?;
    println!("deleted {id}");
    Ok(())
}
