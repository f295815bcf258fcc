//! The `state = { ... }` block of the connector configuration.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::id::StateId;
use es_endpoint::{Access, Endpoint, HttpUrl, IndexName, Secret, redact_url};

/// Default `state_id`.
pub const DEFAULT_STATE_ID: &str = "elasticsearch_source";
/// Default `auto_save_interval`.
pub const DEFAULT_AUTO_SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default `storage_config.base_path` of the file backend.
pub const DEFAULT_BASE_PATH: &str = "./connector_states";
/// Default `storage_config.path` of the sled backend.
pub const DEFAULT_SLED_PATH: &str = "./connector_states.sled";
/// Default `storage_config.url` of the redis backend.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default `storage_config.key_prefix` of the redis backend.
pub const DEFAULT_KEY_PREFIX: &str = "connector_states:";
/// Default `storage_config.index` of the elasticsearch backend.
pub const DEFAULT_STATE_INDEX: &str = "connector_states";

/// Fields of `data` that `tracked_fields` may name.
pub const TRACKABLE_FIELDS: &[&str] = &[
    "last_poll_timestamp",
    "total_documents_fetched",
    "poll_count",
    "last_document_id",
    "last_scroll_id",
    "last_offset",
    "error_count",
    "last_error",
    "processing_stats",
];

/// The documented `state` block. Every field has a default; see `docs/configuration.md`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Persist state at all. Default `true` once a `state` block is written.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Which backend. Default `file`.
    #[serde(default)]
    pub storage_type: StorageType,
    /// Backend settings; only the keys of the chosen backend are accepted.
    #[serde(default)]
    pub storage_config: StorageConfig,
    /// The id the state is stored under. Default `elasticsearch_source`.
    #[serde(default = "default_state_id")]
    pub state_id: String,
    /// How often a changed state is saved in the background (`"30s"`, `"5m"`);
    /// `"0s"` saves only when asked and on close. Default `30s`.
    #[serde(default = "default_interval", with = "humantime_duration")]
    pub auto_save_interval: Duration,
    /// `data` fields whose change marks the state for auto-save. Empty (the
    /// default) means every field. Untracked fields are still saved, with the next save.
    #[serde(default)]
    pub tracked_fields: Vec<String>,
}

/// The documented storage types, plus `sled` (an embedded database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// One JSON file per state (default).
    #[default]
    File,
    /// An embedded sled database.
    Sled,
    /// Redis.
    Redis,
    /// An Elasticsearch or OpenSearch index.
    Elasticsearch,
}

impl StorageType {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageType::File => "file",
            StorageType::Sled => "sled",
            StorageType::Redis => "redis",
            StorageType::Elasticsearch => "elasticsearch",
        }
    }
}

impl fmt::Display for StorageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `storage_config`: the union of every backend's keys.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// file: directory of the state files. Default `./connector_states`.
    pub base_path: Option<PathBuf>,
    /// sled: database directory. Default `./connector_states.sled`.
    pub path: Option<PathBuf>,
    /// elasticsearch: index. Default `connector_states`.
    pub index: Option<String>,
    /// redis (default `redis://127.0.0.1:6379`) or elasticsearch (default: the
    /// connector's own `url`) endpoint. May carry credentials; never printed.
    pub url: Option<String>,
    /// redis: prefix of every key. Default `connector_states:`.
    pub key_prefix: Option<String>,
    /// elasticsearch: API key (the base64 `id:key` form). Never printed.
    pub api_key: Option<String>,
    /// elasticsearch: basic authentication user.
    pub username: Option<String>,
    /// elasticsearch: basic authentication password. Never printed.
    pub password: Option<String>,
    /// elasticsearch: PEM file of CA certificates to trust for `https://`.
    pub ca_file: Option<PathBuf>,
}

/// `***` for a secret that is set.
fn hidden(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| "***")
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("base_path", &self.base_path)
            .field("path", &self.path)
            .field("index", &self.index)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("key_prefix", &self.key_prefix)
            .field("api_key", &hidden(&self.api_key))
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl fmt::Debug for StateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateConfig")
            .field("enabled", &self.enabled)
            .field("storage_type", &self.storage_type)
            .field("storage_config", &self.storage_config)
            .field("state_id", &self.state_id)
            .field("auto_save_interval", &self.auto_save_interval)
            .field("tracked_fields", &self.tracked_fields)
            .finish()
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            enabled: true,
            storage_type: StorageType::default(),
            storage_config: StorageConfig::default(),
            state_id: default_state_id(),
            auto_save_interval: DEFAULT_AUTO_SAVE_INTERVAL,
            tracked_fields: Vec::new(),
        }
    }
}

