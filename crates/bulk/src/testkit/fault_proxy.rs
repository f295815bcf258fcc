//! A fault-injecting HTTP proxy for `_bulk`, in front of a real cluster.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::ndjson::{Action, actions, error_body, is_bulk_path, path_index, write_item};
use super::serve::{DropConnection, Serving, json, serve};
use crate::JitterRng;

/// Fault rates of a [`FaultProxy`], each a fraction from 0.0 (never, the
/// default) to 1.0 (always), drawn per `_bulk` request or per item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    reject_request: f64,
    reject_status: Option<u16>,
    reset_connection: f64,
    item_429: f64,
}

impl Faults {
    /// No faults: a plain proxy.
    pub fn none() -> Self {
        Faults::default()
    }
    /// Requests answered as a whole (`503` unless [`Faults::reject_status`]
    /// says otherwise), without forwarding them.
    pub fn reject_request(mut self, fraction: f64) -> Self {
        self.reject_request = fraction;
        self
    }
    /// The status of rejected requests, with the body Elasticsearch sends with
    /// it (see [`Fault::Refuse`]). Default `503` (`cluster_block_exception`).
    pub fn reject_status(mut self, status: u16) -> Self {
        self.reject_status = Some(status);
        self
    }
    /// Requests whose connection is dropped without an answer: half of them
    /// before forwarding, half after forwarding (the cluster applied them and
    /// the answer is thrown away, so the client must resend).
    pub fn reset_connection(mut self, fraction: f64) -> Self {
        self.reset_connection = fraction;
        self
    }
    /// Items taken out of the request before forwarding (so they are really
    /// not indexed) and answered `429 es_rejected_execution_exception` at
    /// their position in the upstream answer.
    pub fn item_429(mut self, fraction: f64) -> Self {
        self.item_429 = fraction;
        self
    }
}

/// A fault for one `_bulk` request, in the order given to [`FaultProxy::script`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answered with this status without forwarding, with the body
    /// Elasticsearch sends with it: 401 and 403 `security_exception`, 413 with
    /// no body (as the HTTP layer answers an over-long body), 429
    /// `es_rejected_execution_exception`, 500 `illegal_state_exception`, 503
    /// `cluster_block_exception`, anything else a `fault_proxy_exception`.
    Refuse(u16),
    /// The connection is dropped before forwarding: nothing reached the cluster.
    ResetBeforeForwarding,
    /// Forwarded and applied by the cluster, then the connection is dropped
    /// before the answer: to the client, an answer lost after sending.
    ResetAfterForwarding,
    /// Forwarded and answered as usual.
    Pass,
}

/// What a [`FaultProxy`] did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// `_bulk` requests received.
    pub bulk_requests: u64,
    /// `_bulk` requests that arrived while the proxy was stalled.
    pub stalled: u64,
    /// `_bulk` requests answered with an error status without forwarding.
    pub rejected: u64,
    /// Connections dropped before forwarding.
    pub reset_before_forwarding: u64,
    /// Connections dropped after forwarding (upstream answer thrown away).
    pub reset_after_forwarding: u64,
    /// `_bulk` requests forwarded upstream.
    pub forwarded: u64,
    /// Items answered with an injected 429 (in answers that reached the client).
    pub items_429: u64,
    /// Other requests forwarded unchanged.
    pub passed_through: u64,
}

#[derive(Debug, Default)]
struct Counters {
    bulk_requests: AtomicU64,
    stalled: AtomicU64,
    rejected: AtomicU64,
    reset_before_forwarding: AtomicU64,
    reset_after_forwarding: AtomicU64,
    forwarded: AtomicU64,
    items_429: AtomicU64,
    passed_through: AtomicU64,
}

/// An HTTP/1.1 proxy on `127.0.0.1` in front of a real cluster that injects
/// faults into `_bulk` calls at seeded random rates (see [`Faults`]) or request
/// by request ([`FaultProxy::script`], [`Fault`]), and can
/// stall: while stalled, `_bulk` requests are accepted and not answered (nor
/// read) until the stall is lifted, then handled as usual. Other requests are
/// forwarded unchanged. Faults and the stall can be changed while it runs;
/// [`FaultProxy::counts`] tells what was injected. Stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    serving: Serving,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    upstream: String,
    client: reqwest::Client,
    dice: Mutex<Dice>,
    stalled: watch::Sender<bool>,
    counters: Counters,
}

