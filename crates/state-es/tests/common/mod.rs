//! Shared by the integration tests: unique indices deleted on drop, raw
//! requests beside the store, and a scripted fake server for error paths.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::sync::{Arc, Mutex};

use rand::Rng;
use state_core::conformance::{DynStore, Guarded};
use state_es::EsStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// `ES_URL`, or `None` (with a line on stderr) when unset.
pub fn es_url() -> Option<String> {
    state_core::conformance::service_endpoint("ES_URL")
}

/// A fresh lowercase index name no other test uses.
pub fn unique_index(label: &str) -> String {
    format!("state-es-test-{label}-{:016x}", rand::rng().random::<u64>())
}

/// A plain client for raw requests, with `ES_URL`'s credentials as basic auth.
#[derive(Debug, Clone)]
pub struct Raw {
    pub client: reqwest::Client,
    pub base: String,
    user: Option<(String, String)>,
}

impl Raw {
    pub fn new(url: &str) -> Raw {
        let mut parsed = reqwest::Url::parse(url).expect("ES_URL parses");
        let user = (!parsed.username().is_empty()).then(|| {
            (
                parsed.username().to_owned(),
                parsed.password().unwrap_or("").to_owned(),
            )
        });
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        Raw {
            client: reqwest::Client::new(),
            base: parsed.as_str().trim_end_matches('/').to_owned(),
            user,
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}/{path}", self.base));
        match &self.user {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    /// Sends and returns status and JSON body; panics when the server is down.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = self.request(method, path);
        if let Some(body) = body {
            r = r
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("ES_URL is set but the server does not answer: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Deletes its index when dropped (from a thread of its own, so it works
/// inside or outside a runtime).
#[derive(Debug)]
pub struct IndexGuard {
    pub raw: Raw,
    pub index: String,
}

impl Drop for IndexGuard {
    fn drop(&mut self) {
        // A new client: the test's pooled connections belong to the test's
        // runtime, which is blocked in `join` below.
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("client");
        let raw = Raw {
            client,
            ..self.raw.clone()
        };
        let index = self.index.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                raw.request(reqwest::Method::DELETE, &index)
                    .send()
                    .await
                    .map(|r| r.status())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not delete test index {}: {e}", self.index);
        }
    }
}

/// An [`EsStore`] on its own index, which goes away with the store.
pub type TestStore = Guarded<EsStore, IndexGuard>;

pub async fn test_store(url: &str, label: &str) -> TestStore {
    let index = unique_index(label);
    let guard = IndexGuard {
        raw: Raw::new(url),
        index: index.clone(),
    };
    let store = EsStore::connect(url, index)
        .await
        .unwrap_or_else(|e| panic!("ES_URL is set but the store cannot connect: {e}"));
    Guarded::new(store, guard)
}

/// A store for the shared suite on `ES_URL`; `None` (the case does not run)
/// when it is unset outside `cargo xtask test`.
pub async fn conformance_store() -> Option<DynStore> {
    let url = es_url()?;
    Some(Arc::new(test_store(&url, "conf").await))
}

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
}

/// A one-request-per-connection HTTP server answering every request with
/// `reply(request)` = (status, body). Returns its base URL and what it saw.
pub async fn fake_server(
    reply: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut seen = Seen {
                    head,
                    body: Vec::new(),
                };
                let len: usize = seen
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.body = buf[head_end..head_end + len].to_vec();
                let (status, body) = reply(&seen);
                log.lock().unwrap().push(seen);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// A local port with nothing listening on it.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
