//! The connector configuration file: the documented `[plugin_config]` keys, in TOML.
//!
//! The documentation writes `query = { ... }` and `state = { ... }` as multi-line
//! inline tables without commas, which TOML does not allow. Text that is not
//! TOML but is that dialect is rewritten into TOML ([`dialect`]) with one warning
//! showing the TOML understood; `es-connector config fmt` rewrites the file. See
//! `docs/configuration.md`.

pub mod dialect;
#[cfg(feature = "iggy")]
mod iggy;
mod output;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use es_query::{MissingTimestamp, Slice, TimestampKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use state_core::{StateConfig, StorageSettings, humantime_duration};

use crate::error::{ConnectorError, Result};

pub use es_endpoint::{Access, Auth, Endpoint, HttpUrl, IndexName, Secret};
#[cfg(feature = "iggy")]
pub use iggy::{
    DEFAULT_IGGY_ADDRESS, DEFAULT_IGGY_BATCH_LENGTH, DEFAULT_IGGY_CONSUMER,
    DEFAULT_IGGY_PARTITIONS, IggyConnection, IggyInputConfig, IggyInputOptions, IggyOutputConfig,
    IggyOutputOptions, IggyPartitioning, IggyTarget, IggyTransport,
};
pub use output::{DEFAULT_OUTPUT_WORKERS, OutputConfig};

/// Default `polling_interval`.
pub const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_secs(30);
/// Default `batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 100;
/// Default `timestamp_field`.
pub const DEFAULT_TIMESTAMP_FIELD: &str = "@timestamp";
/// Largest accepted `batch_size` (Elasticsearch's default `index.max_result_window`).
pub const MAX_BATCH_SIZE: usize = 10_000;
/// Most concurrent sliced readers (`slices`) of one source.
pub const MAX_SLICES: u32 = 64;
/// Default `request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `max_response_bytes`: 256 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;
/// Default `settle`: measured on this project's test machine with the default
/// 1 s refresh, a document indexed with its timestamp = now was searchable after
/// at most 1.3 s on Elasticsearch 9.5 and 1.65 s on OpenSearch 3.6 (p50 about
/// 0.65 s); 5 s leaves three times that.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(5);
/// Largest `settle`: a year.
pub const MAX_SETTLE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default `keep_alive` of point-in-time and scroll contexts.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);

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
    /// Where `es-connector run` sends messages. Default: stdout.
    #[serde(default)]
    pub output: OutputConfig,
}

