//! The connector configuration file: the documented `[plugin_config]` keys, in valid TOML.
//!
//! The documentation writes `query = { ... }` and `state = { ... }` as multi-line
//! inline tables, which TOML does not allow; write them as tables instead
//! (`[plugin_config.state]`) or as single-line inline tables. See `docs/configuration.md`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use state_core::{StateConfig, StorageSettings, humantime_duration, redact_url};

use crate::error::{ConnectorError, Result};

/// Default `polling_interval`.
pub const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_secs(30);
/// Default `batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 100;
/// Default `timestamp_field`.
pub const DEFAULT_TIMESTAMP_FIELD: &str = "@timestamp";
/// Largest accepted `batch_size` (Elasticsearch's default `index.max_result_window`).
pub const MAX_BATCH_SIZE: usize = 10_000;

/// A whole configuration file. The Iggy connectors runtime keys (`type`, `key`,
/// `enabled`, `version`, `name`, `path`, `[[streams]]`) are accepted so one file
/// serves both the runtime and `es-connector`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Runtime: `"source"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Runtime: `"elasticsearch"`.
    pub key: Option<String>,
    /// Runtime: whether the runtime loads this connector.
    pub enabled: Option<bool>,
    /// Runtime: config version.
    pub version: Option<u64>,
    /// Runtime: display name.
    pub name: Option<String>,
    /// Runtime: path of the plugin library.
    pub path: Option<String>,
    /// Runtime: where messages go.
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    /// The source's own settings.
    pub plugin_config: PluginConfig,
}

/// One `[[streams]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream name.
    pub stream: String,
    /// Topic name.
    pub topic: String,
    /// Payload schema, e.g. `json`.
    pub schema: Option<String>,
    /// Messages per batch sent.
    pub batch_length: Option<u64>,
    /// How long to wait to fill a batch, e.g. `"5ms"`.
    pub linger_time: Option<String>,
}

/// `[plugin_config]`: every documented key, with its default.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Cluster URL, e.g. `http://localhost:9200`. Required. May carry credentials; never printed.
    pub url: String,
    /// Index or pattern, e.g. `logs-*`. Required.
    pub index: String,
    /// Pause between polls once caught up. Default `30s`.
    #[serde(default = "default_polling_interval", with = "humantime_duration")]
    pub polling_interval: Duration,
    /// Documents per poll. Default 100, at most 10000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Field holding each document's time. Default `@timestamp`.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// The user's query: a TOML table or a JSON string. Default `match_all`.
    #[serde(default)]
    pub query: Option<QuerySpec>,
    /// State management; absent means no state is kept.
    #[serde(default)]
    pub state: Option<StateConfig>,
}

/// `query` as written: a TOML table, or a string of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuerySpec {
    /// `query = '{"match_all": {}}'`
    Json(String),
    /// `[plugin_config.query.match_all]` or an inline table.
    Table(serde_json::Map<String, Value>),
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginConfig")
            .field("url", &redact_url(&self.url))
            .field("index", &self.index)
            .field("polling_interval", &self.polling_interval)
            .field("batch_size", &self.batch_size)
            .field("timestamp_field", &self.timestamp_field)
            .field("query", &self.query)
            .field("state", &self.state)
            .finish()
    }
}

impl ConnectorConfig {
    /// Reads, parses and validates a TOML file. Errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ConnectorError::ConfigFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConnectorError::InvalidConfig { key, reason } => ConnectorError::InvalidConfig {
                key,
                reason: format!("{reason} (in {})", path.display()),
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: ConnectorConfig = toml::from_str(text).map_err(|e| {
            let field = e.message().split('`').nth(1);
            let table = e.span().map(|span| enclosing_table(text, span.start));
            let key = match (table, field) {
                (Some(table), Some(field)) if !table.is_empty() => format!("{table}.{field}"),
                (_, Some(field)) => field.to_owned(),
                _ => "config".into(),
            };
            ConnectorError::invalid(key, e.to_string().trim_end())
        })?;
        config.plugin_config.validate()?;
        Ok(config)
    }
}

