//! `EsStore` save/load of the 2 KiB bench state beside the floor: a raw
//! `PUT /<index>/_doc/<id>` and `GET` of the same bytes, same client, same run.
//!
//! `ES_URL=http://127.0.0.1:9200 cargo bench -p state-es --bench state`
#![allow(
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic
)]

use std::cell::RefCell;
use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use state_core::bench::{Comparison, Sample, bench_state, measure};
use state_core::{Precondition, StateId, StateStore};
use state_es::EsStore;

/// Each measurement gets ~3 s, in `ROUNDS` slices alternating store and floor,
/// keeping each side's best slice: on a shared machine, noise only ever slows
/// a slice down, and alternating exposes both sides to the same conditions.
const ROUNDS: u32 = 3;
const BUDGET: Duration = Duration::from_secs(1);
const WARMUP: u64 = 100;
const MIN_OPS: u64 = 100;

fn best(a: Option<Sample>, b: Sample) -> Option<Sample> {
    match a {
        Some(a) if a.ops_per_sec >= b.ops_per_sec => Some(a),
        _ => Some(b),
    }
}

fn main() {
    let Some(url) = std::env::var("ES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        eprintln!("ES_URL is not set: nothing to measure (e.g. ES_URL=http://127.0.0.1:9200)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(url));
}

async fn run(url: String) {
    let suffix = format!("{:08x}", rand::rng().random::<u32>());
    let index = format!("state-es-bench-{suffix}");
    let floor_index = format!("state-es-bench-floor-{suffix}");
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let store = EsStore::builder(&url)
        .with_index(&index)
        .with_client(client.clone())
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to ES_URL: {e}"));

    // The floor's requests: same client, same host, credentials from the URL.
    let mut parsed = reqwest::Url::parse(&url).expect("ES_URL parses");
    let auth = (!parsed.username().is_empty()).then(|| {
        (
            parsed.username().to_owned(),
            parsed.password().map(str::to_owned),
        )
    });
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let base = parsed.as_str().trim_end_matches('/').to_owned();
    let raw = |method: Method, path: String| {
        let r = client.request(method, format!("{base}/{path}"));
        match &auth {
            Some((u, p)) => r.basic_auth(u, p.as_deref()),
            None => r,
        }
    };
    // The floor index maps nothing: storing the bytes is all the server does.
    raw(Method::PUT, floor_index.clone())
        .header("content-type", "application/json")
        .body(r#"{"mappings":{"dynamic":false}}"#)
        .send()
        .await
        .expect("create floor index");

    let state = bench_state("bench");
    let id = StateId::new("bench").expect("id");
    let bytes = state.to_json();

    // save: chained revisions, as a connector saves.
    let revision = RefCell::new(
        store
            .save(&state, &Precondition::Any)
            .await
            .expect("first save"),
    );
    let (mut save, mut floor_save, mut load, mut floor_load) = (None, None, None, None);
    for _ in 0..ROUNDS {
        let sample = measure(
            |_| async {
                let expect = Precondition::Revision(revision.borrow().clone());
                let next = store.save(&state, &expect).await.expect("save");
                *revision.borrow_mut() = next;
            },
            WARMUP,
            MIN_OPS,
            BUDGET,
        )
        .await;
        save = best(save, sample);
        let sample = measure(
            |_| {
                let req = raw(Method::PUT, format!("{floor_index}/_doc/bench"))
                    .header("content-type", "application/json")
                    .body(bytes.clone());
                async move {
                    let resp = req.send().await.expect("raw PUT");
                    assert!(resp.status().is_success(), "raw PUT: {}", resp.status());
                    resp.bytes().await.expect("raw PUT body");
                }
            },
            WARMUP,
            MIN_OPS,
            BUDGET,
        )
        .await;
        floor_save = best(floor_save, sample);
    }
    for _ in 0..ROUNDS {
        let sample = measure(
            |_| async {
                store.load(&id).await.expect("load");
            },
            WARMUP,
            MIN_OPS,
            BUDGET,
        )
        .await;
        load = best(load, sample);
        let sample = measure(
            |_| {
                let req = raw(Method::GET, format!("{floor_index}/_doc/bench"));
                async move {
                    let resp = req.send().await.expect("raw GET");
                    assert!(resp.status().is_success(), "raw GET: {}", resp.status());
                    resp.bytes().await.expect("raw GET body");
                }
            },
            WARMUP,
            MIN_OPS,
            BUDGET,
        )
        .await;
        floor_load = best(floor_load, sample);
    }
    let rows = [
        ("save", save, floor_save, "raw PUT /_doc 2 KiB"),
        ("load", load, floor_load, "raw GET /_doc 2 KiB"),
    ]
    .map(|(op, store, floor, desc)| Comparison {
        backend: "elasticsearch".into(),
        op: op.into(),
        store: store.expect("measured"),
        floor: floor.expect("measured"),
        floor_desc: desc.into(),
    });

    for index in [&index, &floor_index] {
        let _ = raw(Method::DELETE, index.clone()).send().await;
    }
    for row in &rows {
        println!("{}", row.row());
        eprintln!(
            "{:<6} store {:>7.0} ops/s (p50 {:?})  floor {:>7.0} ops/s (p50 {:?})  ratio {:.2}x",
            row.op,
            row.store.ops_per_sec,
            row.store.p50,
            row.floor.ops_per_sec,
            row.floor.p50,
            row.ratio()
        );
    }
}
