//! Options of an [`EsStore`]: pure validation first, IO only in `build`.

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderValue;
use std::path::PathBuf;

use state_core::es_endpoint::{Access, Endpoint, Secret};
use state_core::{DEFAULT_STATE_INDEX, HttpUrl, IndexName, Result, StateError, redact_url};

use crate::store::EsStore;
use crate::wire::encode_segment;

/// Default time limit of one request (connect, send and read the reply).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit to open a connection (only for the client this crate builds).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of states fetched per page by `list`.
pub const DEFAULT_LIST_PAGE_SIZE: usize = 1000;

const URL_KEY: &str = "state.storage_config.url";

/// Builds an [`EsStore`]. Every option has a documented default; only the URL is required.
///
/// ```no_run
/// # async fn demo() -> state_core::Result<()> {
/// use std::time::Duration;
///
/// let store = state_es::EsStore::builder("https://es.example:9200")
///     .with_index("connector_states")          // default
///     .with_api_key("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==")
///     .with_timeout(Duration::from_secs(10))   // default 30 s
///     .build()
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct EsStoreBuilder {
    url: String,
    /// The access keys given one by one (`with_api_key`, ...).
    access: Access,
    /// A resolved endpoint given whole ([`EsStoreBuilder::from_endpoint`]).
    endpoint: Option<Endpoint>,
    index: String,
    timeout: Duration,
    connect_timeout: Duration,
    client: Option<reqwest::Client>,
    create_index: bool,
    list_page_size: usize,
}

impl EsStoreBuilder {
    /// Starts from `url` (`http(s)://[user:password@]host:port[/path-prefix]`).
    /// Credentials in the URL become basic authentication; they are never logged or shown.
    pub fn new(url: impl Into<String>) -> Self {
        EsStoreBuilder {
            url: url.into(),
            access: Access::default(),
            endpoint: None,
            index: DEFAULT_STATE_INDEX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            client: None,
            create_index: true,
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
        }
    }

    /// Starts from a resolved cluster: URL, credentials and CA file (what the
    /// connector's configuration resolves `state.storage_config` into).
    pub fn from_endpoint(endpoint: Endpoint) -> Self {
        let mut builder = Self::new(endpoint.url().base());
        builder.endpoint = Some(endpoint);
        builder
    }

    /// The index (or single-index alias) holding the states. Default `connector_states`.
    pub fn with_index(mut self, index: impl Into<String>) -> Self {
        self.index = index.into();
        self
    }

    /// Authenticate with an API key: the `encoded` value Elasticsearch returns
    /// (base64 of `id:key`), sent as `Authorization: ApiKey <key>`. Default: none.
    /// Cannot be combined with credentials in the URL.
    pub fn with_api_key(mut self, encoded: impl Into<String>) -> Self {
        self.access.api_key = Some(Secret::new(encoded));
        self
    }

    /// Authenticate as `username` (basic authentication). Default: none, or the
    /// credentials written in the URL. Cannot be combined with those or an API key.
    pub fn with_basic_auth(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.access.username = Some(username.into());
        self.access.password = Some(Secret::new(password));
        self
    }

    /// Trust the CA certificates of this PEM file for `https://`, on top of the
    /// root set built in. Read by `build`; ignored with
    /// [`with_client`](Self::with_client) (that client's own trust applies).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.access.ca_file = Some(path.into());
        self
    }

    /// Time limit of each request, also applied to a client given with
    /// [`with_client`](Self::with_client). Default [`DEFAULT_TIMEOUT`] (30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time limit to open a connection. Default [`DEFAULT_CONNECT_TIMEOUT`] (10 s).
    /// Ignored with [`with_client`](Self::with_client): that client's own setting applies.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Use this HTTP client (custom TLS roots, proxy, shared connection pool).
    /// Default: a client built with [`with_connect_timeout`](Self::with_connect_timeout).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
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

    /// Validates, builds the client and (unless disabled) creates the index if
    /// it is missing. Fails with `Unavailable` when the server cannot be reached.
    pub async fn build(self) -> Result<EsStore> {
        let resolved = self.resolve()?;
        let client = match self.client {
            Some(client) => client,
            None => self
                .endpoint()?
                .configure_client(
                    reqwest::Client::builder()
                        .connect_timeout(self.connect_timeout)
                        .tcp_nodelay(true),
                )
                .map_err(|e| {
                    StateError::invalid_config(format!("state.storage_config.{}", e.key), e.reason)
                })?
                .build()
                .map_err(|e| {
                    StateError::backend(
                        "elasticsearch",
                        format!("cannot build the HTTP client: {e}"),
                    )
                })?,
        };
        let store = EsStore::new(client, resolved);
        if self.create_index {
            store.ensure_index().await?;
        }
        Ok(store)
    }

    /// The cluster: the one given whole, or the URL with the access keys.
    fn endpoint(&self) -> Result<Endpoint> {
        match &self.endpoint {
            Some(endpoint) => Ok(endpoint.clone()),
            None => {
                let url = HttpUrl::parse(self.url.trim())
                    .map_err(|e| StateError::invalid_config(URL_KEY, e))?;
                Endpoint::new(url, self.access.clone()).map_err(|e| {
                    StateError::invalid_config(format!("state.storage_config.{}", e.key), e.reason)
                })
            }
        }
    }

    pub(crate) fn resolve(&self) -> Result<Resolved> {
        let display = redact_url(self.url.trim());
        let key = |key: &str| format!("state.storage_config.{key}");
        let endpoint = self.endpoint()?;
        let index = checked_index(&self.index)?;
        for (name, value) in [
            ("timeout", self.timeout),
            ("connect timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(StateError::invalid_config(
                    URL_KEY,
                    format!("the {name} must be more than zero"),
                ));
            }
        }
        check_list_page_size(self.list_page_size)?;

        let header = endpoint
            .authorization()
            .map_err(|e| StateError::invalid_config(key(e.key), e.reason))?;
        let auth = match (endpoint.auth(), header) {
            (state_core::es_endpoint::Auth::Basic { username, .. }, Some(header)) => Auth::Basic {
                user: username.clone(),
                header,
            },
            (_, Some(header)) => Auth::ApiKey(header),
            (_, None) => Auth::None,
        };
        // Credentials travel only in the header: the URL reqwest sees (and may
        // print in its own errors) has none.
        let base = endpoint.url().base();
        Ok(Resolved {
            index_path: format!("{base}/{}", encode_segment(index.as_str())),
            display,
            index: index.as_str().to_owned(),
            auth,
            timeout: self.timeout,
            list_page_size: self.list_page_size,
        })
    }
}

