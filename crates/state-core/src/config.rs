//! The `state = { ... }` block of the connector configuration.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::id::StateId;
use es_endpoint::{HttpUrl, IndexName, redact_url};

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
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("base_path", &self.base_path)
            .field("path", &self.path)
            .field("index", &self.index)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("key_prefix", &self.key_prefix)
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
        /// Cluster URL; credentials written in it are split out.
        url: HttpUrl,
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
            StorageSettings::Elasticsearch { url, index } => f
                .debug_struct("Elasticsearch")
                .field("url", url)
                .field("index", index)
                .finish(),
        }
    }
}

impl StateConfig {
    /// Checks every key and resolves the backend's settings.
    ///
    /// `fallback_es_url` is the connector's own cluster URL, used by the
    /// elasticsearch backend when `storage_config.url` is not given.
    pub fn validate(&self, fallback_es_url: Option<&HttpUrl>) -> Result<StorageSettings> {
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
        self.storage_config
            .resolve(self.storage_type, fallback_es_url)
    }
}

impl StorageConfig {
    fn resolve(
        &self,
        kind: StorageType,
        fallback_es_url: Option<&HttpUrl>,
    ) -> Result<StorageSettings> {
        let allowed: &[&str] = match kind {
            StorageType::File => &["base_path"],
            StorageType::Sled => &["path"],
            StorageType::Redis => &["url", "key_prefix"],
            StorageType::Elasticsearch => &["url", "index"],
        };
        let given = [
            ("base_path", self.base_path.is_some()),
            ("path", self.path.is_some()),
            ("index", self.index.is_some()),
            ("url", self.url.is_some()),
            ("key_prefix", self.key_prefix.is_some()),
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
                let url = match (&self.url, fallback_es_url) {
                    (Some(url), _) => HttpUrl::parse(url)
                        .map_err(|e| StateError::invalid_config("state.storage_config.url", e))?,
                    (None, Some(url)) => url.clone(),
                    (None, None) => {
                        return Err(StateError::invalid_config(
                            "state.storage_config.url",
                            "is required for storage_type = \"elasticsearch\" (e.g. \"http://localhost:9200\")",
                        ));
                    }
                };
                let index = IndexName::parse(self.index.as_deref().unwrap_or(DEFAULT_STATE_INDEX))
                    .map_err(|e| StateError::invalid_config("state.storage_config.index", e))?;
                StorageSettings::Elasticsearch { url, index }
            }
        })
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
        let cluster = HttpUrl::parse("http://es:9200").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            es.validate(Some(&cluster)).ok(),
            Some(StorageSettings::Elasticsearch {
                url: cluster.clone(),
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
        ];
        for (json, want) in cases {
            let cfg = parse(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            match cfg.validate(None) {
                Err(StateError::InvalidConfig { key, .. }) => assert_eq!(key, want, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
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
    }
}
