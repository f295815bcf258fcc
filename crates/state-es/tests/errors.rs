//! Error classification, authentication headers and redaction, against a
//! scripted local HTTP server or a closed port: no cluster needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use state_core::conformance::sample_state;
use state_core::{Precondition, StateError, StateId, StateStore};
use state_es::EsStore;

use common::{fake_server, free_port};

const SECRET: &str = "t0p-s3cret";

fn id(s: &str) -> StateId {
    StateId::new(s).unwrap()
}

fn with_password(base: &str) -> String {
    base.replacen("http://", &format!("http://elastic:{SECRET}@"), 1)
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the password leaked: {text}");
}

#[tokio::test]
async fn connection_refused_is_unavailable_and_retryable() {
    let url = format!("http://elastic:{SECRET}@127.0.0.1:{}", free_port());
    let err = EsStore::connect(&url, "states_idx").await.unwrap_err();
    assert!(matches!(err, StateError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1") && msg.contains("states_idx") && msg.contains("elastic:***@"),
        "{msg}"
    );
    assert_no_secret(&msg);
    assert_no_secret(&format!("{err:?}"));

    // The same for every operation of a store that skipped index creation.
    let store = EsStore::builder(&url)
        .with_index("states_idx")
        .with_create_index(false)
        .build()
        .await
        .unwrap();
    assert_no_secret(&format!("{store:?}"));
    let errors = [
        store.load(&id("s")).await.unwrap_err(),
        store
            .save(&sample_state("s"), &Precondition::Any)
            .await
            .unwrap_err(),
        store.delete(&id("s")).await.unwrap_err(),
        store.list().await.unwrap_err(),
    ];
    for e in errors {
        assert!(e.is_retryable(), "{e:?}");
        assert_no_secret(&e.to_string());
        assert_no_secret(&format!("{e:?}"));
    }
}

#[tokio::test]
async fn overload_and_server_errors_are_retryable_other_4xx_are_not() {
    let cases = [
        (
            429,
            r#"{"error":{"type":"es_rejected_execution_exception","reason":"queue full"},"status":429}"#,
            true,
        ),
        (
            503,
            r#"{"error":{"type":"cluster_block_exception","reason":"blocked"},"status":503}"#,
            true,
        ),
        (502, "<html>bad gateway</html>", true),
        (
            400,
            r#"{"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [state]"},"status":400}"#,
            false,
        ),
        (
            401,
            r#"{"error":{"type":"security_exception","reason":"unable to authenticate user [elastic]"},"status":401}"#,
            false,
        ),
        (
            403,
            r#"{"error":{"type":"security_exception","reason":"action [indices:data/write] is unauthorized"},"status":403}"#,
            false,
        ),
        // A 404 that is not Elasticsearch saying "no such document": not a missing state.
        (404, "<html>no such path</html>", false),
    ];
    for (status, body, retryable) in cases {
        let (base, _) = fake_server(move |_| (status, body.to_owned())).await;
        let url = with_password(&base);
        let store = EsStore::builder(&url)
            .with_index("idx")
            .with_create_index(false)
            .build()
            .await
            .unwrap();
        for err in [
            store.load(&id("s")).await.unwrap_err(),
            store
                .save(&sample_state("s"), &Precondition::Any)
                .await
                .unwrap_err(),
        ] {
            let msg = err.to_string();
            assert_eq!(err.is_retryable(), retryable, "HTTP {status}: {err:?}");
            if retryable {
                assert!(matches!(err, StateError::Unavailable { .. }), "{err:?}");
            } else {
                assert!(
                    matches!(err, StateError::Backend { .. }),
                    "HTTP {status}: {err:?}"
                );
            }
            assert!(
                msg.contains(&status.to_string()) && msg.contains("`idx`"),
                "{msg}"
            );
            if body.starts_with('{') {
                let kind =
                    serde_json::from_str::<serde_json::Value>(body).unwrap()["error"]["type"]
                        .clone();
                assert!(msg.contains(kind.as_str().unwrap()), "{msg}");
            }
            assert_no_secret(&msg);
        }
        // Connecting (creating the index) reports the same way.
        let err = EsStore::connect(&url, "idx").await.unwrap_err();
        assert_eq!(
            err.is_retryable(),
            retryable,
            "connect, HTTP {status}: {err:?}"
        );
        assert_no_secret(&err.to_string());
    }
}

#[tokio::test]
async fn a_reply_that_is_not_elasticsearch_is_a_backend_error() {
    let (base, _) = fake_server(|_| (200, "<html>welcome to nginx</html>".into())).await;
    let store = EsStore::builder(&base)
        .with_create_index(false)
        .build()
        .await
        .unwrap();
    for err in [
        store.load(&id("s")).await.unwrap_err(),
        store
            .save(&sample_state("s"), &Precondition::Any)
            .await
            .unwrap_err(),
        store.list().await.unwrap_err(),
    ] {
        assert!(matches!(err, StateError::Backend { .. }), "{err:?}");
        assert!(err.to_string().contains("nginx"), "{err}");
    }
}

#[tokio::test]
async fn basic_auth_api_key_and_plain_json_are_sent() {
    let (base, seen) = fake_server(|_| {
        (
            200,
            r#"{"_seq_no":3,"_primary_term":1,"result":"created"}"#.into(),
        )
    })
    .await;
    let url = base.replacen("http://", "http://us%40er:p%3Ass@", 1);
    let store = EsStore::builder(&url)
        .with_create_index(false)
        .build()
        .await
        .unwrap();
    let rev = store
        .save(&sample_state("a b+c"), &Precondition::Absent)
        .await
        .unwrap();
    assert_eq!(rev.as_str(), "3:1");
    let store = EsStore::builder(&base)
        .with_api_key("a2V5OnNlY3JldA==")
        .with_create_index(false)
        .build()
        .await
        .unwrap();
    store
        .save(&sample_state("s"), &Precondition::Revision(rev))
        .await
        .unwrap();
    assert!(!format!("{store:?}").contains("a2V5OnNlY3JldA=="));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    // base64("us@er:p:ss")
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("Basic dXNAZXI6cDpzcw==")
    );
    assert_eq!(
        seen[0].header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(
        seen[0]
            .request_line()
            .starts_with("PUT /connector_states/_create/a%20b%2Bc "),
        "{}",
        seen[0].head
    );
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["state"], sample_state("a b+c").to_value());
    assert_eq!(
        seen[1].header("authorization").as_deref(),
        Some("ApiKey a2V5OnNlY3JldA==")
    );
    assert!(
        seen[1]
            .request_line()
            .starts_with("PUT /connector_states/_doc/s?if_seq_no=3&if_primary_term=1 "),
        "{}",
        seen[1].head
    );
}

#[tokio::test]
async fn invalid_options_are_refused_before_any_io() {
    let url = format!("http://elastic:{SECRET}@127.0.0.1:{}", free_port());
    for builder in [
        EsStore::builder(&url).with_index("Not-Lowercase"),
        EsStore::builder(&url).with_api_key("both"),
        EsStore::builder(format!("ftp://elastic:{SECRET}@host")),
        EsStore::builder(format!("http://elastic:{SECRET}@host:9200/?pretty")),
    ] {
        assert_no_secret(&format!("{builder:?}"));
        match builder.build().await {
            Err(e @ StateError::InvalidConfig { .. }) => assert_no_secret(&e.to_string()),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
}