/// `pagination`: how pages are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pagination {
    /// `search_after` on `[timestamp, tiebreaker]`, inside a point in time when the
    /// server supports one (Elasticsearch >= 7.10, OpenSearch >= 2.4). Default.
    #[default]
    SearchAfter,
    /// The scroll API, sorted on `[timestamp, tiebreaker]`; needs `tiebreaker_field`.
    Scroll,
    /// `search_after` without a point in time, the cursor ending in the document id
    /// field `tiebreaker_field` (required).
    Cursor,
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
    pub url: HttpUrl,
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
    /// `search_after` (default), `scroll` or `cursor`.
    #[serde(default)]
    pub pagination: Pagination,
    /// A unique keyword field present in every document, ordering documents that share
    /// a timestamp. Default none: `_shard_doc` inside a point in time (Elasticsearch >=
    /// 7.12, OpenSearch >= 3.3); required for `scroll` and `cursor`.
    #[serde(default)]
    pub tiebreaker_field: Option<String>,
    /// `date` (default; RFC 3339 strings or epoch millis in a `date` field),
    /// `date_nanos`, or `epoch_millis` (a `long` field).
    #[serde(default)]
    pub timestamp_type: TimestampKind,
    /// Documents without `timestamp_field`: `skip` (default, never read) or `first`.
    #[serde(default)]
    pub missing_timestamp: MissingTimestamp,
    /// Basic authentication user. Default none.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password. Default none; never printed.
    #[serde(default)]
    pub password: Option<Secret>,
    /// API key (`Authorization: ApiKey ...`), the base64 `id:key` form. Default none; never printed.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// PEM file of CA certificates to trust for `https://`, on top of the root
    /// set built in (Mozilla's, `webpki-roots`). Default none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `{ id, max }`: read only slice `id` of `max` (point in time or scroll), so
    /// `max` instances each read their own slice under their own `state_id`. Default none.
    #[serde(default)]
    pub slice: Option<Slice>,
    /// Sliced readers run concurrently inside this process (point in time or scroll),
    /// their cursors stored together in the one state. Default 1 (no slicing).
    #[serde(default = "default_slices")]
    pub slices: u32,
    /// Time limit of one HTTP request. Default `30s`.
    #[serde(default = "default_request_timeout", with = "humantime_duration")]
    pub request_timeout: Duration,
    /// How long an idle point in time or scroll stays open between pages. Default `1m`.
    #[serde(default = "default_keep_alive", with = "humantime_duration")]
    pub keep_alive: Duration,
    /// Read only documents whose timestamp is before now minus this, fixed when a
    /// pass begins: documents indexed with their time as timestamp are searchable
    /// before the cursor can pass them (refresh), and documents stamped in the
    /// future wait for their time instead of moving the cursor past the present.
    /// Default `5s`; `0s` bounds at the present only.
    #[serde(default = "default_settle", with = "humantime_duration")]
    pub settle: Duration,
    /// Once caught up, look again at this much time behind the cursor and deliver
    /// the documents that became searchable there since it passed (each once,
    /// restarts included; see docs/live-tail.md). Default `0s`: off.
    #[serde(default, with = "humantime_duration")]
    pub late_window: Duration,
    /// The largest answer read from the server, in bytes (a page of `batch_size`
    /// documents is one answer): a larger one stops the source with an error
    /// naming this key instead of growing memory without bound. Default 256 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// When the source starts with no position (a new or reset state), read what the
    /// index holds first in index order, from one point-in-time snapshot (each of
    /// `slices` its own share, resumable), and only then follow the incremental
    /// cursor from the snapshot's last document: far cheaper for the server than
    /// pages sorted on the timestamp. Needs a point in time and the `_shard_doc`
    /// sort (Elasticsearch >= 7.12, OpenSearch >= 3.3). Default `false`.
    #[serde(default)]
    pub backfill: bool,
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
            .field("url", &self.url)
            .field("index", &self.index)
            .field("polling_interval", &self.polling_interval)
            .field("batch_size", &self.batch_size)
            .field("timestamp_field", &self.timestamp_field)
            .field("query", &self.query)
            .field("state", &self.state)
            .field("pagination", &self.pagination)
            .field("tiebreaker_field", &self.tiebreaker_field)
            .field("timestamp_type", &self.timestamp_type)
            .field("missing_timestamp", &self.missing_timestamp)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("api_key", &self.api_key)
            .field("ca_file", &self.ca_file)
            .field("slice", &self.slice)
            .field("slices", &self.slices)
            .field("request_timeout", &self.request_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("settle", &self.settle)
            .field("late_window", &self.late_window)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("backfill", &self.backfill)
            .finish()
    }
}

impl ConnectorConfig {
    /// Reads, parses and validates a TOML file. Errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_config_file(path, Self::from_toml)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: ConnectorConfig = parse_toml(text)?;
        config.plugin_config.validate()?;
        config.plugin_config.check_files()?;
        config.output.validate()?;
        config.output.check_files()?;
        #[cfg(feature = "iggy")]
        if matches!(config.output, OutputConfig::Iggy(_)) {
            IggyTarget::from_streams(&config.streams)?;
        }
        Ok(config)
    }
}

/// Reads `path` and parses it with `parse`; errors name the file. Text in the
/// documentation's dialect is rewritten into TOML first, with a warning naming the file.
pub(crate) fn read_config_file<T>(path: &Path, parse: impl Fn(&str) -> Result<T>) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ConnectorError::ConfigFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let understood = understood(&text, &path.display().to_string())?;
    // Lines of an error in rewritten text are those of the TOML the warning showed.
    let read_as = match understood {
        Cow::Owned(_) => ", read as the TOML shown in the warning above",
        Cow::Borrowed(_) => "",
    };
    parse(&understood).map_err(|e| match e {
        ConnectorError::InvalidConfig { key, reason } => ConnectorError::InvalidConfig {
            key,
            reason: format!("{reason} (in {}{read_as})", path.display()),
        },
        other => other,
    })
}

/// The text as valid TOML: `None` when it is valid TOML already (it is never
/// rewritten), the rewritten text when it is in the documentation's dialect
/// (`key = {` over several lines, JSON objects inside). Neither: an error naming
/// `origin` (the file) and the line, saying how to write it.
pub fn to_valid_toml(text: &str, origin: &str) -> Result<Option<String>> {
    match understand(text, origin)? {
        Understood::Toml => Ok(None),
        Understood::Dialect(toml) => Ok(Some(toml)),
        Understood::NotToml(e) => Err(syntax_error(origin, text, &e, |line| line)),
    }
}

