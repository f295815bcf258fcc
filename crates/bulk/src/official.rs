//! The transport over the official `elasticsearch` client (feature `elasticsearch`).
//!
//! A user who already holds an [`elasticsearch::Elasticsearch`] (its connection
//! pool, Elastic Cloud id, credentials, certificates) hands it over as it is; the
//! NDJSON body the processor encoded once goes out through the client's raw
//! `send`, untouched.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::processor::BulkProcessorBuilder;
use crate::transport::{Transport, TransportError, TransportResponse};

/// A [`Transport`] over the official client: `POST /_bulk` with the encoded
/// NDJSON body (`application/x-ndjson`) through [`Elasticsearch::send`], to
/// whichever node the client's connection pool picks.
///
/// No answer is sorted as [`HttpTransport`](crate::HttpTransport) sorts it: a
/// connection that could not be opened, or a request that could not be built,
/// was [not sent](crate::Delivery::NotSent); a timeout, a reset or an answer cut
/// off [may have been applied](crate::Delivery::MaybeApplied).
///
/// `Debug` shows no part of the client (its credentials stay inside it).
#[derive(Clone)]
pub struct ElasticsearchTransport {
    client: Elasticsearch,
    timeout: Option<Duration>,
}

impl fmt::Debug for ElasticsearchTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchTransport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ElasticsearchTransport {
    /// Sends through `client`, with the client's own time limit (none, unless its
    /// `TransportBuilder` set one).
    pub fn new(client: Elasticsearch) -> Self {
        ElasticsearchTransport {
            client,
            timeout: None,
        }
    }

    /// A time limit for each `_bulk` call, over the client's own.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The client requests go through.
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }
}

#[async_trait]
impl Transport for ElasticsearchTransport {
    async fn bulk(&self, body: Bytes) -> Result<TransportResponse, TransportError> {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let response = self
            .client
            .send(
                Method::Post,
                "/_bulk",
                headers,
                None::<&()>,
                Some(body),
                self.timeout,
            )
            .await
            .map_err(|e| {
                let message = format!("POST /_bulk: {}", describe(&e));
                if never_sent(&e) {
                    TransportError::not_sent(message)
                } else {
                    TransportError::maybe_applied(message)
                }
            })?;
        let status = response.status_code().as_u16();
        // The server answered: it has processed the request, the answer is lost.
        let body = response.bytes().await.map_err(|e| {
            TransportError::maybe_applied(format!("reading the _bulk answer: {}", describe(&e)))
        })?;
        Ok(TransportResponse { status, body })
    }
}

/// Whether the call certainly did not leave. The client fails before any IO
/// when it cannot build the request (a path that does not join its node URL, a
/// body it cannot write): such errors carry no reqwest error. A reqwest error
/// is "not sent" only when the connection could not be opened or the request
/// not built, as for [`HttpTransport`](crate::HttpTransport).
fn never_sent(e: &elasticsearch::Error) -> bool {
    match reqwest_error(e) {
        Some(http) => http.is_connect() || http.is_builder(),
        None => true,
    }
}

fn reqwest_error(e: &elasticsearch::Error) -> Option<&reqwest::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<reqwest::Error>() {
            return Some(http);
        }
        source = s.source();
    }
    None
}

/// The error and its causes on one line, without the request URL (reqwest puts
/// it in its own message; a node URL may carry credentials).
fn describe(e: &elasticsearch::Error) -> String {
    let Some(http) = reqwest_error(e) else {
        return e.to_string();
    };
    let mut text = if http.is_timeout() {
        "timed out".to_owned()
    } else if http.is_connect() {
        "cannot connect".to_owned()
    } else if http.is_body() || http.is_decode() {
        "the answer was cut off".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(http);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The bulk processor as a service of the official client, as olivere/elastic's
/// `client.BulkProcessor().Name(…).Workers(2).Do(ctx)`:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use bulk::BulkProcessorExt;
/// use elasticsearch::Elasticsearch;
/// use elasticsearch::http::transport::Transport;
///
/// let client = Elasticsearch::new(Transport::single_node("http://localhost:9200")?);
/// let processor = client.bulk_processor().name("logs-writer").workers(2).build()?;
/// # processor.close().await?; Ok(()) }
/// ```
pub trait BulkProcessorExt {
    /// A [`BulkProcessorBuilder`] sending through this client (a clone of it:
    /// one connection pool) with an [`ElasticsearchTransport`].
    fn bulk_processor(&self) -> BulkProcessorBuilder;
}

impl BulkProcessorExt for Elasticsearch {
    fn bulk_processor(&self) -> BulkProcessorBuilder {
        BulkProcessorBuilder::new(ElasticsearchTransport::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Delivery;
    use elasticsearch::http::transport::Transport as EsTransport;

    fn client(url: &str) -> Elasticsearch {
        Elasticsearch::new(EsTransport::single_node(url).unwrap_or_else(|e| panic!("{e}")))
    }

    #[tokio::test]
    async fn a_lost_answer_may_have_been_applied() {
        // A server that reads the request and hangs up without answering.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut seen = Vec::new();
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
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
            String::from_utf8_lossy(&seen).into_owned()
        });
        let t = ElasticsearchTransport::new(client(&format!("http://{addr}")));
        let e = t.bulk(Bytes::from_static(b"{}\n")).await.err();
        assert_eq!(e.map(|e| e.delivery()), Some(Delivery::MaybeApplied));
        let seen = server.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(seen.starts_with("POST /_bulk HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.to_ascii_lowercase()
                .contains("content-type: application/x-ndjson\r\n"),
            "{seen}"
        );
    }

    #[test]
    fn debug_shows_no_credentials() {
        let t = ElasticsearchTransport::new(client("http://elastic:hunter2@127.0.0.1:9200"));
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
