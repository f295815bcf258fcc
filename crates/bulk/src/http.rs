//! The default transport: reqwest over HTTP(S).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::transport::{Transport, TransportError, TransportResponse};

/// The default transport: HTTP(S) to one Elasticsearch or OpenSearch node,
/// keep-alive connections, optional basic or API-key authentication.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    bulk_url: String,
    shown_url: String,
    auth: Option<reqwest::header::HeaderValue>,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("url", &self.shown_url)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport to `url` (`http://host:9200`, credentials in the URL are used
    /// for basic auth and never shown). Requests time out after 60 s.
    pub fn new(url: &str) -> Result<Self, TransportError> {
        Self::with_timeout(url, DEFAULT_HTTP_TIMEOUT)
    }

    /// As [`HttpTransport::new`], with a per-request timeout.
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, TransportError> {
        let url = es_endpoint::HttpUrl::parse(url)
            .map_err(|e| TransportError::not_sent(format!("invalid URL: {e}")))?;
        Self::for_endpoint(&es_endpoint::Endpoint::from_url(url), timeout)
    }

    /// A transport to a resolved cluster: its URL, its credentials (basic or
    /// API key) and its CA file (read here), with a per-request timeout.
    pub fn for_endpoint(
        endpoint: &es_endpoint::Endpoint,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let refused =
            |e: es_endpoint::KeyError| TransportError::not_sent(format!("{}: {}", e.key, e.reason));
        let base = endpoint.url().base().to_owned();
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            // A connection that cannot be opened in time is reported as a connect
            // error (nothing sent, safe to resend), not as a request timeout.
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true);
        let client = endpoint
            .configure_client(builder)
            .map_err(refused)?
            .build()
            .map_err(|e| TransportError::not_sent(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpTransport {
            client,
            bulk_url: format!("{base}/_bulk"),
            shown_url: base,
            auth: endpoint.authorization().map_err(refused)?,
        })
    }

    /// Authenticate with an API key (`Authorization: ApiKey <key>`) instead.
    pub fn with_api_key(mut self, encoded_key: &str) -> Self {
        self.auth = reqwest::header::HeaderValue::from_str(&format!("ApiKey {encoded_key}"))
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        self
    }

    /// The node URL, without credentials.
    pub fn url(&self) -> &str {
        &self.shown_url
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn bulk(&self, body: Bytes) -> Result<TransportResponse, TransportError> {
        let mut req = self
            .client
            .post(&self.bulk_url)
            .header("content-type", "application/x-ndjson")
            .body(body);
        if let Some(auth) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        let resp = req.send().await.map_err(|e| {
            let message = format!("POST {}/_bulk: {}", self.shown_url, describe(&e));
            if never_sent(&e) {
                TransportError::not_sent(message)
            } else {
                TransportError::maybe_applied(message)
            }
        })?;
        let status = resp.status().as_u16();
        // The server answered: it has processed the request, the answer is lost.
        let body = resp.bytes().await.map_err(|e| {
            TransportError::maybe_applied(format!(
                "reading the _bulk answer of {}: {}",
                self.shown_url,
                describe(&e)
            ))
        })?;
        Ok(TransportResponse { status, body })
    }
}

/// The per-request timeout of [`HttpTransport::new`]: 60 s.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Upper bound of the time to open a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the request certainly did not leave: the connection (TCP, TLS) could
/// not be opened, or the request could not be built. Anything else (a timeout,
/// a reset, a connection closed while waiting) may come after the server read it.
fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_builder()
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_not_sent_and_a_lost_answer_maybe_applied() {
        use crate::transport::Delivery;
        // Nothing listens on this port.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"));
        let t = HttpTransport::new(&format!("http://{closed}")).unwrap_or_else(|e| panic!("{e}"));
        let e = t.bulk(Bytes::from_static(b"{}\n")).await.err();
        assert_eq!(e.map(|e| e.delivery()), Some(Delivery::NotSent));

        // A server that reads the request and closes the connection unanswered.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                // Read until the end of the (small) request, then hang up.
                let mut seen = Vec::new();
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.ends_with(b"{}\n") {
                        break;
                    }
                }
            }
        });
        let t = HttpTransport::new(&format!("http://{addr}")).unwrap_or_else(|e| panic!("{e}"));
        let e = t.bulk(Bytes::from_static(b"{}\n")).await.err();
        assert_eq!(e.map(|e| e.delivery()), Some(Delivery::MaybeApplied));
        server.await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn credentials_never_show() {
        let t = HttpTransport::new("http://elastic:hunter2@127.0.0.1:9200/")
            .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{t:?} {}", t.url());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(t.url(), "http://127.0.0.1:9200");
        assert_eq!(
            t.auth.as_ref().and_then(|v| v.to_str().ok()),
            Some("Basic ZWxhc3RpYzpodW50ZXIy")
        );
        assert!(t.auth.as_ref().is_some_and(|v| v.is_sensitive()));
    }
}
