//! An [`EsStore`] over the official `elasticsearch` client (feature `elasticsearch`).
//!
//! The store's requests are the same; only the sending differs: each goes out
//! through the client's raw `send`, to the node its connection pool picks, with
//! the client's credentials, certificates and headers.

use std::fmt;
use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::http::headers::HeaderMap;
use reqwest::Method;
use state_core::{DEFAULT_STATE_INDEX, Result, StateError};

use crate::builder::{Auth, DEFAULT_LIST_PAGE_SIZE, DEFAULT_TIMEOUT, Resolved};
use crate::store::EsStore;
use crate::transport::{BACKEND, Reply};
use crate::wire::encode_segment;

/// What errors and `Debug` call the cluster behind an official client: its node
/// URLs stay inside it (they may carry credentials).
const DISPLAY: &str = "the official client's cluster";

/// Builds an [`EsStore`] that talks through an official [`Elasticsearch`]
/// client: made by [`EsStore::from_elasticsearch`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use elasticsearch::Elasticsearch;
/// use elasticsearch::http::transport::Transport;
///
/// let client = Elasticsearch::new(Transport::single_node("http://localhost:9200")?);
/// let store = state_es::EsStore::from_elasticsearch(client)
///     .with_index("connector_states")          // default
///     .build()
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct OfficialEsStoreBuilder {
    client: Elasticsearch,
    index: String,
    timeout: Duration,
    create_index: bool,
    list_page_size: usize,
}

impl OfficialEsStoreBuilder {
    pub(crate) fn new(client: Elasticsearch) -> Self {
        OfficialEsStoreBuilder {
            client,
            index: DEFAULT_STATE_INDEX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            create_index: true,
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
        }
    }

    /// The index (or single-index alias) holding the states. Default `connector_states`.
    pub fn with_index(mut self, index: impl Into<String>) -> Self {
        self.index = index.into();
        self
    }

    /// Time limit of each request, over the client's own. Default
    /// [`DEFAULT_TIMEOUT`] (30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether `build` creates the index with [`index_mapping`](crate::index_mapping)
    /// when it is missing. Default `true`; with `false`, `build` does no IO.
    pub fn with_create_index(mut self, create: bool) -> Self {
        self.create_index = create;
        self
    }

    /// States fetched per search request by `list`. Default [`DEFAULT_LIST_PAGE_SIZE`] (1000).
    pub fn with_list_page_size(mut self, size: usize) -> Self {
        self.list_page_size = size;
        self
    }

    /// Checks every option without any IO.
    pub fn validate(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }

    /// Validates and (unless disabled) creates the index if it is missing.
    /// Fails with `Unavailable` when the cluster cannot be reached.
    pub async fn build(self) -> Result<EsStore> {
        let resolved = self.resolve()?;
        let store = EsStore::over_official(self.client, resolved)?;
        if self.create_index {
            store.ensure_index().await?;
        }
        Ok(store)
    }

    fn resolve(&self) -> Result<Resolved> {
        let index = crate::builder::checked_index(&self.index)?;
        if self.timeout.is_zero() {
            return Err(StateError::invalid_config(
                "state.storage_config.timeout",
                "the timeout must be more than zero",
            ));
        }
        crate::builder::check_list_page_size(self.list_page_size)?;
        Ok(Resolved {
            // A path: the client joins it to the node it picks.
            index_path: format!("/{}", encode_segment(index.as_str())),
            display: DISPLAY.to_owned(),
            index: index.as_str().to_owned(),
            // The client authenticates every request itself.
            auth: Auth::None,
            timeout: self.timeout,
            list_page_size: self.list_page_size,
        })
    }
}

impl fmt::Debug for OfficialEsStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client: its `Debug` would show its credentials.
        f.debug_struct("OfficialEsStoreBuilder")
            .field("index", &self.index)
            .field("timeout", &self.timeout)
            .field("create_index", &self.create_index)
            .field("list_page_size", &self.list_page_size)
            .finish_non_exhaustive()
    }
}

