//! `cargo bench -p state-sled --bench state`: save and load of the 2 KiB bench
//! state through `SledStore`, beside the floor measured in the same run on the
//! same database: a raw sled `insert` + `flush` of the same bytes, and a raw `get`.
#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::cell::RefCell;
use std::time::Duration;

use state_core::bench::{Comparison, bench_state, measure, paired};
use state_core::{Precondition, StateId, StateStore};
use state_sled::SledStore;

/// Each measurement gets ~3 s: three rounds of 1 s, alternating store and
/// floor so both see the same background load; the best round of each counts.
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(1);

/// The store's database cannot be opened a second time (sled's lock), so the
/// floor uses a plain sled database in a sibling directory on the same filesystem.
fn floor_db(path: &std::path::Path) -> (sled::Db, sled::Tree) {
    let db = sled::open(path.with_extension("floor")).expect("open floor db");
    let tree = db.open_tree("floor").expect("tree");
    (db, tree)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let store = SledStore::open(&path).expect("open sled");
    let id = StateId::new("bench").expect("id");
    let state = bench_state("bench");
    let bytes = state.to_json();

    let floor_tree = floor_db(&path);
    // Two buffers of the same size, alternated: sled skips a write of the value already stored.
    let mut other = bytes.clone();
    other[bytes.len() - 3] ^= 1;
    let buffers = [bytes.as_slice(), other.as_slice()];

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
        |i| {
            let ((db, tree), value) = (&floor_tree, buffers[(i % 2) as usize]);
            async move {
                tree.insert("bench", value).expect("insert");
                db.flush().expect("flush");
            }
        },
        20,
        ROUNDS,
        ROUND,
    )
    .await;
    let (load, floor_load) = paired(
        |_| async {
            store.load(&id).await.expect("load");
        },
        |_| async {
            std::hint::black_box(floor_tree.1.get("bench").expect("get"));
        },
        100,
        ROUNDS,
        ROUND,
    )
    .await;
    assert!(store.load(&id).await.expect("load").revision == *revision.borrow());

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
            backend: "sled".into(),
            op: "save".into(),
            store: save,
            floor: floor_save,
            floor_desc: format!("sled insert+flush {} B", bytes.len()),
        },
        Comparison {
            backend: "sled".into(),
            op: "load".into(),
            store: load,
            floor: floor_load,
            floor_desc: format!("sled get {} B", bytes.len()),
        },
    ];
    for row in &rows {
        println!("{}", row.row());
        println!(
            "# sled {}: {:.2}x the floor's time per op",
            row.op,
            row.ratio()
        );
    }
}