/// The checked, defaulted settings of one backend: what a backend constructor needs.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageSettings {
    /// `storage_type = "file"`.
    File {
        /// Directory of the state files.
        base_path: PathBuf,
    },
    /// `storage_type = "sled"`.
    Sled {
        /// Database directory.
        path: PathBuf,
    },
    /// `storage_type = "redis"`.
    Redis {
        /// `redis://` or `rediss://` URL.
        url: String,
        /// Prefix of every key.
        key_prefix: String,
    },
    /// `storage_type = "elasticsearch"`.
    Elasticsearch {
        /// The cluster, its credentials and CA file.
        endpoint: Endpoint,
        /// Index holding the states.
        index: IndexName,
    },
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageSettings::File { base_path } => f
                .debug_struct("File")
                .field("base_path", base_path)
                .finish(),
            StorageSettings::Sled { path } => f.debug_struct("Sled").field("path", path).finish(),
            StorageSettings::Redis { url, key_prefix } => f
                .debug_struct("Redis")
                .field("url", &redact_url(url))
                .field("key_prefix", key_prefix)
                .finish(),
            StorageSettings::Elasticsearch { endpoint, index } => f
                .debug_struct("Elasticsearch")
                .field("endpoint", endpoint)
                .field("index", index)
                .finish(),
        }
    }
}

impl StateConfig {
    /// Checks every key and resolves the backend's settings.
    ///
    /// `source` is the connector's own cluster. The elasticsearch backend
    /// inherits it when `storage_config.url` is not given: its URL, and its
    /// credentials unless `storage_config` gives its own. A state cluster of its
    /// own (`url` set) never receives the source's credentials; it inherits only
    /// the source's `ca_file`, unless it names one.
    pub fn validate(&self, source: Option<&Endpoint>) -> Result<StorageSettings> {
        StateId::new(self.state_id.as_str()).map_err(|e| match e {
            StateError::InvalidConfig { reason, .. } => {
                StateError::invalid_config("state.state_id", reason)
            }
            other => other,
        })?;
        for field in &self.tracked_fields {
            if !TRACKABLE_FIELDS.contains(&field.as_str()) {
                return Err(StateError::invalid_config(
                    "state.tracked_fields",
                    format!(
                        "{field:?} is not a state field; choose from {}",
                        TRACKABLE_FIELDS.join(", ")
                    ),
                ));
            }
        }
        self.storage_config.resolve(self.storage_type, source)
    }
}

