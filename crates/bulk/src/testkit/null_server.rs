//! A `_bulk` server that indexes nothing and answers every item with success,
//! as fast as it can: it shows what the client itself costs.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::ndjson::{actions, error_body, is_bulk_path, path_index, write_item};
use super::serve::{DropConnection, Serving, json, serve};

const INFO: &str = r#"{"name":"null-bulk-server","cluster_name":"null","cluster_uuid":"null-bulk-server","version":{"distribution":"opensearch","number":"3.0.0","build_type":"null","lucene_version":"10.0.0","minimum_wire_compatibility_version":"2.19.0","minimum_index_compatibility_version":"2.0.0"},"tagline":"The OpenSearch Project: https://opensearch.org/"}"#;

/// A loopback HTTP/1.1 server that answers `POST /_bulk` and `POST /{index}/_bulk`
/// with one successful item per action (`{"index":{"_index":..,"_id":..,"status":201,
/// "result":"created","_seq_no":n,"_primary_term":1}}`) (in order, with the action's op, `_index`
/// and `_id`) without storing anything, and `GET /` with a small OpenSearch-like
/// info document. Malformed bodies get a 400 like Elasticsearch's. Stops when dropped.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let server = bulk::testkit::NullBulkServer::start().await?;
/// let transport = bulk::HttpTransport::new(&server.url());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NullBulkServer {
    serving: Serving,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    docs: AtomicU64,
    requests: AtomicU64,
    seq_no: AtomicU64,
}

impl NullBulkServer {
    /// Starts a server on `127.0.0.1`, on a free port.
    pub async fn start() -> io::Result<NullBulkServer> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts a server on `addr` (port 0: a free port).
    pub async fn start_on(addr: SocketAddr) -> io::Result<NullBulkServer> {
        let state = Arc::new(State::default());
        let handler_state = state.clone();
        let serving = serve(addr, move |req| handle(handler_state.clone(), req)).await?;
        Ok(NullBulkServer { serving, state })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.serving.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.serving.addr
    }

    /// Bulk actions (documents, deletes included) answered so far.
    pub fn docs_received(&self) -> u64 {
        self.state.docs.load(Relaxed)
    }

    /// `_bulk` requests answered so far (malformed ones included).
    pub fn requests_received(&self) -> u64 {
        self.state.requests.load(Relaxed)
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let path = req.uri().path();
    if is_bulk_path(path) && matches!(*req.method(), Method::POST | Method::PUT) {
        let default_index = path_index(path);
        let body = match req.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return Err(DropConnection),
        };
        state.requests.fetch_add(1, Relaxed);
        return Ok(match answer_bulk(&state, &body, default_index.as_deref()) {
            Ok(answer) => json(StatusCode::OK, answer),
            Err(reason) => json(
                StatusCode::BAD_REQUEST,
                error_body("illegal_argument_exception", &reason, 400),
            ),
        });
    }
    Ok(match (req.method(), path) {
        (&Method::GET, "/") => json(StatusCode::OK, INFO),
        (&Method::HEAD, "/") => json(StatusCode::OK, Bytes::new()),
        _ => {
            let reason = format!(
                "no handler for {} {path} (the null bulk server only knows _bulk)",
                req.method()
            );
            json(
                StatusCode::NOT_FOUND,
                error_body("no_handler_found_exception", &reason, 404),
            )
        }
    })
}

/// The whole answer in one buffer; one pass over the body, no per-item allocation.
fn answer_bulk(state: &State, body: &[u8], default_index: Option<&str>) -> Result<Vec<u8>, String> {
    let default_index = default_index.map(str::as_bytes).unwrap_or(b"null");
    let mut out = Vec::with_capacity(body.len().clamp(256, 4 << 20));
    out.extend_from_slice(br#"{"took":0,"errors":false,"items":["#);
    let mut count = 0u64;
    let mut number = itoa_buffer();
    for action in actions(body) {
        let action = action?;
        if count > 0 {
            out.push(b',');
        }
        let seq_no = state.seq_no.fetch_add(1, Relaxed);
        let (status, result): (&[u8], &[u8]) = match action.op {
            "index" | "create" => (b"201", b"created"),
            "update" => (b"200", b"updated"),
            _ => (b"200", b"deleted"),
        };
        write_item(
            &mut out,
            &action,
            default_index,
            &[
                b",\"status\":",
                status,
                b",\"result\":\"",
                result,
                b"\",\"_seq_no\":",
                format_u64(&mut number, seq_no),
                b",\"_primary_term\":1",
            ],
        );
        count += 1;
    }
    out.extend_from_slice(b"]}");
    state.docs.fetch_add(count, Relaxed);
    Ok(out)
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// Decimal digits of `n`, written into `buf` without allocating.
fn format_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_item_per_action_in_order() {
        let state = State::default();
        let body = concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":1}\n",
            "{\"delete\":{\"_id\":\"2\"}}\n",
            "{\"update\":{\"_index\":\"b\",\"_id\":\"3\"}}\n{\"doc\":{\"n\":3}}\n",
            "{\"create\":{\"_index\":\"a\"}}\n{\"n\":4}\n",
        );
        let out = answer_bulk(&state, body.as_bytes(), Some("\"dflt\""))
            .unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value =
            serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert_eq!(v["errors"], false);
        let items = v["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0]["index"]["_id"], "1");
        assert_eq!(items[0]["index"]["status"], 201);
        assert_eq!(items[1]["delete"]["_index"], "dflt");
        assert_eq!(items[2]["update"]["_index"], "b");
        assert_eq!(items[2]["update"]["status"], 200);
        assert_eq!(items[3]["create"]["_id"], serde_json::Value::Null);
        assert_eq!(items[3]["create"]["_seq_no"], 3);
        assert_eq!(state.docs.load(Relaxed), 4);
        // The lead's decoder agrees.
        let d = crate::decide(200, &Bytes::from(out), 4, &crate::RetryPolicy::default());
        assert!(
            matches!(&d, crate::Decision::Items(i) if i.iter().all(|i| matches!(i, crate::ItemDecision::Success(_)))),
            "{d:?}"
        );
    }

    #[test]
    fn malformed_bodies_are_refused_and_numbers_formatted() {
        let state = State::default();
        assert!(answer_bulk(&state, b"{\"index\":{}}\n", None).is_err());
        assert_eq!(state.docs.load(Relaxed), 0);
        let mut buf = itoa_buffer();
        assert_eq!(format_u64(&mut buf, 0), b"0");
        assert_eq!(
            format_u64(&mut buf, u64::MAX),
            u64::MAX.to_string().as_bytes()
        );
    }
}