enum Understood {
    Toml,
    Dialect(String),
    /// Invalid TOML with no dialect block in it.
    NotToml(toml::de::Error),
}

fn understand(text: &str, origin: &str) -> Result<Understood> {
    let Err(error) = toml::from_str::<toml::Table>(text) else {
        return Ok(Understood::Toml);
    };
    let rewritten = match dialect::rewrite(text) {
        Ok(Some(rewritten)) => rewritten,
        Ok(None) => return Ok(Understood::NotToml(error)),
        Err(e) => {
            return Err(ConnectorError::ConfigSyntax {
                origin: origin.to_owned(),
                line: e.line,
                reason: e.reason,
            });
        }
    };
    match toml::from_str::<toml::Table>(&rewritten.text) {
        Ok(_) => Ok(Understood::Dialect(rewritten.text)),
        Err(e) => Err(syntax_error(origin, &rewritten.text, &e, |line| {
            rewritten.origin(line)
        })),
    }
}

/// A TOML syntax error as [`ConnectorError::ConfigSyntax`]: the line (of the
/// input, through `origin_line`) and the parser's message.
fn syntax_error(
    origin: &str,
    text: &str,
    e: &toml::de::Error,
    origin_line: impl Fn(usize) -> usize,
) -> ConnectorError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
        .unwrap_or(1);
    ConnectorError::ConfigSyntax {
        origin: origin.to_owned(),
        line: origin_line(line),
        reason: format!(
            "{}; this is not TOML (see docs/configuration.md for how each key is written)",
            e.message().trim_end()
        ),
    }
}

/// `text`, or the TOML rewritten from its dialect, with one warning naming
/// `origin` and showing the TOML understood.
fn understood<'a>(text: &'a str, origin: &str) -> Result<Cow<'a, str>> {
    match understand(text, origin)? {
        Understood::Toml | Understood::NotToml(_) => Ok(Cow::Borrowed(text)),
        Understood::Dialect(toml) => {
            tracing::warn!(
                "{origin} is not valid TOML: it writes tables the way the connector's documentation \
                 does (`key = {{` over several lines, no commas). It was read as this TOML; \
                 `es-connector config fmt {origin}` writes it into the file:\n{}",
                toml.trim_end()
            );
            Ok(Cow::Owned(toml))
        }
    }
}

/// Parses TOML text into `T`; an error names the offending key (`table.key`),
/// from the path the deserializer was at (plus the field, for an unknown one).
/// Text in the documentation's dialect is rewritten into TOML first, with a warning.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    let text = understood(text, "the configuration text")?;
    let text = text.as_ref();
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ConnectorError::invalid("config", e.to_string().trim_end()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut parts: Vec<String> = e
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let message = e.inner().message();
        // "unknown field `x`" is about a key the path has not entered.
        if let Some(field) = message
            .starts_with("unknown field")
            .then(|| message.split('`').nth(1))
            .flatten()
            && parts.last().map(String::as_str) != Some(field)
        {
            parts.push(field.to_owned());
        }
        let key = if parts.is_empty() {
            "config".to_owned()
        } else {
            parts.join(".")
        };
        ConnectorError::invalid(key, e.inner().to_string().trim_end())
    })
}

/// A [`PluginConfig`] checked once by [`PluginConfig::validate`], with what it
/// derives resolved: the query as JSON and the state store's settings. What the
/// source, the binary and the plugins work from; derived nowhere else.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    config: PluginConfig,
    endpoint: Endpoint,
    query: Value,
    state: Option<StorageSettings>,
}

impl ValidatedConfig {
    /// The configuration as written.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// The source's cluster: `url` with `username`/`password` or `api_key`, and `ca_file`.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The user's query as JSON (`match_all` when none is configured).
    pub fn query(&self) -> &Value {
        &self.query
    }

    /// The state store's settings, when state is enabled.
    pub fn state_settings(&self) -> Option<&StorageSettings> {
        self.state.as_ref()
    }
}

impl std::ops::Deref for ValidatedConfig {
    type Target = PluginConfig;

    fn deref(&self) -> &PluginConfig {
        &self.config
    }
}

