//! The source's requests through the official `elasticsearch` client (feature
//! `elasticsearch`): the same requests and answers, another sender.

use elasticsearch::Elasticsearch;
use elasticsearch::http::headers::HeaderMap;
use es_query::{Method, Request};

use super::{EsClient, describe};
use crate::config::PluginConfig;
use crate::error::{ConnectorError, Result};

/// How errors and logs name the cluster behind an official client: its node
/// URLs stay inside it (they may carry credentials).
pub(crate) const DISPLAY: &str = "the official client's cluster";

impl EsClient {
    /// A client sending through the official `client`; `config` gives the
    /// limits (`max_response_bytes`), its URL and credentials are not used.
    pub(crate) fn official(config: &PluginConfig, client: Elasticsearch) -> Result<Self> {
        // Never used for a request (every one goes through `client`).
        let http = reqwest::Client::builder().build().map_err(|e| {
            ConnectorError::invalid(
                "plugin_config.url",
                format!("cannot build an HTTP client: {}", describe(&e)),
            )
        })?;
        Ok(EsClient {
            http,
            base: DISPLAY.to_owned(),
            auth: None,
            max_body: config.max_response_bytes,
            official: Some(client),
        })
    }

    /// Sends `request` through `client` (the node its pool picks, its
    /// credentials); as [`EsClient::send`]: the status and body, any status.
    pub(super) async fn send_official(
        &self,
        client: &Elasticsearch,
        request: &Request,
        what: &str,
    ) -> Result<(u16, Vec<u8>)> {
        let method = match request.method {
            Method::Get => elasticsearch::http::Method::Get,
            Method::Post => elasticsearch::http::Method::Post,
            Method::Delete => elasticsearch::http::Method::Delete,
        };
        let body = request
            .body
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ConnectorError::invalid("plugin_config.query", e))?;
        let unreachable = |e: elasticsearch::Error| self.unreachable_official(what, &e);
        let response = client
            .send(
                method,
                &request.path_and_query(),
                HeaderMap::new(),
                None::<&()>,
                body,
                None,
            )
            .await
            .map_err(unreachable)?;
        let status = response.status_code().as_u16();
        // The client reads an answer whole: a declared length is refused before,
        // a chunked one after reading it.
        self.check_answer_size(what, response.content_length())?;
        let body = response.bytes().await.map_err(unreachable)?;
        self.check_answer_size(what, Some(body.len() as u64))?;
        Ok((status, body.to_vec()))
    }

    fn unreachable_official(&self, what: &str, error: &elasticsearch::Error) -> ConnectorError {
        // reqwest's own message names the URL (which may carry credentials):
        // describe its causes only.
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            if let Some(http) = cause.downcast_ref::<reqwest::Error>() {
                let reason = if http.is_timeout() {
                    "timed out".to_owned()
                } else if http.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    "the request failed".to_owned()
                };
                return self.no_answer(what, http, || match std::error::Error::source(http) {
                    Some(inner) => format!("{reason}: {}", describe(inner)),
                    None => reason,
                });
            }
            source = cause.source();
        }
        ConnectorError::Unreachable {
            url: self.base.clone(),
            what: what.to_owned(),
            reason: error.to_string(),
        }
    }
}
