//! Sending one request and sorting what went wrong into retryable and permanent.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use state_core::{Result, StateError};

use crate::builder::Resolved;
use crate::wire::describe_error_body;

pub(crate) const BACKEND: &str = "elasticsearch";

/// A reply that arrived, whatever its status.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    /// The whole body (copied out of reqwest's buffer: a memcpy, far below a round trip).
    pub body: Vec<u8>,
}

/// Sends one request to `url` (which must not carry credentials) and reads the whole reply.
///
/// Transport failures (refused, reset, timed out) are `Unavailable`; any status
/// is returned for the caller to judge.
pub(crate) async fn send(
    client: &reqwest::Client,
    opts: &Resolved,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
    what: &str,
) -> Result<Reply> {
    let mut request = client.request(method, url).timeout(opts.timeout);
    if let Some(header) = opts.auth.header() {
        request = request.header(AUTHORIZATION, header.clone());
    }
    if let Some(body) = body {
        // Plain JSON: some servers refuse the `compatible-with` media types.
        request = request
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(opts, what, &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(opts, what, &e))?;
    Ok(Reply {
        status,
        body: body.to_vec(),
    })
}

fn transport_error(opts: &Resolved, what: &str, err: &reqwest::Error) -> StateError {
    let cause = if err.is_timeout() {
        format!("no reply within {:?}", opts.timeout)
    } else {
        error_chain(err)
    };
    StateError::unavailable(
        BACKEND,
        format!(
            "{what} in index `{}` at {} failed: {cause}; check that the cluster is up and reachable",
            opts.index, opts.display
        ),
    )
}

/// The error and its causes, without the request URL reqwest adds.
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut current: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = current {
        let part = match e.downcast_ref::<reqwest::Error>() {
            Some(r) if r.url().is_some() => describe_reqwest(r),
            _ => e.to_string(),
        };
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        current = e.source();
    }
    text
}

fn describe_reqwest(err: &reqwest::Error) -> String {
    if err.is_connect() {
        "cannot connect".into()
    } else if err.is_body() || err.is_decode() {
        "the reply was cut off".into()
    } else if err.is_request() {
        "the request failed".into()
    } else {
        "HTTP error".into()
    }
}

/// An error for a status the operation does not expect: 429 and 5xx are
/// `Unavailable` (retryable), the rest `Backend` with the server's reason.
pub(crate) fn status_error(opts: &Resolved, what: &str, reply: &Reply) -> StateError {
    let status = reply.status;
    let reason = describe_error_body(&reply.body);
    let head = format!(
        "{what} in index `{}` at {}: HTTP {status}: {reason}",
        opts.index, opts.display
    );
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        StateError::unavailable(
            BACKEND,
            format!("{head}; the cluster is overloaded or unhealthy, retry later"),
        )
    } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        StateError::backend(
            BACKEND,
            format!("{head}; check the credentials and that they may read and write the index"),
        )
    } else {
        StateError::backend(BACKEND, head)
    }
}
