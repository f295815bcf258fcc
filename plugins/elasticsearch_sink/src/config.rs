//! `[plugin_config]` of the sink.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use connector::Secret;
use connector::config::{Access, Endpoint, HttpUrl};
use serde::Deserialize;
use state_core::{humantime_duration, redact_url};

/// Default `workers`.
pub const DEFAULT_WORKERS: usize = 1;
/// Default `bulk_actions`.
pub const DEFAULT_BULK_ACTIONS: usize = bulk::DEFAULT_BULK_ACTIONS;
/// Default `request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `max_retry_delay`.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Most concurrent `_bulk` calls.
pub const MAX_WORKERS: usize = 64;

/// The sink's settings. Unknown keys are refused.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Cluster URL, e.g. `http://localhost:9200`. Required. May carry credentials
    /// (`https://user:password@host:9200`); never printed.
    pub url: String,
    /// The index every document goes to. Required.
    pub index: String,
    /// API key (`Authorization: ApiKey ...`), the base64 `id:key` form. Default none; never printed.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Basic authentication user (or `user:password@` in `url`, not both). Default none.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password. Default none; never printed.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file of CA certificates to trust for `https://`, on top of the root
    /// set built in. Default none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Concurrent `_bulk` calls. Default 1.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Lower the concurrent `_bulk` calls when Elasticsearch answers 429, and
    /// raise them again up to `workers` as it recovers. Default off.
    #[serde(default)]
    pub adaptive_concurrency: bool,
    /// Documents per `_bulk` call at most. Default 1000.
    #[serde(default = "default_bulk_actions")]
    pub bulk_actions: usize,
    /// Time limit of one `_bulk` call. Default `30s`.
    #[serde(default = "default_request_timeout", with = "humantime_duration")]
    pub request_timeout: Duration,
    /// While Elasticsearch is unavailable (or refuses requests as a whole), a
    /// consume call holds its batch and sends it again: this is the longest pause
    /// between two attempts, and how long the bulk processor retries on its own
    /// before the call starts over. Default `30s`.
    #[serde(default = "default_max_retry_delay", with = "humantime_duration")]
    pub max_retry_delay: Duration,
    /// A JSON-lines file where documents that failed for good are appended (and
    /// fsynced) before the consume call succeeds. Default none: such a document
    /// fails the consume call.
    #[serde(default)]
    pub dead_letter_path: Option<PathBuf>,
}

fn default_workers() -> usize {
    DEFAULT_WORKERS
}

fn default_bulk_actions() -> usize {
    DEFAULT_BULK_ACTIONS
}

fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}

fn default_max_retry_delay() -> Duration {
    DEFAULT_MAX_RETRY_DELAY
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("url", &redact_url(&self.url))
            .field("index", &self.index)
            .field("api_key", &self.api_key)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .field("workers", &self.workers)
            .field("adaptive_concurrency", &self.adaptive_concurrency)
            .field("bulk_actions", &self.bulk_actions)
            .field("request_timeout", &self.request_timeout)
            .field("max_retry_delay", &self.max_retry_delay)
            .field("dead_letter_path", &self.dead_letter_path)
            .finish()
    }
}