impl StorageConfig {
    fn resolve(&self, kind: StorageType, source: Option<&Endpoint>) -> Result<StorageSettings> {
        let allowed: &[&str] = match kind {
            StorageType::File => &["base_path"],
            StorageType::Sled => &["path"],
            StorageType::Redis => &["url", "key_prefix"],
            StorageType::Elasticsearch => {
                &["url", "index", "api_key", "username", "password", "ca_file"]
            }
        };
        let given = [
            ("base_path", self.base_path.is_some()),
            ("path", self.path.is_some()),
            ("index", self.index.is_some()),
            ("url", self.url.is_some()),
            ("key_prefix", self.key_prefix.is_some()),
            ("api_key", self.api_key.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("ca_file", self.ca_file.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            return Err(StateError::invalid_config(
                format!("state.storage_config.{key}"),
                format!(
                    "is not used by storage_type = \"{kind}\" (it takes: {}); remove it or change storage_type",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(match kind {
            StorageType::File => StorageSettings::File {
                base_path: non_empty_path(&self.base_path, "base_path", DEFAULT_BASE_PATH)?,
            },
            StorageType::Sled => StorageSettings::Sled {
                path: non_empty_path(&self.path, "path", DEFAULT_SLED_PATH)?,
            },
            StorageType::Redis => {
                let url = self.url.clone().unwrap_or_else(|| DEFAULT_REDIS_URL.into());
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(StateError::invalid_config(
                        "state.storage_config.url",
                        format!(
                            "{} is not a Redis URL; write redis://[:password@]host[:port][/db] or rediss:// for TLS",
                            redact_url(&url)
                        ),
                    ));
                }
                StorageSettings::Redis {
                    url,
                    key_prefix: self
                        .key_prefix
                        .clone()
                        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.into()),
                }
            }
            StorageType::Elasticsearch => {
                let endpoint = self.elasticsearch_endpoint(source)?;
                let index = IndexName::parse(self.index.as_deref().unwrap_or(DEFAULT_STATE_INDEX))
                    .map_err(|e| StateError::invalid_config("state.storage_config.index", e))?;
                StorageSettings::Elasticsearch { endpoint, index }
            }
        })
    }
}

impl StorageConfig {
    fn elasticsearch_endpoint(&self, source: Option<&Endpoint>) -> Result<Endpoint> {
        let key = |key: &str| format!("state.storage_config.{key}");
        let access = Access {
            api_key: self.api_key.clone().map(Secret::new),
            username: self.username.clone(),
            password: self.password.clone().map(Secret::new),
            ca_file: self.ca_file.clone(),
        };
        let url = match (&self.url, source) {
            (Some(url), _) => {
                HttpUrl::parse(url).map_err(|e| StateError::invalid_config(key("url"), e))?
            }
            // The source's cluster, with credentials of the state's own.
            (None, Some(source)) if access.has_credentials() => HttpUrl::parse(source.url().base())
                .map_err(|e| StateError::invalid_config(key("url"), e))?,
            (None, Some(source)) => {
                return Ok(match access.ca_file {
                    Some(ca_file) => source.clone().with_ca_file(ca_file),
                    None => source.clone(),
                });
            }
            (None, None) => {
                return Err(StateError::invalid_config(
                    key("url"),
                    "is required for storage_type = \"elasticsearch\" (e.g. \"http://localhost:9200\")",
                ));
            }
        };
        let endpoint = Endpoint::new(url, access)
            .map_err(|e| StateError::invalid_config(key(e.key), e.reason))?;
        Ok(endpoint.or_ca_file(source.and_then(Endpoint::ca_file)))
    }
}

fn non_empty_path(value: &Option<PathBuf>, key: &str, default: &str) -> Result<PathBuf> {
    match value {
        Some(p) if p.as_os_str().is_empty() => Err(StateError::invalid_config(
            format!("state.storage_config.{key}"),
            "is empty; give a directory path",
        )),
        Some(p) => Ok(p.clone()),
        None => Ok(PathBuf::from(default)),
    }
}

fn default_true() -> bool {
    true
}

fn default_state_id() -> String {
    DEFAULT_STATE_ID.into()
}

fn default_interval() -> Duration {
    DEFAULT_AUTO_SAVE_INTERVAL
}

/// Serde for durations written as humantime strings ("30s", "5m", "1h 30m").
pub mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes `90s` as `"1m 30s"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads `"30s"`, `"5m"`, `"1h 30m"`, `"250ms"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            D::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. \"30s\", \"5m\" or \"1h 30m\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use es_endpoint::Auth;

    fn parse(json: &str) -> std::result::Result<StateConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn documented_blocks_parse_with_defaults() {
        let cfg = parse(
            r#"{"enabled": true, "storage_type": "file",
                "storage_config": {"base_path": "./connector_states"},
                "state_id": "elasticsearch_logs_connector", "auto_save_interval": "5m",
                "tracked_fields": ["last_poll_timestamp", "last_document_id", "total_documents_fetched"]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.auto_save_interval, Duration::from_secs(300));
        assert_eq!(
            cfg.validate(None).ok(),
            Some(StorageSettings::File {
                base_path: "./connector_states".into()
            })
        );
        let redis = parse(r#"{"storage_type": "redis", "storage_config": {"url": "redis://localhost:6379", "key_prefix": "connector_states:"}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(redis.enabled);
        assert!(matches!(
            redis.validate(None),
            Ok(StorageSettings::Redis { .. })
        ));
        let es = parse(
            r#"{"storage_type": "elasticsearch", "storage_config": {"index": "connector_states"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cluster =
            Endpoint::from_url(HttpUrl::parse("http://es:9200").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            es.validate(Some(&cluster)).ok(),
            Some(StorageSettings::Elasticsearch {
                endpoint: cluster.clone(),
                index: IndexName::parse("connector_states").unwrap_or_else(|e| panic!("{e}")),
            })
        );
    }

    #[test]
    fn unknown_and_misplaced_keys_are_named() {
        let err = parse(r#"{"storage_typ": "file"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("storage_typ"), "{err}");
        let err = parse(r#"{"storage_config": {"basepath": "x"}}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("basepath"), "{err}");
        let misplaced = parse(r#"{"storage_type": "redis", "storage_config": {"base_path": "x"}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        match misplaced.validate(None) {
            Err(StateError::InvalidConfig { key, .. }) => {
                assert_eq!(key, "state.storage_config.base_path")
            }
            other => panic!("{other:?}"),
        }
        let err = parse(r#"{"auto_save_interval": "soon"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("soon"), "{err}");
        let err = parse(r#"{"storage_type": "s3"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("s3"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let cases = [
            (r#"{"state_id": "../x"}"#, "state.state_id"),
            (r#"{"tracked_fields": ["nope"]}"#, "state.tracked_fields"),
            (
                r#"{"storage_type": "redis", "storage_config": {"url": "http://x"}}"#,
                "state.storage_config.url",
            ),
            (
                r#"{"storage_type": "elasticsearch"}"#,
                "state.storage_config.url",
            ),
            (
                r#"{"storage_type": "elasticsearch", "storage_config": {"url": "http://x", "index": "Bad Index"}}"#,
                "state.storage_config.index",
            ),
            (
                r#"{"storage_config": {"base_path": ""}}"#,
                "state.storage_config.base_path",
            ),
            (
                r#"{"storage_type": "redis", "storage_config": {"api_key": "k"}}"#,
                "state.storage_config.api_key",
            ),
            (
                r#"{"storage_type": "elasticsearch", "storage_config": {"url": "http://u:p@x", "api_key": "k"}}"#,
                "state.storage_config.api_key",
            ),
            (
                r#"{"storage_type": "elasticsearch", "storage_config": {"url": "http://x", "password": "p"}}"#,
                "state.storage_config.password",
            ),
            (
                r#"{"storage_type": "elasticsearch", "storage_config": {"url": "http://x", "ca_file": ""}}"#,
                "state.storage_config.ca_file",
            ),
        ];
        for (json, want) in cases {
            let cfg = parse(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            match cfg.validate(None) {
                Err(StateError::InvalidConfig { key, .. }) => assert_eq!(key, want, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    fn es_endpoint(storage_config: &str, source: &Endpoint) -> Endpoint {
        let json =
            format!(r#"{{"storage_type": "elasticsearch", "storage_config": {storage_config}}}"#);
        let config = parse(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        match config.validate(Some(source)) {
            Ok(StorageSettings::Elasticsearch { endpoint, .. }) => endpoint,
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn the_state_cluster_inherits_the_sources_access_unless_set() {
        let source = Endpoint::new(
            HttpUrl::parse("https://es:9200").unwrap_or_else(|e| panic!("{e}")),
            Access {
                api_key: Some(Secret::new("c291cmNl")),
                ca_file: Some("source-ca.pem".into()),
                ..Access::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let header = |e: &Endpoint| e.auth().header_value().map(|h| h.expose().to_owned());
        // Nothing set: the source's cluster, key and CA.
        assert_eq!(es_endpoint("{}", &source), source);
        // Own credentials on the source's cluster: the source's CA, its own key.
        let own_key = es_endpoint(r#"{"api_key": "c3RhdGU="}"#, &source);
        assert_eq!(own_key.url().base(), "https://es:9200");
        assert_eq!(header(&own_key).as_deref(), Some("ApiKey c3RhdGU="));
        assert_eq!(own_key.ca_file(), source.ca_file());
        let own_user = es_endpoint(r#"{"username": "u", "password": "p"}"#, &source);
        assert_eq!(header(&own_user).as_deref(), Some("Basic dTpw"));
        // Own CA only: the source's credentials still.
        let own_ca = es_endpoint(r#"{"ca_file": "state-ca.pem"}"#, &source);
        assert_eq!(header(&own_ca), header(&source));
        assert_eq!(own_ca.ca_file(), Some(std::path::Path::new("state-ca.pem")));
        // A cluster of its own: never the source's credentials, the source's CA.
        let other = es_endpoint(r#"{"url": "https://states:9200"}"#, &source);
        assert_eq!(
            (other.auth(), other.ca_file()),
            (&Auth::None, source.ca_file())
        );
        let other_user = es_endpoint(r#"{"url": "https://s:p@states:9200"}"#, &source);
        assert_eq!(header(&other_user).as_deref(), Some("Basic czpw"));
    }

    #[test]
    fn debug_never_shows_passwords() {
        let cfg = parse(
            r#"{"storage_type": "redis", "storage_config": {"url": "redis://:hunter2@h:6379"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{cfg:?} {:?}", cfg.validate(None));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://:***@h:6379"), "{shown}");
        let es = parse(
            r#"{"storage_type": "elasticsearch", "storage_config": {"url": "https://h", "username": "u", "password": "hunter2"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{es:?} {:?}", es.validate(None));
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
        let key = parse(
            r#"{"storage_type": "elasticsearch", "storage_config": {"url": "https://h", "api_key": "hunter3"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{key:?} {:?}", key.validate(None));
        assert!(!shown.contains("hunter3"), "{shown}");
    }
}
