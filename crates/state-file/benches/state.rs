//! `FileStore` save and load of the 2 KiB bench state beside their floors, the
//! bare file operations a crash-safe save and a load cannot do without,
//! measured in the same run on the same directory.
//!
//! `cargo bench -p state-file --bench state`; the directory is a fresh temp
//! directory under `$BENCH_DIR` (default: the system temp directory).
#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use state_core::bench::{Comparison, Sample, bench_state, measure};
use state_core::{ConnectorState, Precondition, StateId, StateStore};
use state_file::FileStore;

/// About 3 s per measurement in all, in [`ROUNDS`] rounds.
const ROUND_BUDGET: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 2;
const WARMUP: u64 = 20;
const MIN_OPS: u64 = 100;
const PART_BUDGET: Duration = Duration::from_secs(1);

fn main() {
    let parent = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&parent).expect("bench parent directory");
    let dir = tempfile::tempdir_in(&parent).expect("bench directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let rows = runtime.block_on(run(dir.path()));
    for row in rows {
        println!("{}", row.row());
        println!(
            "# file {}: {:.0} ops/s vs floor {:.0} ops/s = {:.2}x the floor's time ({})",
            row.op,
            row.store.ops_per_sec,
            row.floor.ops_per_sec,
            row.ratio(),
            row.floor_desc
        );
    }
}

async fn run(dir: &Path) -> Vec<Comparison> {
    let store = FileStore::new(dir.join("store")).expect("store");
    let state = bench_state("bench");
    let id = StateId::new("bench").expect("id");
    let bytes = state.to_pretty_json();
    let revision = store
        .save(&state, &Precondition::Any)
        .await
        .expect("first save");
    let revision = Rc::new(RefCell::new(revision));
    let path = store.path_of(&id);
    let floor_dir = dir.join("floor");
    std::fs::create_dir_all(&floor_dir).expect("floor dir");
    let floor_dir_handle = File::open(&floor_dir).expect("open floor dir");
    let floor_target = floor_dir.join("bench.json");

    // fsync latency on a shared machine drifts over seconds: measure store and
    // floor in alternating rounds and keep each one's best round.
    let (mut save, mut save_floor, mut load, mut load_floor) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        // Each save chains on the revision the previous one returned.
        save.push(
            measure(
                |_| {
                    let (store, state, revision) = (&store, &state, revision.clone());
                    async move {
                        let expect = Precondition::Revision(revision.borrow().clone());
                        let next = store.save(state, &expect).await.expect("save");
                        *revision.borrow_mut() = next;
                    }
                },
                WARMUP,
                MIN_OPS,
                ROUND_BUDGET,
            )
            .await,
        );
        save_floor.push(
            measure(
                |i| {
                    let (dir, handle, target, bytes) =
                        (&floor_dir, &floor_dir_handle, &floor_target, &bytes);
                    async move { bare_atomic_write(dir, handle, target, bytes, i) }
                },
                WARMUP,
                MIN_OPS,
                ROUND_BUDGET,
            )
            .await,
        );
        // The store's file, and a bare read of that same file.
        load.push(
            measure(
                |_| {
                    let (store, id) = (&store, &id);
                    async move {
                        std::hint::black_box(store.load(id).await.expect("load"));
                    }
                },
                WARMUP,
                MIN_OPS,
                ROUND_BUDGET,
            )
            .await,
        );
        load_floor.push(
            measure(
                |_| {
                    let path = &path;
                    async move {
                        std::hint::black_box(std::fs::read(path).expect("read"));
                    }
                },
                WARMUP,
                MIN_OPS,
                ROUND_BUDGET,
            )
            .await,
        );
    }

    // Where a load's time goes beyond the bare read: informational only.
    let decode = measure(
        |_| {
            let bytes = &bytes;
            async move {
                std::hint::black_box(
                    ConnectorState::from_slice(bytes, "bench", "bench").expect("decode"),
                );
            }
        },
        WARMUP,
        MIN_OPS,
        PART_BUDGET,
    )
    .await;
    let in_place_read = measure(
        |_| {
            let path = &path;
            async move {
                let read = tokio::task::block_in_place(|| std::fs::read(path));
                std::hint::black_box(read.expect("read"));
            }
        },
        WARMUP,
        MIN_OPS,
        PART_BUDGET,
    )
    .await;
    println!(
        "# load parts: ConnectorState::from_slice alone p50 {:?}, block_in_place(std::fs::read) p50 {:?}",
        decode.p50, in_place_read.p50
    );

    vec![
        comparison(
            "save",
            best(save),
            best(save_floor),
            "write+fsync temp, rename, fsync dir (2 KiB)",
        ),
        comparison(
            "load",
            best(load),
            best(load_floor),
            "std::fs::read of the state file (2 KiB)",
        ),
    ]
}

fn best(rounds: Vec<Sample>) -> Sample {
    rounds
        .into_iter()
        .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec))
        .expect("at least one round")
}

/// What any crash-safe replace of a file must do: write a temp file, fsync it,
/// rename it over the target, fsync the directory.
fn bare_atomic_write(dir: &Path, dir_handle: &File, target: &Path, bytes: &[u8], i: u64) {
    let temp = dir.join(format!(".floor-{i}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .expect("create temp");
    file.write_all(bytes).expect("write");
    file.sync_all().expect("fsync");
    std::fs::rename(&temp, target).expect("rename");
    dir_handle.sync_all().expect("fsync dir");
}

fn comparison(op: &str, store: Sample, floor: Sample, floor_desc: &str) -> Comparison {
    Comparison {
        backend: "file".into(),
        op: op.into(),
        store,
        floor,
        floor_desc: floor_desc.into(),
    }
}