#[derive(Debug)]
struct Dice {
    faults: Faults,
    rng: JitterRng,
    /// One-shot faults for the next requests, before the rates apply.
    script: VecDeque<Fault>,
}

/// What happens to one `_bulk` request.
#[derive(Debug, Default)]
struct Fate {
    /// Answered with this status, not forwarded.
    reject: Option<u16>,
    reset_before: bool,
    reset_after: bool,
    /// Per item: answered 429 instead of forwarded.
    rejected_items: Vec<bool>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) on a free port.
    pub async fn start(upstream: &str, faults: Faults, seed: u64) -> io::Result<FaultProxy> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(io::Error::other)?;
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            dice: Mutex::new(Dice {
                faults,
                rng: JitterRng::seeded(seed),
                script: VecDeque::new(),
            }),
            stalled: watch::Sender::new(false),
            counters: Counters::default(),
        });
        let handler_state = state.clone();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let serving = serve(addr, move |req| handle(handler_state.clone(), req)).await?;
        Ok(FaultProxy { serving, state })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.serving.addr)
    }

    /// Changes the fault rates for requests arriving from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state
            .dice
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .faults = faults;
    }

    /// The next `_bulk` requests meet `faults`, one each, in order (without
    /// drawing the random rates); the rates apply again after the last one.
    /// Deterministic: a test can lose exactly one answer, or refuse exactly
    /// the first request.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .dice
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .script
            .extend(faults);
    }

    /// Stalls (`true`) or resumes (`false`); resuming lets the held requests go on.
    pub fn set_stalled(&self, stalled: bool) {
        self.state.stalled.send_replace(stalled);
    }

    /// What was injected so far.
    pub fn counts(&self) -> FaultCounts {
        let c = &self.state.counters;
        FaultCounts {
            bulk_requests: c.bulk_requests.load(Relaxed),
            stalled: c.stalled.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            reset_before_forwarding: c.reset_before_forwarding.load(Relaxed),
            reset_after_forwarding: c.reset_after_forwarding.load(Relaxed),
            forwarded: c.forwarded.load(Relaxed),
            items_429: c.items_429.load(Relaxed),
            passed_through: c.passed_through.load(Relaxed),
        }
    }
}