impl PluginConfig {
    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ConnectorError::invalid(
                "plugin_config.url",
                format!(
                    "{} is not an http:// or https:// URL",
                    redact_url(&self.url)
                ),
            ));
        }
        if self.index.trim().is_empty() {
            return Err(ConnectorError::invalid(
                "plugin_config.index",
                "is empty; name an index or a pattern like logs-*",
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(ConnectorError::invalid(
                "plugin_config.batch_size",
                format!("{} is out of range: 1 to {MAX_BATCH_SIZE}", self.batch_size),
            ));
        }
        if self.timestamp_field.trim().is_empty() {
            return Err(ConnectorError::invalid(
                "plugin_config.timestamp_field",
                "is empty",
            ));
        }
        self.query_json()?;
        self.state_settings()?;
        Ok(())
    }

    /// The user's query as JSON (`match_all` when none is configured).
    pub fn query_json(&self) -> Result<Value> {
        match &self.query {
            None => Ok(serde_json::json!({"match_all": {}})),
            Some(QuerySpec::Table(map)) => Ok(Value::Object(map.clone())),
            Some(QuerySpec::Json(text)) => match serde_json::from_str::<Value>(text) {
                Ok(v @ Value::Object(_)) => Ok(v),
                Ok(_) => Err(ConnectorError::invalid(
                    "plugin_config.query",
                    "must be a JSON object like {\"match_all\": {}}",
                )),
                Err(e) => Err(ConnectorError::invalid(
                    "plugin_config.query",
                    format!("is not valid JSON: {e}"),
                )),
            },
        }
    }

    /// The state backend settings, when state is enabled.
    pub fn state_settings(&self) -> Result<Option<StorageSettings>> {
        match &self.state {
            Some(state) if state.enabled => match state.validate(Some(&self.url)) {
                Ok(settings) => Ok(Some(settings)),
                Err(state_core::StateError::InvalidConfig { key, reason }) => Err(
                    ConnectorError::invalid(format!("plugin_config.{key}"), reason),
                ),
                Err(e) => Err(e.into()),
            },
            _ => Ok(None),
        }
    }
}

/// The `[table.path]` header in force at byte `offset` of `text` ("" at top level).
fn enclosing_table(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('[') && !line.starts_with("[["))
        .map(|line| line.trim_matches(['[', ']']).trim().to_owned())
        .unwrap_or_default()
}

fn default_polling_interval() -> Duration {
    DEFAULT_POLLING_INTERVAL
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

fn default_timestamp_field() -> String {
    DEFAULT_TIMESTAMP_FIELD.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = include_str!("../../../docs/examples/elasticsearch-source.toml");

    fn err_key(text: &str) -> String {
        match ConnectorConfig::from_toml(text) {
            Err(ConnectorError::InvalidConfig { key, .. }) => key,
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    #[test]
    fn the_corrected_documentation_example_parses() {
        let cfg = ConnectorConfig::from_toml(DOCUMENTED).unwrap_or_else(|e| panic!("{e}"));
        let p = &cfg.plugin_config;
        assert_eq!(p.index, "logs-*");
        assert_eq!(p.polling_interval, Duration::from_secs(30));
        assert_eq!(
            p.query_json().ok(),
            Some(serde_json::json!({"match_all": {}}))
        );
        let state = p.state.as_ref().map(|s| s.auto_save_interval);
        assert_eq!(state, Some(Duration::from_secs(300)));
        assert_eq!(cfg.streams.len(), 1);
    }

    #[test]
    fn query_may_be_a_json_string() {
        let cfg = ConnectorConfig::from_toml(
            "[plugin_config]\nurl = \"http://h:9200\"\nindex = \"a\"\nquery = '{\"term\": {\"level\": \"error\"}}'\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.plugin_config.query_json().ok(),
            Some(serde_json::json!({"term": {"level": "error"}}))
        );
    }

    #[test]
    fn bad_configs_name_their_key() {
        let base = "[plugin_config]\nurl = \"http://h:9200\"\nindex = \"a\"\n";
        assert_eq!(
            err_key(&format!("{base}batch_sise = 5\n")),
            "plugin_config.batch_sise"
        );
        assert_eq!(
            err_key(&format!("{base}batch_size = 0\n")),
            "plugin_config.batch_size"
        );
        assert_eq!(
            err_key(&format!(
                "{base}[plugin_config.state.storage_config]\nbogus = 1\n"
            )),
            "plugin_config.state.storage_config.bogus"
        );
        assert_eq!(err_key(&format!("surprise = 1\n{base}")), "surprise");
        assert_eq!(
            err_key(&format!("{base}query = 'nope'\n")),
            "plugin_config.query"
        );
        assert_eq!(
            err_key(&format!(
                "{base}[plugin_config.state]\nstorage_type = \"redis\"\n[plugin_config.state.storage_config]\nbase_path = \"x\"\n"
            )),
            "plugin_config.state.storage_config.base_path"
        );
        assert_eq!(
            err_key("[plugin_config]\nurl = \"ftp://h\"\nindex = \"a\"\n"),
            "plugin_config.url"
        );
    }

    #[test]
    fn debug_hides_url_credentials() {
        let cfg = ConnectorConfig::from_toml(
            "[plugin_config]\nurl = \"https://elastic:hunter2@h:9200\"\nindex = \"a\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
