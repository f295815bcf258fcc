//! The metrics endpoint: hyper's HTTP/1.1 server answering `GET /metrics`
//! (and `HEAD`) with [`Metrics::render`]. hyper parses the requests: a
//! malformed one is answered `400`, a head larger than [`MAX_HEAD`] `431`, and
//! a client that does not finish its head within
//! [`ServeLimits::header_read_timeout`] is cut off. Each connection is a task
//! of the server, so a slow one holds up nobody, and all end with it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics};

/// Largest request head read (hyper's smallest allowed read buffer is 8 KiB).
pub const MAX_HEAD: usize = 16 * 1024;

/// What one client may hold of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeLimits {
    /// A request head not received in full within this time closes its
    /// connection. Default 10 s.
    pub header_read_timeout: Duration,
    /// Connections served at once; more are closed as soon as accepted. Default 64.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

impl ServeLimits {
    /// Sets [`ServeLimits::header_read_timeout`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`ServeLimits::max_connections`] (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

/// The metrics endpoint: serving until dropped or [`MetricsServer::shutdown`].
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks one) and serves `metrics` at `GET /metrics`.
    pub async fn bind(addr: SocketAddr, metrics: Metrics) -> std::io::Result<MetricsServer> {
        Self::bind_with(addr, metrics, ServeLimits::default()).await
    }

    /// [`MetricsServer::bind`] with other limits.
    pub async fn bind_with(
        addr: SocketAddr,
        metrics: Metrics,
        limits: ServeLimits,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve_with(listener, metrics, limits));
        Ok(MetricsServer { addr, task })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// [`serve_with`] the default [`ServeLimits`].
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    serve_with(listener, metrics, ServeLimits::default()).await
}

/// Accepts connections on `listener` and answers their requests with the
/// metrics. The connections are tasks of this future: dropping or aborting it
/// ends them too.
pub async fn serve_with(listener: TcpListener, metrics: Metrics, limits: ServeLimits) {
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: give the others time to close.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if connections.len() >= limits.max_connections {
            tracing::debug!(
                limit = limits.max_connections,
                "metrics endpoint: too many connections; closing the new one"
            );
            drop(stream);
            continue;
        }
        let metrics = metrics.clone();
        let connection = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |request| {
                let response = respond(&request, &metrics);
                async move { Ok::<_, Infallible>(response) }
            }),
        );
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, METRICS_CONTENT_TYPE, metrics.render())
        }
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_owned(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A scraper that sends half a request and waits is cut off when the server
    /// stops, not left to the header read timeout: the connection is the server's.
    #[tokio::test]
    async fn a_connection_in_progress_ends_with_the_server() {
        let server = MetricsServer::bind(
            "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            Metrics::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let mut client = TcpStream::connect(server.local_addr())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .write_all(b"GET /metr")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The server holds the connection, waiting for the rest of the head.
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), client.read(&mut buf))
                .await
                .is_err(),
            "the server answered half a request"
        );
        server.shutdown();
        // Closed (or reset) now, well before the 10 s header read timeout.
        let closed = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the connection outlived the server: {closed:?}"
        );
    }
}