impl State {
    fn fate(&self, items: usize) -> Fate {
        let mut dice = self.dice.lock().unwrap_or_else(|p| p.into_inner());
        let Dice {
            faults,
            rng,
            script,
        } = &mut *dice;
        let mut fate = Fate::default();
        if let Some(fault) = script.pop_front() {
            match fault {
                Fault::Refuse(status) => fate.reject = Some(status),
                Fault::ResetBeforeForwarding => fate.reset_before = true,
                Fault::ResetAfterForwarding => fate.reset_after = true,
                Fault::Pass => {}
            }
            return fate;
        }
        if rng.unit() < faults.reject_request {
            fate.reject = Some(faults.reject_status.unwrap_or(503));
            return fate;
        }
        if rng.unit() < faults.reset_connection {
            if rng.unit() < 0.5 {
                fate.reset_before = true;
            } else {
                fate.reset_after = true;
            }
        }
        if faults.item_429 > 0.0 {
            fate.rejected_items = (0..items).map(|_| rng.unit() < faults.item_429).collect();
        }
        fate
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, Option<HeaderValue>, Bytes), String> {
        let mut req = self
            .client
            .request(method, format!("{}{path_and_query}", self.upstream))
            .body(body);
        for name in [CONTENT_TYPE, AUTHORIZATION, ACCEPT] {
            if let Some(value) = headers.get(&name) {
                req = req.header(name, value);
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("upstream {}: {e}", self.upstream))?;
        let status = resp.status();
        let content_type = resp.headers().get(CONTENT_TYPE).cloned();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the upstream answer: {e}"))?;
        Ok((status, content_type, body))
    }
}

fn bad_gateway(reason: &str) -> Response<Full<Bytes>> {
    json(
        StatusCode::BAD_GATEWAY,
        error_body("fault_proxy_exception", reason, 502),
    )
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let counters = &state.counters;
    if !(is_bulk_path(&path) && matches!(method, Method::POST | Method::PUT)) {
        let body = req
            .into_body()
            .collect()
            .await
            .map_err(|_| DropConnection)?
            .to_bytes();
        counters.passed_through.fetch_add(1, Relaxed);
        return Ok(
            match state.send(method, &path_and_query, &headers, body).await {
                Ok((status, content_type, body)) => {
                    let mut resp = Response::new(Full::new(body));
                    *resp.status_mut() = status;
                    if let Some(ct) = content_type {
                        resp.headers_mut().insert(CONTENT_TYPE, ct);
                    }
                    resp
                }
                Err(reason) => bad_gateway(&reason),
            },
        );
    }
    counters.bulk_requests.fetch_add(1, Relaxed);
    if *state.stalled.borrow() {
        counters.stalled.fetch_add(1, Relaxed);
        // The body stays unread, like a cluster that stopped reading.
        let mut stalled = state.stalled.subscribe();
        if stalled.wait_for(|s| !*s).await.is_err() {
            return Err(DropConnection);
        }
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|_| DropConnection)?
        .to_bytes();
    let default_index = path_index(&path);
    let default_index = default_index.as_deref().unwrap_or("null").as_bytes();
    // A body it cannot read is forwarded untouched: let the cluster say what is wrong.
    let parsed: Vec<Action<'_>> = actions(&body).collect::<Result<_, _>>().unwrap_or_default();
    let fate = state.fate(parsed.len());
    if let Some(status) = fate.reject {
        counters.rejected.fetch_add(1, Relaxed);
        return Ok(refusal(status));
    }
    if fate.reset_before {
        counters.reset_before_forwarding.fetch_add(1, Relaxed);
        return Err(DropConnection);
    }
    let injected = fate.rejected_items.iter().filter(|r| **r).count();
    let upstream = if injected == 0 {
        counters.forwarded.fetch_add(1, Relaxed);
        state
            .send(method, &path_and_query, &headers, body.clone())
            .await
    } else if injected == parsed.len() {
        Ok((
            StatusCode::OK,
            None,
            Bytes::from_static(br#"{"took":0,"errors":false,"items":[]}"#),
        ))
    } else {
        let mut kept = Vec::with_capacity(body.len());
        for (action, rejected) in parsed.iter().zip(&fate.rejected_items) {
            if !rejected {
                kept.extend_from_slice(&body[action.range.clone()]);
                if !kept.ends_with(b"\n") {
                    kept.push(b'\n');
                }
            }
        }
        counters.forwarded.fetch_add(1, Relaxed);
        state
            .send(method, &path_and_query, &headers, Bytes::from(kept))
            .await
    };
    let (status, content_type, upstream_body) = match upstream {
        Ok(answer) => answer,
        Err(reason) => return Ok(bad_gateway(&reason)),
    };
    if fate.reset_after {
        counters.reset_after_forwarding.fetch_add(1, Relaxed);
        return Err(DropConnection);
    }
    if injected == 0 || !status.is_success() {
        let mut resp = Response::new(Full::new(upstream_body));
        *resp.status_mut() = status;
        if let Some(ct) = content_type {
            resp.headers_mut().insert(CONTENT_TYPE, ct);
        }
        return Ok(resp);
    }
    match merge(&upstream_body, &parsed, &fate.rejected_items, default_index) {
        Ok(merged) => {
            counters.items_429.fetch_add(injected as u64, Relaxed);
            Ok(json(StatusCode::OK, merged))
        }
        Err(reason) => Ok(bad_gateway(&reason)),
    }
}

/// A whole-request refusal with `status`, as Elasticsearch words it.
fn refusal(status: u16) -> Response<Full<Bytes>> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let (kind, reason) = match code.as_u16() {
        401 => (
            "security_exception",
            "missing authentication credentials for REST request [/_bulk] (injected by FaultProxy)",
        ),
        403 => (
            "security_exception",
            "action [indices:data/write/bulk] is unauthorized for user [fault-proxy] with effective roles [viewer] (injected by FaultProxy)",
        ),
        413 => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = code;
            return resp;
        }
        429 => (
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation (injected by FaultProxy)",
        ),
        500 => (
            "illegal_state_exception",
            "an internal error (injected by FaultProxy)",
        ),
        503 => (
            "cluster_block_exception",
            "blocked by: [SERVICE_UNAVAILABLE/2/no master] (injected by FaultProxy)",
        ),
        _ => ("fault_proxy_exception", "injected by FaultProxy"),
    };
    json(code, error_body(kind, reason, code.as_u16()))
}