impl PluginConfig {
    /// Checks every value (errors name the key) and resolves what the values
    /// derive. Reads nothing: a `ca_file` is read when the client is built.
    pub fn validate(&self) -> Result<ValidatedConfig> {
        self.check()?;
        let endpoint = self.resolve_endpoint()?;
        Ok(ValidatedConfig {
            config: self.clone(),
            query: self.query_json()?,
            state: self.state_settings(&endpoint)?,
            endpoint,
        })
    }

    /// Checks that the files the configuration names can be read (IO, unlike
    /// [`validate`](Self::validate)): a configuration file is checked so when
    /// loaded.
    pub fn check_files(&self) -> Result<()> {
        let validated = self.validate()?;
        check_ca_file(validated.endpoint(), "plugin_config")?;
        if let Some(StorageSettings::Elasticsearch { endpoint, .. }) = validated.state_settings() {
            check_ca_file(endpoint, "plugin_config.state.storage_config")?;
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
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
        self.validate_source()
    }

    fn validate_source(&self) -> Result<()> {
        if let Some(field) = &self.tiebreaker_field
            && (field.trim().is_empty() || field == &self.timestamp_field)
        {
            return Err(ConnectorError::invalid(
                "plugin_config.tiebreaker_field",
                "must name a unique keyword field present in every document, other than timestamp_field",
            ));
        }
        if self.pagination != Pagination::SearchAfter && self.tiebreaker_field.is_none() {
            return Err(ConnectorError::invalid(
                "plugin_config.tiebreaker_field",
                format!(
                    "is required with pagination = \"{}\": name a unique keyword field (e.g. a document id) present in every document",
                    pagination_name(self.pagination)
                ),
            ));
        }
        if self.pagination == Pagination::Cursor && self.slice.is_some() {
            return Err(ConnectorError::invalid(
                "plugin_config.slice",
                "needs pagination = \"search_after\" (in a point in time) or \"scroll\"",
            ));
        }
        if self.backfill && self.pagination != Pagination::SearchAfter {
            return Err(ConnectorError::invalid(
                "plugin_config.backfill",
                format!(
                    "reads a point-in-time snapshot, so it needs pagination = \"search_after\", not \"{}\"; remove backfill or the pagination line",
                    pagination_name(self.pagination)
                ),
            ));
        }
        if self.slices == 0 || self.slices > MAX_SLICES {
            return Err(ConnectorError::invalid(
                "plugin_config.slices",
                format!("{} is out of range: 1 to {MAX_SLICES}", self.slices),
            ));
        }
        if self.slices > 1 && self.pagination == Pagination::Cursor {
            return Err(ConnectorError::invalid(
                "plugin_config.slices",
                "needs pagination = \"search_after\" (in a point in time) or \"scroll\"; pagination = \"cursor\" cannot be sliced",
            ));
        }
        if self.slices > 1 && self.slice.is_some() {
            return Err(ConnectorError::invalid(
                "plugin_config.slices",
                "cannot be combined with slice = { id, max }: use one or the other",
            ));
        }
        if let Some(slice) = self.slice
            && (slice.max < 2 || slice.id >= slice.max)
        {
            return Err(ConnectorError::invalid(
                "plugin_config.slice",
                format!(
                    "needs max >= 2 and 0 <= id < max, got id {} max {}",
                    slice.id, slice.max
                ),
            ));
        }
        if self.max_response_bytes < 1024 {
            return Err(ConnectorError::invalid(
                "plugin_config.max_response_bytes",
                "must be at least 1024 (bytes), e.g. 268435456 for 256 MiB",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConnectorError::invalid(
                "plugin_config.request_timeout",
                "must be more than 0, e.g. \"30s\"",
            ));
        }
        if self.settle > MAX_SETTLE {
            return Err(ConnectorError::invalid(
                "plugin_config.settle",
                format!(
                    "{} is more than {}; documents would wait that long before they are read",
                    humantime::format_duration(self.settle),
                    humantime::format_duration(MAX_SETTLE)
                ),
            ));
        }
        if self.missing_timestamp == MissingTimestamp::First
            && self.pagination == Pagination::SearchAfter
            && (self.slices > 1 || self.slice.is_some())
        {
            return Err(ConnectorError::invalid(
                "plugin_config.missing_timestamp",
                "\"first\" does not work with slicing inside a point in time: slices are cut \
                 by the timestamp (the only cut that stays the same in every point in time), so \
                 documents without one belong to no slice; use pagination = \"scroll\" or no slicing",
            ));
        }
        if !self.late_window.is_zero() {
            if self.slice.is_some() {
                return Err(ConnectorError::invalid(
                    "plugin_config.late_window",
                    "does not work with `slice` (one slice of several instances cannot tell its \
                     late documents from the other instances'); use `slices` inside one instance",
                ));
            }
            if self.late_window < Duration::from_secs(1) || self.late_window > MAX_SETTLE {
                return Err(ConnectorError::invalid(
                    "plugin_config.late_window",
                    "must be \"0s\" (off) or between 1s and a year, e.g. \"10m\"",
                ));
            }
        }
        if self.keep_alive < Duration::from_secs(1) {
            return Err(ConnectorError::invalid(
                "plugin_config.keep_alive",
                "must be at least 1s, e.g. \"1m\"",
            ));
        }
        Ok(())
    }

    /// The user's query as JSON (`match_all` when none is configured).
    fn query_json(&self) -> Result<Value> {
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

    /// `url` and the access keys resolved into one authentication.
    fn resolve_endpoint(&self) -> Result<Endpoint> {
        let access = Access {
            api_key: self.api_key.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            ca_file: self.ca_file.clone(),
        };
        Endpoint::new(self.url.clone(), access)
            .map_err(|e| ConnectorError::invalid(format!("plugin_config.{}", e.key), e.reason))
    }

    /// The state backend settings, when state is enabled.
    fn state_settings(&self, source: &Endpoint) -> Result<Option<StorageSettings>> {
        match &self.state {
            Some(state) if state.enabled => match state.validate(Some(source)) {
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

/// Reads the CA file `endpoint` trusts, if any (IO): a file that cannot be read
/// or holds no PEM certificate is named (`{table}.ca_file`) when the
/// configuration is loaded, not at the first request.
pub fn check_ca_file(endpoint: &Endpoint, table: &str) -> Result<()> {
    endpoint
        .configure_client(reqwest::Client::builder())
        .map(drop)
        .map_err(|e| ConnectorError::invalid(format!("{table}.{}", e.key), e.reason))
}

/// The name of a pagination mode as written in the configuration.
pub fn pagination_name(p: Pagination) -> &'static str {
    match p {
        Pagination::SearchAfter => "search_after",
        Pagination::Scroll => "scroll",
        Pagination::Cursor => "cursor",
    }
}

fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

fn default_slices() -> u32 {
    1
}

fn default_keep_alive() -> Duration {
    DEFAULT_KEEP_ALIVE
}

fn default_settle() -> Duration {
    DEFAULT_SETTLE
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

    /// Keys come from where the deserializer was, not from the text around the
    /// error: an inline table and an array of tables name their place too.
    #[test]
    fn keys_inside_inline_tables_and_arrays_of_tables_are_named_in_full() {
        let base = "[plugin_config]\nurl = \"http://h:9200\"\nindex = \"a\"\n";
        assert_eq!(
            err_key(&format!("{base}state = {{ bogus = 1 }}\n")),
            "plugin_config.state.bogus"
        );
        assert_eq!(
            err_key(&format!(
                "[[streams]]\nstream = \"s\"\ntopic = \"t\"\nbogus = 1\n{base}"
            )),
            "streams.0.bogus"
        );
        assert_eq!(
            err_key(&format!("{base}slice = {{ id = \"zero\", max = 2 }}\n")),
            "plugin_config.slice.id"
        );
    }

    #[test]
    fn source_keys_parse_with_defaults() {
        let base = "[plugin_config]\nurl = \"http://h:9200\"\nindex = \"a\"\n";
        let cfg = ConnectorConfig::from_toml(base).unwrap_or_else(|e| panic!("{e}"));
        let p = &cfg.plugin_config;
        assert_eq!(p.pagination, Pagination::SearchAfter);
        assert_eq!(p.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(p.timestamp_type, TimestampKind::Date);
        assert!(matches!(cfg.output, OutputConfig::Stdout));
        let cfg = ConnectorConfig::from_toml(&format!(
            "{base}pagination = \"scroll\"\ntiebreaker_field = \"id\"\ntimestamp_type = \"date_nanos\"\nmissing_timestamp = \"first\"\nslice = {{ id = 1, max = 3 }}\nrequest_timeout = \"5s\"\n[output]\nkind = \"file\"\npath = \"out.jsonl\"\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let p = &cfg.plugin_config;
        assert_eq!(p.pagination, Pagination::Scroll);
        assert_eq!(p.slice, Some(Slice { id: 1, max: 3 }));
        assert_eq!(p.missing_timestamp, MissingTimestamp::First);
        assert!(matches!(cfg.output, OutputConfig::File { .. }));
    }

    #[test]
    fn bad_source_keys_are_named() {
        let base = "[plugin_config]\nurl = \"http://h:9200\"\nindex = \"a\"\n";
        for (extra, key) in [
            ("pagination = \"pages\"\n", "plugin_config.pagination"),
            (
                "pagination = \"scroll\"\n",
                "plugin_config.tiebreaker_field",
            ),
            ("slice = { id = 3, max = 3 }\n", "plugin_config.slice"),
            (
                "slice = { id = 0, max = 3, x = 1 }\n",
                "plugin_config.slice.x",
            ),
            ("password = \"p\"\n", "plugin_config.password"),
            (
                "request_timeout = \"0s\"\n",
                "plugin_config.request_timeout",
            ),
            (
                "ca_file = \"/nonexistent/ca.pem\"\n",
                "plugin_config.ca_file",
            ),
            ("[output]\nkind = \"kafka\"\n", "output.kind"),
            (
                "[output]\nkind = \"file\"\npath = \"x\"\nurl = \"y\"\n",
                "output.url",
            ),
            (
                "[output]\nkind = \"elasticsearch\"\nurl = \"ftp://x\"\nindex = \"i\"\n",
                "output.url",
            ),
            (
                "[output]\nkind = \"elasticsearch\"\nurl = \"http://x\"\nindex = \"i\"\n\
                 workers = 1\nadaptive_concurrency = true\n",
                "output.adaptive_concurrency",
            ),
        ] {
            let text = format!("{base}{extra}");
            let got = match ConnectorConfig::from_toml(&text) {
                Err(ConnectorError::InvalidConfig { key, reason }) => format!("{key}: {reason}"),
                other => format!("{other:?}"),
            };
            assert!(got.starts_with(key), "{extra:?}: expected {key}, got {got}");
        }
        let both =
            "[plugin_config]\nurl = \"http://u:pw@h:9200\"\nindex = \"a\"\napi_key = \"k\"\n";
        assert_eq!(err_key(both), "plugin_config.api_key");
    }

    #[test]
    fn valid_toml_is_never_rewritten() {
        assert!(matches!(to_valid_toml(DOCUMENTED, "f.toml"), Ok(None)));
        // TOML 1.1: an inline table over several lines, with commas.
        let multi_line = "[plugin_config]\nurl = \"http://h:9200\"\nindex = \"a\"\nstate = {\n  state_id = \"s\",\n}\n";
        assert!(matches!(to_valid_toml(multi_line, "f.toml"), Ok(None)));
        let cfg = ConnectorConfig::from_toml(multi_line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.plugin_config.state.map(|s| s.state_id),
            Some("s".into())
        );
    }

    #[test]
    fn the_dialect_is_read_and_its_mistakes_are_placed() {
        let base = "[plugin_config]\nurl = \"http://h:9200\"\nindex = \"a\"\n";
        let dialect = format!("{base}state = {{\n  state_id = \"s\"\n}}\n");
        let cfg = ConnectorConfig::from_toml(&dialect).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.plugin_config.state.map(|s| s.state_id),
            Some("s".into())
        );
        // A bad value inside a block: the line of the input, not of the rewrite.
        let text = format!("{base}# a comment\nstate = {{\n  enabled = yes\n}}\n");
        match ConnectorConfig::from_toml(&text) {
            Err(ConnectorError::ConfigSyntax { origin, line, .. }) => {
                assert_eq!((origin.as_str(), line), ("the configuration text", 6));
            }
            other => panic!("{other:?}"),
        }
        // Valid TOML with a bad key is named as before, rewritten or not.
        assert_eq!(
            err_key(&format!(
                "{base}state = {{\n  state_id = \"s\"\n  bogus = 1\n}}\n"
            )),
            "plugin_config.state.bogus"
        );
        match to_valid_toml(&format!("{base}batch_size = = 1\n"), "f.toml") {
            Err(ConnectorError::ConfigSyntax { origin, line, .. }) => {
                assert_eq!((origin.as_str(), line), ("f.toml", 4));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn url_credentials_are_decoded() {
        let credentials = |text: &str| {
            let url = HttpUrl::parse(text).unwrap_or_else(|e| panic!("{e}"));
            url.username().map(|user| {
                (
                    user.to_owned(),
                    url.password().map(|p| p.expose().to_owned()),
                )
            })
        };
        assert_eq!(
            credentials("https://el%40stic:p%3Ass@h:9200/x"),
            Some(("el@stic".into(), Some("p:ss".into())))
        );
        assert_eq!(credentials("http://h:9200/a@b"), None);
    }

    #[test]
    fn debug_hides_url_credentials() {
        let cfg = ConnectorConfig::from_toml(
            "[plugin_config]\nurl = \"https://elastic:hunter2@h:9200\"\nindex = \"a\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let cfg = ConnectorConfig::from_toml(
            "[plugin_config]\nurl = \"https://h:9200\"\nindex = \"a\"\nusername = \"u\"\npassword = \"hunter3\"\n[output]\nkind = \"elasticsearch\"\nurl = \"http://x:hunter4@h\"\nindex = \"o\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter3") && !shown.contains("hunter4"),
            "{shown}"
        );
        let cfg = ConnectorConfig::from_toml(
            "[plugin_config]\nurl = \"https://h:9200\"\nindex = \"a\"\napi_key = \"hunter5\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{cfg:?}").contains("hunter5"));
    }

    const SOURCE: &str = "[plugin_config]\nurl = \"https://h:9200\"\nindex = \"a\"\n";

    #[test]
    fn every_elasticsearch_connection_takes_the_access_keys() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-ca.pem");
        let cfg = ConnectorConfig::from_toml(&format!(
            "{SOURCE}api_key = \"c291cmNl\"\nca_file = {ca:?}\n\
             [plugin_config.state]\nstorage_type = \"elasticsearch\"\n\
             [output]\nkind = \"elasticsearch\"\nurl = \"https://o:9200\"\nindex = \"copy\"\n\
             username = \"writer\"\npassword = \"hunter6\"\nca_file = {ca:?}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter6") && !shown.contains("c291cmNl"),
            "{shown}"
        );
        let output = cfg
            .output
            .elasticsearch_endpoint()
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no endpoint"));
        assert_eq!(output.url().base(), "https://o:9200");
        assert_eq!(
            output.auth(),
            &Auth::Basic {
                username: "writer".into(),
                password: Secret::new("hunter6"),
            }
        );
        assert_eq!(output.ca_file(), Some(std::path::Path::new(ca)));
        let validated = cfg
            .plugin_config
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        match validated.state_settings() {
            Some(StorageSettings::Elasticsearch { endpoint, .. }) => {
                assert_eq!(endpoint, validated.endpoint())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ambiguous_access_is_refused_naming_the_key() {
        let output = "[output]\nkind = \"elasticsearch\"\nindex = \"copy\"\n";
        for (extra, key) in [
            (
                format!("{output}url = \"https://u:p@o\"\napi_key = \"k\"\n"),
                "output.api_key",
            ),
            (
                format!("{output}url = \"https://o\"\npassword = \"p\"\n"),
                "output.password",
            ),
            (
                format!("{output}url = \"https://u:p@o\"\nusername = \"u\"\n"),
                "output.username",
            ),
            (format!("{output}url = \"ftp://o\"\n"), "output.url"),
            (
                "[plugin_config.state]\nstorage_type = \"elasticsearch\"\n\
                 [plugin_config.state.storage_config]\napi_key = \"k\"\nusername = \"u\"\n"
                    .to_owned(),
                "plugin_config.state.storage_config.api_key",
            ),
        ] {
            assert_eq!(err_key(&format!("{SOURCE}{extra}")), key, "{extra}");
        }
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_named_on_load() {
        let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let output = "[output]\nkind = \"elasticsearch\"\nurl = \"https://o\"\nindex = \"c\"\n";
        for (extra, key) in [
            (format!("ca_file = {not_pem:?}\n"), "plugin_config.ca_file"),
            (
                format!(
                    "[plugin_config.state]\nstorage_type = \"elasticsearch\"\n\
                     [plugin_config.state.storage_config]\nca_file = {not_pem:?}\n"
                ),
                "plugin_config.state.storage_config.ca_file",
            ),
            (format!("{output}ca_file = {not_pem:?}\n"), "output.ca_file"),
        ] {
            assert_eq!(err_key(&format!("{SOURCE}{extra}")), key, "{extra}");
        }
    }
}
