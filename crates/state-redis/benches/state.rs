//! `REDIS_URL=redis://127.0.0.1:6379 cargo bench -p state-redis --bench state`:
//! save and load of the 2 KiB bench state through `RedisStore`, beside the
//! floor measured in the same run on the same `ConnectionManager`: a bare
//! `SET` and `GET` of the same bytes.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use std::cell::RefCell;
use std::time::Duration;

use state_core::bench::{Comparison, bench_state, measure, paired};
use state_core::{Precondition, StateId, StateStore};
use state_redis::RedisStore;

/// Each measurement gets ~3 s: three rounds of 1 s, alternating store and
/// floor so both see the same background load; the best round of each counts.
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(1);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(url) = std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!(
            "REDIS_URL is not set: run `REDIS_URL=redis://127.0.0.1:6379 cargo bench -p state-redis --bench state`"
        );
        std::process::exit(2);
    };
    let prefix = format!("state-redis-bench:{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url, prefix.clone())
        .await
        .unwrap_or_else(|e| panic!("REDIS_URL is set but unusable: {e}"));
    let id = StateId::new("bench").expect("id");
    let state = bench_state("bench");
    let bytes = state.to_json();

    // The floor: the same connection, the same bytes, no script, no decoding.
    let con = store.connection();
    let floor_key = format!("{prefix}floor");

    // Save, each chained on the revision the previous one returned.
    let first = store
        .save(&state, &Precondition::Absent)
        .await
        .expect("seed");
    let revision = RefCell::new(first);
    let (save, floor_save) = paired(
        |_| {
            let (store, state, revision) = (&store, &state, &revision);
            async move {
                let expect = Precondition::Revision(revision.borrow().clone());
                let next = store.save(state, &expect).await.expect("save");
                *revision.borrow_mut() = next;
            }
        },
        |_| {
            let (mut con, key, bytes) = (con.clone(), &floor_key, &bytes);
            async move {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(bytes.as_slice())
                    .query_async(&mut con)
                    .await
                    .expect("SET");
            }
        },
        100,
        ROUNDS,
        ROUND,
    )
    .await;
    let (load, floor_load) = paired(
        |_| async {
            store.load(&id).await.expect("load");
        },
        |_| {
            let (mut con, key) = (con.clone(), &floor_key);
            async move {
                let got: Vec<u8> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut con)
                    .await
                    .expect("GET");
                std::hint::black_box(got);
            }
        },
        100,
        ROUNDS,
        ROUND,
    )
    .await;
    assert!(store.load(&id).await.expect("load").revision == *revision.borrow());

    let mut con = store.connection();
    let _: () = redis::cmd("DEL")
        .arg(&floor_key)
        .arg(store.key(&id))
        .query_async(&mut con)
        .await
        .expect("cleanup");

    // Not a floor: what decoding the document alone costs, part of every load.
    let decode = measure(
        |_| async {
            std::hint::black_box(
                state_core::ConnectorState::from_slice(&bytes, "bench", "bench").expect("decode"),
            );
        },
        100,
        100,
        Duration::from_secs(1),
    )
    .await;
    println!(
        "# decoding the {} B document alone: p50 {} us",
        bytes.len(),
        decode.p50.as_micros()
    );

    let rows = [
        Comparison {
            backend: "redis".into(),
            op: "save".into(),
            store: save,
            floor: floor_save,
            floor_desc: format!("redis SET {} B", bytes.len()),
        },
        Comparison {
            backend: "redis".into(),
            op: "load".into(),
            store: load,
            floor: floor_load,
            floor_desc: format!("redis GET {} B", bytes.len()),
        },
    ];
    for row in &rows {
        println!("{}", row.row());
        println!(
            "# redis {}: {:.2}x the floor's time per op",
            row.op,
            row.ratio()
        );
    }
}
