//! Turning `redis` errors into [`StateError`]s that name the endpoint (redacted)
//! and the key, and never carry the password.

use redis::{ErrorKind, RedisError, ServerErrorKind};
use state_core::StateError;

pub(crate) const BACKEND: &str = "redis";
/// The configuration key users set the URL under.
pub(crate) const URL_KEY: &str = "state.storage_config.url";

/// Where an error happened: the redacted URL, and the password to scrub from
/// any text that came back from the client library.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) redacted: String,
    secret: Option<String>,
}

impl Endpoint {
    pub(crate) fn new(url: &str) -> Self {
        Endpoint {
            redacted: state_core::redact_url(url),
            secret: password_of(url).filter(|p| !p.is_empty()),
        }
    }

    /// `text` with the password replaced by `***`, in case a library echoed it.
    pub(crate) fn scrub(&self, text: impl ToString) -> String {
        let text = text.to_string();
        match &self.secret {
            Some(secret) => text.replace(secret.as_str(), "***"),
            None => text,
        }
    }

    /// Maps `err` from doing `what` (e.g. "save") on `key` (when there is one).
    pub(crate) fn error(&self, err: RedisError, what: &str, key: Option<&str>) -> StateError {
        let url = &self.redacted;
        let on_key = key.map(|k| format!(" key `{k}`")).unwrap_or_default();
        let code = err.code().map(str::to_owned);
        let detail = self.scrub(&err);
        if err.kind() == ErrorKind::AuthenticationFailed
            || matches!(code.as_deref(), Some("WRONGPASS" | "NOAUTH"))
        {
            // Only the code: no text from the exchange that might echo credentials.
            return StateError::invalid_config(
                URL_KEY,
                format!(
                    "Redis at {url} refused the credentials ({}): check the password (and user \
                     name) in the URL",
                    code.as_deref().unwrap_or("authentication failed")
                ),
            );
        }
        if is_transient(&err) {
            return StateError::unavailable(
                BACKEND,
                format!(
                    "cannot {what}{on_key} at {url}: {detail}; is the Redis server running and reachable?"
                ),
            );
        }
        match code.as_deref() {
            Some("WRONGTYPE") | Some("NOTSTATE") => StateError::backend(
                BACKEND,
                format!(
                    "cannot {what}{on_key} at {url}: the key holds something that is not a state \
                     written by this store ({detail}); remove or rename that key, or choose another \
                     key_prefix"
                ),
            ),
            Some("NOPERM") => StateError::backend(
                BACKEND,
                format!(
                    "cannot {what}{on_key} at {url}: the Redis user lacks a permission ({detail}); \
                     it needs EVALSHA, SCRIPT LOAD, HMGET, DEL and SCAN on the key prefix"
                ),
            ),
            _ if err.kind() == ErrorKind::InvalidClientConfig => {
                StateError::invalid_config(URL_KEY, format!("{url}: {detail}"))
            }
            _ => StateError::backend(BACKEND, format!("cannot {what}{on_key} at {url}: {detail}")),
        }
    }
}

/// Errors that retrying later can fix: the network, a restarting or failing-over server.
fn is_transient(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || matches!(
            err.kind(),
            ErrorKind::Io
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::ReadOnly
                )
        )
}

/// The password of `scheme://user:password@host...`, percent-decoding left undone
/// (the raw form is what might be echoed).
fn password_of(url: &str) -> Option<String> {
    let after = &url[url.find("://")? + 3..];
    let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(match userinfo.split_once(':') {
        Some((_, password)) => password.to_owned(),
        // `redis://token@host`: the lone userinfo is the password.
        None => userinfo.to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_scrubs_the_password() {
        assert_eq!(
            password_of("redis://:s3cret@h:1/0").as_deref(),
            Some("s3cret")
        );
        assert_eq!(password_of("rediss://user:p@ss@h").as_deref(), Some("p@ss"));
        assert_eq!(password_of("redis://h:6379"), None);
        let e = Endpoint::new("redis://u:hunter2@h:1");
        assert_eq!(e.scrub("bad hunter2 here"), "bad *** here");
        assert_eq!(e.redacted, "redis://u:***@h:1");
    }

    #[test]
    fn refused_connections_are_retryable_and_name_the_endpoint() {
        let e = Endpoint::new("redis://:pw@127.0.0.1:1");
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = e.error(RedisError::from(io), "load", Some("p:x"));
        assert!(err.is_retryable(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("redis://:***@127.0.0.1:1") && msg.contains("p:x"),
            "{msg}"
        );
        assert!(!msg.contains("pw@"), "{msg}");
    }
}
