//! [`RedisStoreBuilder`]: the URL, key prefix, timeouts and TLS trust of a [`RedisStore`].

use std::fmt;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use state_core::{Result, StateError};

use crate::error::{Endpoint, URL_KEY};
use crate::store::RedisStore;

/// Default limit on establishing one TCP (and TLS) connection: 5 seconds.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit on waiting for one reply: 10 seconds (a 1 MiB state over a slow link fits).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of extra connection attempts, with exponential backoff from
/// 100 ms, when reconnecting: 3 (about 1.5 s at most before an operation
/// reports [`StateError::Unavailable`]; the next operation tries again).
/// [`RedisStoreBuilder::connect`] itself tries once and reports at once.
pub const DEFAULT_RECONNECT_RETRIES: usize = 3;

/// Configures and connects a [`RedisStore`]; start from [`RedisStore::builder`].
///
/// `Debug` shows the URL with its password redacted.
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    key_prefix: String,
    connection_timeout: Duration,
    response_timeout: Duration,
    reconnect_retries: usize,
    root_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &state_core::redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_retries", &self.reconnect_retries)
            .field(
                "root_ca_pem",
                &self
                    .root_ca_pem
                    .as_ref()
                    .map(|p| format!("{} bytes", p.len())),
            )
            .finish()
    }
}

impl RedisStoreBuilder {
    /// A builder for `url` (`redis://[user][:password@]host[:port][/db]`, or
    /// `rediss://` for TLS) with the key prefix [`state_core::DEFAULT_KEY_PREFIX`]
    /// and the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        RedisStoreBuilder {
            url: url.into(),
            key_prefix: state_core::DEFAULT_KEY_PREFIX.to_owned(),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            reconnect_retries: DEFAULT_RECONNECT_RETRIES,
            root_ca_pem: None,
        }
    }

    /// Prefix of every key; a state is stored under `key_prefix + id`. May be
    /// empty and may contain glob characters (`list` escapes them).
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Limit on establishing one connection; default [`DEFAULT_CONNECTION_TIMEOUT`].
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Limit on waiting for one reply; default [`DEFAULT_RESPONSE_TIMEOUT`].
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Extra connection attempts when reconnecting; default
    /// [`DEFAULT_RECONNECT_RETRIES`].
    pub fn with_reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// For `rediss://`: trust the CA certificate(s) in this PEM text instead of
    /// the system's roots (a private CA, a test server). Needs the `tls` feature.
    pub fn with_root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_ca_pem = Some(pem.into());
        self
    }

    /// Connects, checking the server answers (and accepts the credentials)
    /// before returning.
    ///
    /// # Errors
    /// - [`StateError::InvalidConfig`] (key `state.storage_config.url`): not a
    ///   `redis://`/`rediss://` URL, `rediss://` without the `tls` feature, a
    ///   bad CA certificate, or the server refused the password.
    /// - [`StateError::Unavailable`]: the server cannot be reached (refused,
    ///   timed out, TLS handshake failed); retrying later can succeed.
    pub async fn connect(self) -> Result<RedisStore> {
        let endpoint = Endpoint::new(&self.url);
        let client = self.client(&endpoint)?;
        // One plain attempt first: a refused connection or a wrong password is
        // reported at once and exactly, instead of after the manager's retries.
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&probe_config)
            .await
            .map_err(|e| endpoint.error(e, "connect", None))?;
        // Without a password the connection succeeds; PING shows `NOAUTH` now, not at the first save.
        redis::cmd("PING")
            .query_async::<()>(&mut probe)
            .await
            .map_err(|e| endpoint.error(e, "connect", None))?;
        drop(probe);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_retries)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| endpoint.error(e, "connect", None))?;
        tracing::debug!(url = %endpoint.redacted, key_prefix = %self.key_prefix, "connected to redis");
        Ok(RedisStore::from_parts(manager, self.key_prefix, endpoint))
    }

    fn client(&self, endpoint: &Endpoint) -> Result<redis::Client> {
        let tls = self.url.starts_with("rediss://");
        if !tls && !self.url.starts_with("redis://") {
            return Err(StateError::invalid_config(
                URL_KEY,
                format!(
                    "{} is not a Redis URL; write redis://[:password@]host[:port][/db] or rediss:// for TLS",
                    endpoint.redacted
                ),
            ));
        }
        if tls {
            return tls_client(&self.url, self.root_ca_pem.as_deref(), endpoint);
        }
        redis::Client::open(self.url.as_str()).map_err(|e| invalid_url(endpoint, e))
    }
}

fn invalid_url(endpoint: &Endpoint, err: redis::RedisError) -> StateError {
    StateError::invalid_config(
        URL_KEY,
        format!("{}: {}", endpoint.redacted, endpoint.scrub(err)),
    )
}

#[cfg(feature = "tls")]
fn tls_client(url: &str, root_ca_pem: Option<&[u8]>, endpoint: &Endpoint) -> Result<redis::Client> {
    // The redis crate builds rustls configs with the process-wide provider;
    // install ring's unless the application chose one already.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    match root_ca_pem {
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => redis::Client::open(url),
    }
    .map_err(|e| invalid_url(endpoint, e))
}

#[cfg(not(feature = "tls"))]
fn tls_client(
    _url: &str,
    _root_ca_pem: Option<&[u8]>,
    endpoint: &Endpoint,
) -> Result<redis::Client> {
    Err(StateError::invalid_config(
        URL_KEY,
        format!(
            "{} is a rediss:// (TLS) URL, but state-redis was built without its `tls` feature",
            endpoint.redacted
        ),
    ))
}
