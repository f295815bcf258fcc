//! Behaviour specific to the Redis backend: reconnecting after a restart,
//! passwords, unreachable servers, glob characters in prefixes, foreign keys.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use state_core::conformance::sample_state;
use state_core::{Precondition, StateError, StateId, StateStore};
use state_redis::RedisStore;

use common::{
    OwnRedis, clean_store, clean_store_with_prefix, free_port, plain_probe, redis_server_bin,
    redis_url,
};

fn id(s: &str) -> StateId {
    StateId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_redis_restart() {
    let Some(bin) = redis_server_bin() else {
        return;
    };
    let mut server = OwnRedis::start(&bin, "--port", &[], plain_probe(None)).await;
    let url = format!("redis://127.0.0.1:{}", server.port);
    let store = RedisStore::connect(&url, "restart:")
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let state = sample_state("survives-restarts");
    store
        .save(&state, &Precondition::Absent)
        .await
        .unwrap_or_else(|e| panic!("save: {e}"));

    server.kill();
    match store.load(&id("survives-restarts")).await {
        Err(e @ StateError::Unavailable { .. }) => {
            assert!(e.to_string().contains(&url), "must name the endpoint: {e}");
            assert!(e.is_retryable());
        }
        other => panic!("a load while Redis is down gave {other:?}"),
    }

    // Same port, empty (no persistence configured): the store must reconnect by itself.
    server.restart().await;
    let mut attempts = Vec::new();
    let revision = loop {
        match store.save(&state, &Precondition::Any).await {
            Ok(revision) => break revision,
            Err(e) if e.is_retryable() && attempts.len() < 10 => attempts.push(e.to_string()),
            Err(e) => {
                panic!("no reconnect after a Redis restart: {e} (earlier attempts: {attempts:?})")
            }
        }
    };
    let loaded = store
        .load(&id("survives-restarts"))
        .await
        .unwrap_or_else(|e| panic!("load after restart: {e}"));
    assert_eq!(loaded.state, state);
    assert_eq!(loaded.revision, revision);
    assert!(
        attempts.len() <= 2,
        "reconnecting took {} failed attempts: {attempts:?}",
        attempts.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_in_the_url_works_and_a_wrong_one_is_refused_without_echoing_it() {
    let Some(bin) = redis_server_bin() else {
        return;
    };
    let args = ["--requirepass".to_owned(), "s3cret-Pw".to_owned()];
    let server = OwnRedis::start(&bin, "--port", &args, plain_probe(Some("s3cret-Pw"))).await;
    let port = server.port;

    let good = RedisStore::connect(&format!("redis://:s3cret-Pw@127.0.0.1:{port}"), "auth:")
        .await
        .unwrap_or_else(|e| panic!("connect with the right password: {e}"));
    assert!(
        !format!("{good:?}").contains("s3cret-Pw"),
        "Debug shows the password: {good:?}"
    );
    let state = sample_state("with-password");
    good.save(&state, &Precondition::Absent)
        .await
        .unwrap_or_else(|e| panic!("save: {e}"));
    assert_eq!(
        good.load(&id("with-password"))
            .await
            .unwrap_or_else(|e| panic!("load: {e}"))
            .state,
        state
    );

    for (url, secret) in [
        (
            format!("redis://:wr0ng-Pass@127.0.0.1:{port}"),
            "wr0ng-Pass",
        ),
        (
            format!("redis://default:wr0ng-Pass@127.0.0.1:{port}"),
            "wr0ng-Pass",
        ),
        (format!("redis://127.0.0.1:{port}"), "s3cret-Pw"),
    ] {
        match RedisStore::connect(&url, "auth:").await {
            Err(e @ StateError::InvalidConfig { .. }) => {
                let text = format!("{e} / {e:?}");
                assert!(text.contains("check the password"), "{text}");
                assert!(
                    !text.contains(secret),
                    "the error shows the password: {text}"
                );
                assert!(!e.is_retryable(), "a wrong password is permanent: {e}");
            }
            other => panic!(
                "connecting to {} gave {other:?}",
                state_core::redact_url(&url)
            ),
        }
    }
}

#[tokio::test]
async fn unreachable_server_is_unavailable_naming_the_redacted_url() {
    // Nothing listens on a port that was free a moment ago.
    let url = format!("redis://:hunter22@127.0.0.1:{}", free_port());
    // `connect` tries once and reports at once: no retry loop to wait out.
    match RedisStore::connect(&url, "p:").await {
        Err(e @ StateError::Unavailable { .. }) => {
            let text = format!("{e} / {e:?}");
            assert!(text.contains(&state_core::redact_url(&url)), "{text}");
            assert!(!text.contains("hunter22"), "{text}");
            assert!(e.is_retryable());
        }
        other => panic!("connecting to a closed port gave {other:?}"),
    }
}

#[tokio::test]
async fn non_redis_urls_are_invalid_config() {
    for url in ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis//x"] {
        match RedisStore::connect(url, "p:").await {
            Err(StateError::InvalidConfig { key, .. }) => {
                assert_eq!(key, "state.storage_config.url")
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_url_server_answers() {
    // With REDIS_URL set and the server down, this fails loudly here.
    let Some(url) = redis_url() else { return };
    if let Err(e) = RedisStore::connect(&url, "ping:").await {
        panic!(
            "REDIS_URL={} is set but unusable: {e}",
            state_core::redact_url(&url)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_characters_in_the_prefix_list_only_that_prefix() {
    let Some(url) = redis_url() else { return };
    let base = common::unique_prefix("glob");
    // Unescaped, `base[ab]*:*` would also match `baseaZZ:...` and `baseb\:...`.
    let globby = clean_store_with_prefix(&url, &format!("{base}[ab]*:")).await;
    let lookalike = clean_store_with_prefix(&url, &format!("{base}aZZ:")).await;
    let backslash = clean_store_with_prefix(&url, &format!("{base}b\\:")).await;
    for (store, ids) in [
        (&globby, ["one", "id*with?[glob]"]),
        (&lookalike, ["two", "x"]),
        (&backslash, ["three", "y"]),
    ] {
        for i in ids {
            store
                .save(&sample_state(i), &Precondition::Absent)
                .await
                .unwrap_or_else(|e| panic!("save {i}: {e}"));
        }
    }
    for (store, want) in [
        (&globby, ["id*with?[glob]", "one"]),
        (&lookalike, ["two", "x"]),
        (&backslash, ["three", "y"]),
    ] {
        let mut ids: Vec<_> = store
            .list()
            .await
            .unwrap_or_else(|e| panic!("list: {e}"))
            .into_iter()
            .map(|e| e.id)
            .collect();
        ids.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(ids, want, "prefix {:?}", store.store.key_prefix());
    }
    assert_eq!(
        globby
            .load(&id("id*with?[glob]"))
            .await
            .unwrap_or_else(|e| panic!("load: {e}"))
            .state
            .id,
        "id*with?[glob]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_not_written_by_the_store_are_refused_naming_the_key() {
    let Some(url) = redis_url() else { return };
    let clean = clean_store(&url, "foreign").await;
    let store = &clean.store;
    let mut con = store.connection();
    let string_key = format!("{}plain", store.key_prefix());
    let hash_key = format!("{}hash", store.key_prefix());
    let bad_doc_key = format!("{}bad-doc", store.key_prefix());
    let _: () = redis::cmd("SET")
        .arg(&string_key)
        .arg("not a state")
        .query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: () = redis::cmd("HSET")
        .arg(&hash_key)
        .arg("f")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: () = redis::cmd("HSET")
        .arg(&bad_doc_key)
        .arg("doc")
        .arg("{\"id\":")
        .arg("rev")
        .arg("1")
        .arg("updated")
        .arg("2024-01-15T10:30:00Z")
        .query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    for (name, key) in [("plain", &string_key), ("hash", &hash_key)] {
        let state = sample_state(name);
        for result in [
            store.save(&state, &Precondition::Any).await.map(drop),
            store.save(&state, &Precondition::Absent).await.map(drop),
        ] {
            match result {
                Err(e @ StateError::Backend { .. }) => {
                    assert!(e.to_string().contains(key.as_str()), "{e}")
                }
                other => panic!("saving over {key} gave {other:?}"),
            }
        }
    }
    match store.load(&id("plain")).await {
        Err(e @ StateError::Backend { .. }) => assert!(e.to_string().contains(&string_key), "{e}"),
        other => panic!("loading {string_key} gave {other:?}"),
    }
    match store.load(&id("bad-doc")).await {
        Err(StateError::Corrupt { location, .. }) => {
            assert!(location.contains(&bad_doc_key), "{location}")
        }
        other => panic!("loading {bad_doc_key} gave {other:?}"),
    }
    // `list` names only real states (bad-doc has a well-formed header) and skips the rest.
    store
        .save(&sample_state("real"), &Precondition::Absent)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ids: Vec<_> = store
        .list()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["bad-doc", "real"]);
}
