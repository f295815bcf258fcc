//! `rediss://`: a TLS redis-server of the test's own with a throwaway CA.
#![cfg(feature = "tls")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use state_core::conformance::sample_state;
use state_core::{Precondition, StateError, StateId, StateStore};
use state_redis::RedisStore;

use common::{OwnRedis, plain_probe, redis_server_bin};

/// A CA and a server certificate for 127.0.0.1/localhost, as PEM files in `dir`.
fn write_certs(dir: &std::path::Path) -> (String, Vec<String>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "state-redis test CA");
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .unwrap_or_else(|e| panic!("{e}"));
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .unwrap_or_else(|e| panic!("{e}"));

    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap_or_else(|e| panic!("{e}"));
        path.display().to_string()
    };
    let ca = ca_cert.pem();
    let args = vec![
        "--tls-cert-file".to_owned(),
        write("server.pem", &server_cert.pem()),
        "--tls-key-file".to_owned(),
        write("server.key", &server_key.serialize_pem()),
        "--tls-ca-cert-file".to_owned(),
        write("ca.pem", &ca),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
        "--requirepass".to_owned(),
        "tls-Secret".to_owned(),
    ];
    (ca, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_saves_and_loads() {
    let Some(bin) = redis_server_bin() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ca, args) = write_certs(certs.path());
    let probe_ca = ca.clone();
    let server = OwnRedis::start(&bin, "--tls-port", &args, move |port| {
        redis::Client::build_with_tls(
            format!("rediss://:tls-Secret@127.0.0.1:{port}"),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(probe_ca.clone().into_bytes()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    })
    .await;
    let url = format!("rediss://:tls-Secret@127.0.0.1:{}", server.port);

    let store = RedisStore::builder(&url)
        .with_key_prefix("tls:")
        .with_root_ca_pem(ca.as_bytes())
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}"));
    let state = sample_state("over-tls");
    let revision = store
        .save(&state, &Precondition::Absent)
        .await
        .unwrap_or_else(|e| panic!("save: {e}"));
    let loaded = store
        .load(&StateId::new("over-tls").unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!((loaded.state, loaded.revision), (state, revision));

    // Without trusting the CA the handshake fails: an error, never a plain-text fallback.
    match RedisStore::builder(&url)
        .with_reconnect_retries(0)
        .connect()
        .await
    {
        Err(e) => assert!(!e.to_string().contains("tls-Secret"), "{e}"),
        Ok(store) => panic!("an untrusted certificate was accepted: {store:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_against_a_plain_server_is_unavailable() {
    let Some(bin) = redis_server_bin() else {
        return;
    };
    let server = OwnRedis::start(&bin, "--port", &[], plain_probe(None)).await;
    let url = format!("rediss://:pw-123@127.0.0.1:{}", server.port);
    match RedisStore::builder(&url)
        .with_reconnect_retries(0)
        .with_connection_timeout(std::time::Duration::from_millis(500))
        .connect()
        .await
    {
        Err(e @ StateError::Unavailable { .. }) => {
            assert!(e.to_string().contains("rediss://:***@127.0.0.1"), "{e}");
            assert!(!e.to_string().contains("pw-123"), "{e}");
        }
        other => panic!("rediss:// to a plain-text server gave {other:?}"),
    }
}