impl SinkConfig {
    /// Parses the runtime's `plugin_config` (JSON) and checks every value; errors
    /// name the key.
    pub fn from_json(value: serde_json::Value) -> Result<Self, String> {
        let config: SinkConfig =
            serde_json::from_value(value).map_err(|e| format!("invalid plugin_config: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// `url` and the access keys resolved into one cluster; errors name the key.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let url =
            HttpUrl::parse(&self.url).map_err(|e| format!("invalid `plugin_config.url`: {e}"))?;
        let access = Access {
            api_key: self.api_key.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            ca_file: self.ca_file.clone(),
        };
        Endpoint::new(url, access)
            .map_err(|e| format!("invalid `plugin_config.{}`: {}", e.key, e.reason))
    }

    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        self.endpoint()?;
        if self.index.trim().is_empty() {
            return Err("invalid `plugin_config.index`: is empty; name the target index".into());
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return Err(format!(
                "invalid `plugin_config.workers`: {} is out of range: 1 to {MAX_WORKERS}",
                self.workers
            ));
        }
        if self.adaptive_concurrency && self.workers < 2 {
            return Err(format!(
                "invalid `plugin_config.adaptive_concurrency`: has nothing to adapt with \
                 workers = {}: set `workers` to the most concurrent `_bulk` calls the cluster \
                 may get (at least 2)",
                self.workers
            ));
        }
        if self.bulk_actions == 0 {
            return Err("invalid `plugin_config.bulk_actions`: must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return Err("invalid `plugin_config.request_timeout`: must be more than 0s".into());
        }
        if self.max_retry_delay.is_zero() {
            return Err("invalid `plugin_config.max_retry_delay`: must be more than 0s".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn adaptive_concurrency_needs_room_to_adapt() {
        let config = |workers: u64| {
            SinkConfig::from_json(json!({"url": "http://localhost:9200", "index": "copy",
                "workers": workers, "adaptive_concurrency": true}))
        };
        let refused = config(1).map(|_| ()).unwrap_err();
        assert!(
            refused.contains("`plugin_config.adaptive_concurrency`")
                && refused.contains("workers = 1"),
            "{refused}"
        );
        let taken = config(4).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(taken.adaptive_concurrency);
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = SinkConfig::from_json(json!({"url": "http://localhost:9200", "index": "copy"}))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.workers, 1);
        assert_eq!(c.bulk_actions, 1000);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.max_retry_delay, Duration::from_secs(30));
        assert_eq!(c.dead_letter_path, None);
        assert!(c.api_key.is_none());
    }

    #[test]
    fn every_key_is_read() {
        let c = SinkConfig::from_json(json!({
            "url": "https://es:9200", "index": "copy", "api_key": "aWQ6a2V5",
            "workers": 4, "bulk_actions": 200, "request_timeout": "5s",
            "max_retry_delay": "2m", "dead_letter_path": "/var/lib/iggy/es-dead-letters.jsonl"
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((c.workers, c.bulk_actions), (4, 200));
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.max_retry_delay, Duration::from_secs(120));
        assert_eq!(
            c.dead_letter_path.as_deref(),
            Some(std::path::Path::new("/var/lib/iggy/es-dead-letters.jsonl"))
        );
    }

    #[test]
    fn errors_name_the_key() {
        let unknown =
            SinkConfig::from_json(json!({"url": "http://h", "index": "i", "bulk_size": 5}));
        assert!(
            unknown.as_ref().is_err_and(|e| e.contains("bulk_size")),
            "{unknown:?}"
        );
        let workers = SinkConfig::from_json(json!({"url": "http://h", "index": "i", "workers": 0}));
        assert!(
            workers
                .as_ref()
                .is_err_and(|e| e.contains("plugin_config.workers")),
            "{workers:?}"
        );
        let url = SinkConfig::from_json(json!({"url": "h:9200", "index": "i"}));
        assert!(
            url.as_ref().is_err_and(|e| e.contains("plugin_config.url")),
            "{url:?}"
        );
        let missing = SinkConfig::from_json(json!({"url": "http://h"}));
        assert!(
            missing.as_ref().is_err_and(|e| e.contains("index")),
            "{missing:?}"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        for config in [
            json!({"url": "https://elastic:hunter2@es:9200", "index": "i"}),
            json!({"url": "https://es:9200", "index": "i", "api_key": "c2VjcmV0"}),
            json!({"url": "https://es:9200", "index": "i", "username": "u", "password": "hunter2"}),
        ] {
            let c = SinkConfig::from_json(config).unwrap_or_else(|e| unreachable!("{e}"));
            let shown = format!("{c:?} {:?}", c.endpoint());
            assert!(
                !shown.contains("hunter2") && !shown.contains("c2VjcmV0"),
                "{shown}"
            );
        }
    }

    #[test]
    fn ambiguous_credentials_are_refused_naming_the_key() {
        for (config, key) in [
            (
                json!({"url": "https://elastic:hunter2@es:9200", "index": "i", "api_key": "k"}),
                "plugin_config.api_key",
            ),
            (
                json!({"url": "https://es:9200", "index": "i", "password": "p"}),
                "plugin_config.password",
            ),
        ] {
            let e = SinkConfig::from_json(config).map(|_| ()).unwrap_err();
            assert!(e.contains(key) && !e.contains("hunter2"), "{e}");
        }
    }
}