/// The state index name, checked (both builders).
pub(crate) fn checked_index(index: &str) -> Result<IndexName> {
    IndexName::parse(index).map_err(|e| StateError::invalid_config("state.storage_config.index", e))
}

/// `list_page_size` within what one search may return (both builders).
pub(crate) fn check_list_page_size(size: usize) -> Result<()> {
    if size == 0 || size > 10_000 {
        return Err(StateError::invalid_config(
            "list_page_size",
            format!("{size} is out of range; give 1 to 10000"),
        ));
    }
    Ok(())
}

impl fmt::Debug for EsStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsStoreBuilder")
            .field("url", &redact_url(&self.url))
            .field("index", &self.index)
            .field("access", &self.access)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("custom_client", &self.client.is_some())
            .field("create_index", &self.create_index)
            .field("list_page_size", &self.list_page_size)
            .finish()
    }
}

/// How requests authenticate. The header values are marked sensitive.
#[derive(Clone)]
pub(crate) enum Auth {
    None,
    Basic { user: String, header: HeaderValue },
    ApiKey(HeaderValue),
}

impl Auth {
    pub(crate) fn header(&self) -> Option<&HeaderValue> {
        match self {
            Auth::None => None,
            Auth::Basic { header, .. } | Auth::ApiKey(header) => Some(header),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Basic { user, .. } => write!(f, "basic (user {user:?})"),
            Auth::ApiKey(_) => f.write_str("api key"),
        }
    }
}

/// Validated options.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// `scheme://host:port[/prefix]/<index>`, without credentials.
    pub index_path: String,
    /// The URL as given, password redacted: for messages.
    pub display: String,
    pub index: String,
    pub auth: Auth,
    pub timeout: Duration,
    pub list_page_size: usize,
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    fn resolve(b: EsStoreBuilder) -> Result<Resolved> {
        b.resolve()
    }

    #[test]
    fn strips_credentials_into_a_basic_header() {
        let r = resolve(EsStoreBuilder::new(
            "https://elastic:p%40ss@es.example:9200/prefix/",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.index_path,
            "https://es.example:9200/prefix/connector_states"
        );
        assert_eq!(r.display, "https://elastic:***@es.example:9200/prefix/");
        match &r.auth {
            Auth::Basic { user, header } => {
                assert_eq!(user, "elastic");
                assert_eq!(
                    header.to_str().ok(),
                    Some("Basic ZWxhc3RpYzpwQHNz") // elastic:p@ss
                );
                assert!(header.is_sensitive());
            }
            other => panic!("expected basic auth, got {other:?}"),
        }
        assert!(!format!("{r:?}").contains("p%40ss"));
    }

    #[test]
    fn api_key_header_and_no_auth() {
        let r = resolve(EsStoreBuilder::new("http://h:9200").with_api_key("abc=="))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.auth.header().and_then(|h| h.to_str().ok()),
            Some("ApiKey abc==")
        );
        assert_eq!(format!("{:?}", r.auth), "api key");
        let r = resolve(EsStoreBuilder::new("http://h:9200")).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.auth.header().is_none());
        assert_eq!(r.index_path, "http://h:9200/connector_states");
    }

    #[test]
    fn refuses_bad_options_without_showing_secrets() {
        let bad = [
            EsStoreBuilder::new("not a url"),
            EsStoreBuilder::new("ftp://u:hunter2@h:21"),
            EsStoreBuilder::new("http://u:hunter2@h:9200?x=1"),
            EsStoreBuilder::new("http://u:hunter2@h:9200").with_api_key("k"),
            EsStoreBuilder::new("http://u:hunter2@h:9200").with_index("Upper"),
            EsStoreBuilder::new("http://u:hunter2@h:9200").with_timeout(Duration::ZERO),
            EsStoreBuilder::new("http://u:hunter2@h:9200").with_list_page_size(0),
            EsStoreBuilder::new("http://h:9200").with_api_key("line\nbreak"),
        ];
        for b in bad {
            match b.validate() {
                Err(e @ StateError::InvalidConfig { .. }) => {
                    assert!(!e.to_string().contains("hunter2"), "{e}")
                }
                other => panic!("{b:?} gave {other:?}"),
            }
            assert!(!format!("{b:?}").contains("hunter2"));
        }
    }
}
