//! The HTTP side of the source: one `reqwest` client, credentials attached per
//! request and never part of a URL that could end up in a message.

use es_query::{Flavor, Method, QueryError, Request, SearchPage};
use reqwest::header::{AUTHORIZATION, HeaderValue};

use crate::config::ValidatedConfig;
use crate::error::{ConnectorError, Result};

#[cfg(feature = "elasticsearch")]
mod official;

/// What `GET /` said about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Elasticsearch or OpenSearch, major.minor.
    pub flavor: Flavor,
    /// The full version number, e.g. `8.11.1`.
    pub version: String,
}

/// A client of one cluster.
pub(crate) struct EsClient {
    http: reqwest::Client,
    /// The URL without userinfo and trailing `/`: safe to show.
    base: String,
    /// The `Authorization` header (marked sensitive), if any.
    auth: Option<HeaderValue>,
    /// `max_response_bytes`.
    max_body: u64,
    /// Requests go through this official client instead, when set.
    #[cfg(feature = "elasticsearch")]
    official: Option<elasticsearch::Elasticsearch>,
}

impl std::fmt::Debug for EsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsClient")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

impl EsClient {
    /// A client for the source's cluster (`url`, credentials, `ca_file`) with
    /// its time-out and answer-size settings.
    pub(crate) fn new(config: &ValidatedConfig) -> Result<Self> {
        let endpoint = config.endpoint();
        let base = endpoint.url().base().to_owned();
        let invalid = |e: es_endpoint::KeyError| {
            ConnectorError::invalid(format!("plugin_config.{}", e.key), e.reason)
        };
        let auth = endpoint.authorization().map_err(invalid)?;
        let builder = endpoint
            .configure_client(reqwest::Client::builder().timeout(config.request_timeout))
            .map_err(invalid)?;
        let http = builder.build().map_err(|e| {
            ConnectorError::invalid(
                "plugin_config.url",
                format!(
                    "cannot build an HTTP client: {}",
                    describe(&e.without_url())
                ),
            )
        })?;
        Ok(EsClient {
            http,
            base,
            auth,
            max_body: config.max_response_bytes,
            #[cfg(feature = "elasticsearch")]
            official: None,
        })
    }