#[derive(Deserialize)]
struct UpstreamAnswer<'a> {
    #[serde(default)]
    took: u64,
    #[serde(default)]
    errors: bool,
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

/// The upstream answer for the forwarded items with an injected 429 item put
/// back at the position of every rejected one.
fn merge(
    upstream: &[u8],
    actions: &[Action<'_>],
    rejected: &[bool],
    default_index: &[u8],
) -> Result<Vec<u8>, String> {
    let answer: UpstreamAnswer<'_> = serde_json::from_slice(upstream)
        .map_err(|e| format!("unreadable upstream bulk answer: {e}"))?;
    let forwarded = rejected.iter().filter(|r| !**r).count();
    if answer.items.len() != forwarded || actions.len() != rejected.len() {
        return Err(format!(
            "the upstream answered {} items for {forwarded} forwarded",
            answer.items.len()
        ));
    }
    let mut out = Vec::with_capacity(upstream.len() + 200 * (rejected.len() - forwarded));
    out.extend_from_slice(b"{\"took\":");
    out.extend_from_slice(answer.took.to_string().as_bytes());
    out.extend_from_slice(br#","errors":true,"items":["#);
    let mut from_upstream = answer.items.iter();
    for (i, (action, rejected)) in actions.iter().zip(rejected).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if *rejected {
            let error = br#","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of bulk item (injected by FaultProxy)"}"#;
            write_item(&mut out, action, default_index, &[error]);
        } else if let Some(item) = from_upstream.next() {
            out.extend_from_slice(item.get().as_bytes());
        }
    }
    out.extend_from_slice(b"]}");
    let _ = answer.errors;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_puts_429s_at_their_positions() {
        let body = concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}\n",
            "{\"create\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{}\n",
            "{\"delete\":{\"_id\":\"3\"}}\n",
            "{\"index\":{\"_index\":\"a\",\"_id\":\"4\"}}\n{}\n",
        );
        let parsed: Vec<_> = actions(body.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let upstream = br#"{"took":7,"errors":false,"items":[{"index":{"_id":"1","status":201}},{"index":{"_id":"4","status":201}}]}"#;
        let merged = merge(upstream, &parsed, &[false, true, true, false], b"\"dflt\"")
            .unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value =
            serde_json::from_slice(&merged).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["took"], 7);
        assert_eq!(v["errors"], true);
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let got: Vec<(String, u64)> = items
            .iter()
            .map(|item| {
                let (op, r) = item
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .unwrap_or_else(|| panic!("{item}"));
                (
                    format!("{op}/{}", r["_id"].as_str().unwrap_or("")),
                    r["status"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let want = [
            ("index/1", 201),
            ("create/2", 429),
            ("delete/3", 429),
            ("index/4", 201),
        ];
        assert_eq!(got, want.map(|(a, s)| (a.to_owned(), s)));
        assert_eq!(items[2]["delete"]["_index"], "dflt");
        assert_eq!(
            items[1]["create"]["error"]["type"],
            "es_rejected_execution_exception"
        );
        // The lead's decoder retries exactly the injected ones.
        let d = crate::decide(200, &Bytes::from(merged), 4, &crate::RetryPolicy::default());
        let kinds: Vec<&str> = match d {
            crate::Decision::Items(items) => items
                .iter()
                .map(|i| {
                    if matches!(i, crate::ItemDecision::Retry(_)) {
                        "retry"
                    } else {
                        "other"
                    }
                })
                .collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(kinds, ["other", "retry", "retry", "other"]);
    }

    #[test]
    fn merge_refuses_a_wrong_item_count() {
        let parsed: Vec<_> =
            actions(b"{\"delete\":{\"_id\":\"1\"}}\n{\"delete\":{\"_id\":\"2\"}}\n")
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{e}"));
        let upstream = br#"{"took":1,"errors":false,"items":[]}"#;
        assert!(merge(upstream, &parsed, &[true, false], b"null").is_err());
    }

    fn state(faults: Faults, seed: u64) -> State {
        State {
            upstream: String::new(),
            client: reqwest::Client::new(),
            dice: Mutex::new(Dice {
                faults,
                rng: JitterRng::seeded(seed),
                script: VecDeque::new(),
            }),
            stalled: watch::Sender::new(false),
            counters: Counters::default(),
        }
    }

    #[test]
    fn scripted_faults_come_first_in_order_then_the_rates() {
        let state = state(Faults::none().reject_request(1.0).reject_status(401), 1);
        state
            .dice
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .script
            .extend([
                Fault::ResetAfterForwarding,
                Fault::Pass,
                Fault::ResetBeforeForwarding,
                Fault::Refuse(413),
            ]);
        let fates: Vec<Fate> = (0..5).map(|_| state.fate(3)).collect();
        assert!(fates[0].reset_after && !fates[0].reset_before && fates[0].reject.is_none());
        assert!(!fates[1].reset_after && !fates[1].reset_before && fates[1].reject.is_none());
        assert!(fates[2].reset_before && !fates[2].reset_after);
        assert_eq!(fates[3].reject, Some(413));
        assert_eq!(
            fates[4].reject,
            Some(401),
            "then the rates, with reject_status"
        );
    }

    #[tokio::test]
    async fn refusals_carry_the_body_elasticsearch_sends() {
        for (status, kind) in [
            (401, "security_exception"),
            (403, "security_exception"),
            (429, "es_rejected_execution_exception"),
            (500, "illegal_state_exception"),
            (503, "cluster_block_exception"),
        ] {
            let resp = refusal(status);
            assert_eq!(resp.status().as_u16(), status);
            let body = resp
                .into_body()
                .collect()
                .await
                .unwrap_or_else(|e| match e {})
                .to_bytes();
            let v: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{status}: {e}"));
            assert_eq!(v["error"]["type"], kind, "{status}");
            assert_eq!(v["status"], status, "{status}");
        }
        let too_large = refusal(413);
        assert_eq!(too_large.status().as_u16(), 413);
        let body = too_large
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| match e {})
            .to_bytes();
        assert!(body.is_empty(), "the HTTP layer answers 413 with no body");
    }

    #[test]
    fn fates_follow_the_rates_and_the_seed() {
        let fates = |faults: Faults, seed| {
            let state = state(faults, seed);
            (0..2000).map(|_| state.fate(10)).collect::<Vec<_>>()
        };
        let faults = Faults::none()
            .reject_request(0.05)
            .reset_connection(0.1)
            .item_429(0.1);
        let a = fates(faults.clone(), 1);
        let rejected = a.iter().filter(|f| f.reject == Some(503)).count();
        let resets = a.iter().filter(|f| f.reset_before || f.reset_after).count();
        let items: usize = a
            .iter()
            .map(|f| f.rejected_items.iter().filter(|r| **r).count())
            .sum();
        assert!((60..=140).contains(&rejected), "{rejected}");
        assert!((120..=260).contains(&resets), "{resets}");
        assert!((1500..=2300).contains(&items), "{items}");
        let b = fates(faults, 1);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.reject == y.reject && x.rejected_items == y.rejected_items)
        );
        assert!(fates(Faults::none(), 1).iter().all(|f| f.reject.is_none()
            && !f.reset_before
            && !f.reset_after
            && f.rejected_items.is_empty()));
    }
}