/// Sends one request through the official client: `path` (with its query) is
/// joined to the node URL the client picks. As [`crate::transport::send`]:
/// failures without an answer are `Unavailable`, any status is returned.
pub(crate) async fn send(
    client: &Elasticsearch,
    opts: &Resolved,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    what: &str,
) -> Result<Reply> {
    let method = match method {
        Method::GET => elasticsearch::http::Method::Get,
        Method::PUT => elasticsearch::http::Method::Put,
        Method::POST => elasticsearch::http::Method::Post,
        Method::DELETE => elasticsearch::http::Method::Delete,
        Method::HEAD => elasticsearch::http::Method::Head,
        other => {
            return Err(StateError::backend(
                BACKEND,
                format!("{what}: the official client cannot send {other}"),
            ));
        }
    };
    // The client's default content type is plain `application/json`.
    let response = client
        .send(
            method,
            path,
            HeaderMap::new(),
            None::<&()>,
            body,
            Some(opts.timeout),
        )
        .await
        .map_err(|e| unavailable(opts, what, &e))?;
    let status = response.status_code();
    let body = response
        .bytes()
        .await
        .map_err(|e| unavailable(opts, what, &e))?;
    Ok(Reply {
        status,
        body: body.to_vec(),
    })
}

fn unavailable(opts: &Resolved, what: &str, err: &elasticsearch::Error) -> StateError {
    StateError::unavailable(
        BACKEND,
        format!(
            "{what} in index `{}` at {} failed: {}; check that the cluster is up and reachable",
            opts.index,
            opts.display,
            describe(opts, err)
        ),
    )
}

/// The cause on one line, without the request URL reqwest puts in its message.
fn describe(opts: &Resolved, err: &elasticsearch::Error) -> String {
    let mut source = std::error::Error::source(err);
    let mut http = None;
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<reqwest::Error>() {
            http = Some(e);
            break;
        }
        source = s.source();
    }
    let Some(http) = http else {
        return err.to_string();
    };
    let mut text = if http.is_timeout() {
        format!("no reply within {:?}", opts.timeout)
    } else if http.is_connect() {
        "cannot connect".to_owned()
    } else if http.is_body() || http.is_decode() {
        "the reply was cut off".to_owned()
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

impl EsStore {
    /// A store over an official [`Elasticsearch`] client (its connection pool,
    /// Elastic Cloud id, credentials, certificates): see [`OfficialEsStoreBuilder`].
    pub fn from_elasticsearch(client: Elasticsearch) -> OfficialEsStoreBuilder {
        OfficialEsStoreBuilder::new(client)
    }

    pub(crate) fn over_official(client: Elasticsearch, opts: Resolved) -> Result<EsStore> {
        // Never used for a request; `EsStore::client` hands it out, so there is one.
        let unused = reqwest::Client::builder().build().map_err(|e| {
            StateError::backend(BACKEND, format!("cannot build the HTTP client: {e}"))
        })?;
        let mut store = EsStore::new(unused, opts);
        store.official = Some(client);
        Ok(store)
    }

    /// The official client this store sends through, if it was made by
    /// [`EsStore::from_elasticsearch`].
    pub fn official_client(&self) -> Option<&Elasticsearch> {
        self.official.as_ref()
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use elasticsearch::http::transport::Transport;

    fn client() -> Elasticsearch {
        Elasticsearch::new(
            Transport::single_node("http://elastic:hunter2@127.0.0.1:9")
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[test]
    fn refuses_bad_options_without_showing_the_client() {
        let bad = [
            OfficialEsStoreBuilder::new(client()).with_index("Upper"),
            OfficialEsStoreBuilder::new(client()).with_timeout(Duration::ZERO),
            OfficialEsStoreBuilder::new(client()).with_list_page_size(0),
        ];
        for b in bad {
            match b.validate() {
                Err(StateError::InvalidConfig { .. }) => {}
                other => panic!("{b:?} gave {other:?}"),
            }
            assert!(!format!("{b:?}").contains("hunter2"));
        }
        let r = OfficialEsStoreBuilder::new(client())
            .with_index("states-1")
            .resolve()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.index_path, "/states-1");
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_unavailable() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"));
        let client = Elasticsearch::new(
            Transport::single_node(&format!("http://elastic:hunter2@{closed}"))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        match OfficialEsStoreBuilder::new(client).build().await {
            Err(e @ StateError::Unavailable { .. }) => {
                let text = e.to_string();
                assert!(e.is_retryable());
                assert!(text.contains("cannot connect"), "{text}");
                assert!(!text.contains("hunter2"), "{text}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