    /// The cluster URL, without credentials.
    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    /// Sends `request`; `what` names it in errors. Returns the status and body.
    pub(crate) async fn send(&self, request: &Request, what: &str) -> Result<(u16, Vec<u8>)> {
        #[cfg(feature = "elasticsearch")]
        if let Some(official) = &self.official {
            return self.send_official(official, request, what).await;
        }
        let url = format!("{}{}", self.base, request.path_and_query());
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.http.request(method, url);
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let unreachable = |e: reqwest::Error| {
            let e = e.without_url();
            self.no_answer(what, &e, || describe(&e))
        };
        let mut response = builder.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        self.check_answer_size(what, response.content_length())?;
        // Read in chunks, so an oversized answer is refused before it is held.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            self.check_answer_size(what, Some((body.len() + chunk.len()) as u64))?;
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// No answer to `what`, whichever client sent it: the server's certificate
    /// refused, when that is what `error` comes down to (a verdict trying again
    /// will not change), else the cluster unreachable for `reason`.
    fn no_answer(
        &self,
        what: &str,
        error: &(dyn std::error::Error + 'static),
        reason: impl FnOnce() -> String,
    ) -> ConnectorError {
        let url = self.base.clone();
        let what = what.to_owned();
        match certificate_refusal(error) {
            Some(reason) => ConnectorError::TlsCertificate { url, what, reason },
            None => ConnectorError::Unreachable {
                url,
                what,
                reason: reason(),
            },
        }
    }

    /// Refuses an answer to `what` of `length` bytes (as declared, or as read so
    /// far) over `max_response_bytes`, naming the key and what to change.
    fn check_answer_size(&self, what: &str, length: Option<u64>) -> Result<()> {
        match length {
            Some(n) if n > self.max_body => Err(ConnectorError::invalid(
                "plugin_config.max_response_bytes",
                format!(
                    "the answer to {what} from {} is larger than {} bytes; lower \
                     `plugin_config.batch_size` (documents per page) or raise this limit",
                    self.base, self.max_body
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Sends a search or scroll request and checks the answer strictly.
    pub(crate) async fn search(&self, request: &Request, what: &str) -> Result<SearchPage> {
        let (status, body) = self.send(request, what).await?;
        SearchPage::from_response(status, &body).map_err(|e| self.refused(what, e))
    }

    /// Runs the scroll `first` starts to its end, handing every hit to `each`,
    /// then frees it (a failure to free is ignored: `keep_alive` frees it).
    pub(crate) async fn scroll_all(
        &self,
        spec: &es_query::QuerySpec,
        first: &Request,
        keep_alive: std::time::Duration,
        what: &str,
        mut each: impl FnMut(es_query::Hit),
    ) -> Result<()> {
        let mut page = self.search(first, what).await?;
        loop {
            let scroll = page.scroll_id.take();
            let done = page.hits.is_empty();
            page.hits.into_iter().for_each(&mut each);
            let Some(scroll) = scroll else {
                return Ok(());
            };
            if done {
                let _ = self.send(&spec.clear_scroll(&[scroll]), what).await;
                return Ok(());
            }
            let next = spec
                .scroll_next(&scroll, keep_alive)
                .map_err(|e| self.refused(what, e))?;
            page = self.search(&next, what).await?;
        }
    }

    /// `GET /`: the server's flavour and version.
    pub(crate) async fn server_info(&self) -> Result<ServerInfo> {
        const WHAT: &str = "GET /";
        let request = Request {
            method: Method::Get,
            path: "/".into(),
            query: Vec::new(),
            body: None,
        };
        let (status, body) = self.send(&request, WHAT).await?;
        if matches!(status, 404 | 405 | 410) {
            // A minimal Elasticsearch 8 distribution has no `GET /` (405): ask the node.
            return self.local_node_info().await;
        }
        if !(200..300).contains(&status) {
            return Err(self.refused(WHAT, QueryError::from_error_response(status, &body)));
        }
        let flavor = Flavor::from_root_response(&body).map_err(|e| self.refused(WHAT, e))?;
        let version = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["version"]["number"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(ServerInfo { flavor, version })
    }

    /// `GET /_nodes/_local`: the flavour and version where `GET /` is not there.
    async fn local_node_info(&self) -> Result<ServerInfo> {
        const WHAT: &str = "GET /_nodes/_local";
        let request = Flavor::local_node_request();
        let body = self.send_ok(&request, WHAT).await?;
        let (flavor, version) =
            Flavor::from_local_node_response(&body).map_err(|e| self.refused(WHAT, e))?;
        Ok(ServerInfo { flavor, version })
    }

    /// [`send`](Self::send), with an answer outside 2xx refused as the server's
    /// error; the body of a success.
    pub(crate) async fn send_ok(&self, request: &Request, what: &str) -> Result<Vec<u8>> {
        let (status, body) = self.send(request, what).await?;
        if !(200..300).contains(&status) {
            return Err(self.refused(what, QueryError::from_error_response(status, &body)));
        }
        Ok(body)
    }

    pub(crate) fn refused(&self, what: &str, source: QueryError) -> ConnectorError {
        ConnectorError::Search {
            url: self.base.clone(),
            what: what.to_owned(),
            source,
        }
    }
}

/// The TLS library's refusal of the server's certificate, if that is what
/// `error` comes down to: a verdict that trying again will not change (unlike a
/// refused connection or a handshake cut short by a server still starting).
fn certificate_refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    // `io::Error::source` skips the error it wraps (reqwest's connector wraps
    // the TLS error in two of them): look inside those too.
    let mut pending = vec![error];
    while let Some(cause) = pending.pop() {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return matches!(tls, rustls::Error::InvalidCertificate(_)).then(|| tls.to_string());
        }
        if let Some(inner) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            pending.push(inner);
        }
        pending.extend(cause.source());
    }
    None
}

/// An error and its causes on one line (`error sending request: connection refused`).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose source is `inner`, as hyper's connect errors wrap the TLS one.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// As reqwest 0.12 hands it over: an `Other` io::Error around the
    /// `InvalidData` one tokio-rustls makes of the TLS error.
    fn wrapped(tls: rustls::Error) -> Wrapper {
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        Wrapper(std::io::Error::other(inner))
    }

    #[test]
    fn a_refused_certificate_inside_an_io_error_is_found() {
        let unknown = wrapped(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let reason = certificate_refusal(&unknown).expect("found");
        assert!(reason.contains("UnknownIssuer"), "{reason}");
        let expired = wrapped(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired,
        ));
        assert!(certificate_refusal(&expired).is_some());
    }

    #[test]
    fn other_failures_stay_retryable() {
        let corrupt = wrapped(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert_eq!(certificate_refusal(&corrupt), None);
        let refused = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(certificate_refusal(&refused), None);
    }
}
