//! The configuration of an incremental read, and its validated form [`QuerySpec`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{QueryError, Result};
use crate::flavor::Flavor;
use crate::request::encode_index;

/// Default [`QueryConfig::timestamp_field`].
pub const DEFAULT_TIMESTAMP_FIELD: &str = "@timestamp";
/// Default [`QueryConfig::batch_size`].
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Largest [`QueryConfig::batch_size`]: the default `index.max_result_window`.
pub const MAX_BATCH_SIZE: usize = 10_000;
/// The date format used for every bound this crate writes into a `range` query.
pub const RANGE_DATE_FORMAT: &str = "strict_date_optional_time_nanos";

/// How the timestamp field is mapped, which decides how it is sorted and what its
/// sort values (and so the cursor) look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampKind {
    /// A `date` field (RFC 3339 strings or epoch millis in the source). Sorted with
    /// `numeric_type: "date"`, so sort values are epoch **milliseconds** even on
    /// `date_nanos` indices of the same pattern. The default.
    #[default]
    Date,
    /// A `date_nanos` field (or a pattern mixing `date` and `date_nanos` where
    /// sub-millisecond order matters). Sorted with `numeric_type: "date_nanos"`: sort
    /// values are epoch **nanoseconds** (dates must lie in 1970..2262).
    DateNanos,
    /// A `long` field holding epoch milliseconds. Sort values and range bounds are
    /// plain numbers.
    EpochMillis,
}

impl TimestampKind {
    fn unmapped_type(self) -> &'static str {
        match self {
            TimestampKind::Date => "date",
            TimestampKind::DateNanos => "date_nanos",
            TimestampKind::EpochMillis => "long",
        }
    }

    /// The sort clause options for this kind (without `order`/`missing`).
    pub(crate) fn sort_options(self, options: &mut serde_json::Map<String, serde_json::Value>) {
        match self {
            TimestampKind::Date => {
                options.insert("numeric_type".into(), "date".into());
            }
            TimestampKind::DateNanos => {
                options.insert("numeric_type".into(), "date_nanos".into());
            }
            TimestampKind::EpochMillis => {}
        }
        options.insert("unmapped_type".into(), self.unmapped_type().into());
    }

    /// Reads a timestamp sort value (epoch millis or nanos by kind); `None` for the
    /// missing-value sentinels and anything that is not an integer.
    pub fn sort_value_to_time(self, value: &serde_json::Value) -> Option<DateTime<Utc>> {
        let raw = value.as_i64()?;
        if raw == i64::MIN || raw == i64::MAX {
            return None;
        }
        match self {
            TimestampKind::Date | TimestampKind::EpochMillis => {
                DateTime::from_timestamp_millis(raw)
            }
            TimestampKind::DateNanos => Some(DateTime::from_timestamp_nanos(raw)),
        }
    }

    /// Renders an instant as a range bound for this kind.
    pub(crate) fn bound(self, at: DateTime<Utc>) -> serde_json::Value {
        match self {
            TimestampKind::Date => at.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
            TimestampKind::DateNanos => at.to_rfc3339_opts(SecondsFormat::Nanos, true).into(),
            TimestampKind::EpochMillis => at.timestamp_millis().into(),
        }
    }
}

/// What to do with documents that have no value in the timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingTimestamp {
    /// Never read them: an `exists` filter excludes them. The default.
    #[default]
    Skip,
    /// Read them first (sort `missing: "_first"`, sort value `i64::MIN`): the ones
    /// present when the reader starts are delivered once; ones added after the cursor
    /// moved past them are not (they sort before the cursor).
    First,
}

/// A bound of the time window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeBound {
    /// An instant (config: an RFC 3339 string such as `"2024-01-15T10:30:00Z"`).
    At(DateTime<Utc>),
    /// Epoch milliseconds (config: a JSON number).
    EpochMillis(i64),
    /// Date math evaluated by the server at each request (config: a string starting
    /// with `now` or containing `||`, such as `"now-30s"`). Not for `epoch_millis` fields.
    Expr(String),
}

impl TimeBound {
    fn render(&self, key: &str, kind: TimestampKind) -> Result<serde_json::Value> {
        match self {
            TimeBound::At(at) => Ok(kind.bound(*at)),
            TimeBound::EpochMillis(ms) => match kind {
                TimestampKind::EpochMillis => Ok((*ms).into()),
                _ => DateTime::from_timestamp_millis(*ms)
                    .map(|at| kind.bound(at))
                    .ok_or_else(|| {
                        QueryError::invalid_config(key, format!("{ms} is out of range"))
                    }),
            },
            TimeBound::Expr(expr) => match kind {
                TimestampKind::EpochMillis => Err(QueryError::invalid_config(
                    key,
                    format!(
                        "date math `{expr}` does not work on an epoch_millis (long) field; give \
                         a number of milliseconds or an RFC 3339 instant"
                    ),
                )),
                _ => Ok(expr.clone().into()),
            },
        }
    }
}

impl Serialize for TimeBound {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            TimeBound::At(at) => {
                serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            TimeBound::EpochMillis(ms) => serializer.serialize_i64(*ms),
            TimeBound::Expr(expr) => serializer.serialize_str(expr),
        }
    }
}

impl<'de> Deserialize<'de> for TimeBound {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(i64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Millis(ms) => Ok(TimeBound::EpochMillis(ms)),
            Raw::Text(text) if text.starts_with("now") || text.contains("||") => {
                Ok(TimeBound::Expr(text))
            }
            Raw::Text(text) => DateTime::parse_from_rfc3339(&text)
                .map(|at| TimeBound::At(at.with_timezone(&Utc)))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "`{text}` is neither RFC 3339 ({e}), date math like `now-30s`, nor epoch millis"
                    ))
                }),
        }
    }
}

/// One slice of a sliced scroll or point in time search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    /// This reader's slice, `0..max`.
    pub id: u32,
    /// The number of slices, at least 2.
    pub max: u32,
}

/// The configuration of an incremental read, as found in the connector's config.
///
/// Build a [`QuerySpec`] from it with [`QueryConfig::build`], which validates it
/// against the server [`Flavor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Index, alias, data stream, pattern (`logs-*`) or comma list to read. Required.
    pub index: String,
    /// The field holding the document's time. Default `"@timestamp"`.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// How `timestamp_field` is mapped. Default `date`.
    #[serde(default)]
    pub timestamp_type: TimestampKind,
    /// A unique keyword (or numeric) field present in every document, sorted after the
    /// timestamp so that documents sharing a timestamp are never skipped. Default none:
    /// then a point in time with the `_shard_doc` tiebreaker is required
    /// (Elasticsearch >= 7.12, OpenSearch >= 3.3).
    #[serde(default)]
    pub tiebreaker_field: Option<String>,
    /// What to do with documents lacking `timestamp_field`. Default `skip`.
    #[serde(default)]
    pub missing_timestamp: MissingTimestamp,
    /// The user's query (the value of `query` in a search body). Default `match_all`.
    #[serde(default)]
    pub query: Option<serde_json::Value>,
    /// Hits per page, 1..=10000. Default 1000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Read documents with a timestamp at or after this (inclusive). Default: no bound.
    #[serde(default)]
    pub from: Option<TimeBound>,
    /// Read documents with a timestamp strictly before this, e.g. `"now-30s"` so that
    /// documents still being indexed are left for the next poll. Default: no bound.
    #[serde(default)]
    pub until: Option<TimeBound>,
    /// Read only this slice (scroll or point in time only). Default: no slicing.
    #[serde(default)]
    pub slice: Option<Slice>,
    /// Passed through as the body's `_source` (true/false, a field list or
    /// `{includes, excludes}`). Default: not sent (the whole source).
    #[serde(default)]
    pub source: Option<serde_json::Value>,
    /// Sent as `track_total_hits` (not in scrolls, which refuse `false`). Default false.
    #[serde(default)]
    pub track_total_hits: bool,
}

fn default_timestamp_field() -> String {
    DEFAULT_TIMESTAMP_FIELD.to_string()
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl QueryConfig {
    /// A configuration reading `index` with every other setting at its default.
    pub fn new(index: impl Into<String>) -> Self {
        QueryConfig {
            index: index.into(),
            timestamp_field: default_timestamp_field(),
            timestamp_type: TimestampKind::default(),
            tiebreaker_field: None,
            missing_timestamp: MissingTimestamp::default(),
            query: None,
            batch_size: DEFAULT_BATCH_SIZE,
            from: None,
            until: None,
            slice: None,
            source: None,
            track_total_hits: false,
        }
    }

    /// Sets [`QueryConfig::timestamp_field`].
    pub fn with_timestamp_field(mut self, field: impl Into<String>) -> Self {
        self.timestamp_field = field.into();
        self
    }

    /// Sets [`QueryConfig::timestamp_type`].
    pub fn with_timestamp_type(mut self, kind: TimestampKind) -> Self {
        self.timestamp_type = kind;
        self
    }

    /// Sets [`QueryConfig::tiebreaker_field`].
    pub fn with_tiebreaker_field(mut self, field: impl Into<String>) -> Self {
        self.tiebreaker_field = Some(field.into());
        self
    }

    /// Sets [`QueryConfig::missing_timestamp`].
    pub fn with_missing_timestamp(mut self, policy: MissingTimestamp) -> Self {
        self.missing_timestamp = policy;
        self
    }

    /// Sets [`QueryConfig::query`].
    pub fn with_query(mut self, query: serde_json::Value) -> Self {
        self.query = Some(query);
        self
    }

    /// Sets [`QueryConfig::batch_size`].
    pub fn with_batch_size(mut self, size: usize) -> Self {
        self.batch_size = size;
        self
    }

    /// Sets [`QueryConfig::from`].
    pub fn with_from(mut self, bound: TimeBound) -> Self {
        self.from = Some(bound);
        self
    }

    /// Sets [`QueryConfig::until`].
    pub fn with_until(mut self, bound: TimeBound) -> Self {
        self.until = Some(bound);
        self
    }

    /// Sets [`QueryConfig::slice`].
    pub fn with_slice(mut self, id: u32, max: u32) -> Self {
        self.slice = Some(Slice { id, max });
        self
    }

    /// Sets [`QueryConfig::source`].
    pub fn with_source(mut self, source: serde_json::Value) -> Self {
        self.source = Some(source);
        self
    }

    /// Sets [`QueryConfig::track_total_hits`].
    pub fn with_track_total_hits(mut self, track: bool) -> Self {
        self.track_total_hits = track;
        self
    }

    /// Validates this configuration for `flavor`.
    pub fn build(self, flavor: Flavor) -> Result<QuerySpec> {
        let index_path = encode_index(&self.index)?;
        if self.timestamp_field.trim().is_empty() {
            return Err(QueryError::invalid_config(
                "timestamp_field",
                "is empty; e.g. \"@timestamp\"",
            ));
        }
        let tiebreaker = match &self.tiebreaker_field {
            Some(field) if field.trim().is_empty() => {
                return Err(QueryError::invalid_config(
                    "tiebreaker_field",
                    "is empty; name a unique keyword field present in every document, or remove it",
                ));
            }
            Some(field) if field == &self.timestamp_field => {
                return Err(QueryError::invalid_config(
                    "tiebreaker_field",
                    "must differ from timestamp_field: it breaks ties between equal timestamps",
                ));
            }
            Some(field) => Tiebreaker::Field(field.clone()),
            None if flavor.supports_shard_doc() => Tiebreaker::ShardDoc,
            None => {
                return Err(QueryError::invalid_config(
                    "tiebreaker_field",
                    format!(
                        "is required on {flavor}: it has no `_shard_doc` sort (Elasticsearch >= \
                         7.12, OpenSearch >= 3.3), and without a unique tiebreaker documents \
                         sharing a timestamp would be skipped; name a unique keyword field \
                         present in every document"
                    ),
                ));
            }
        };
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(QueryError::invalid_config(
                "batch_size",
                format!(
                    "is {}; it must be between 1 and {MAX_BATCH_SIZE}",
                    self.batch_size
                ),
            ));
        }
        if let Some(query) = &self.query
            && query.as_object().is_none_or(|q| q.is_empty())
        {
            return Err(QueryError::invalid_config(
                "query",
                format!(
                    "must be a non-empty JSON object like {{\"match_all\": {{}}}}, got {query}"
                ),
            ));
        }
        if let Some(source) = &self.source {
            let ok = match source {
                serde_json::Value::Bool(_) | serde_json::Value::String(_) => true,
                serde_json::Value::Array(items) => items.iter().all(|i| i.is_string()),
                serde_json::Value::Object(map) => {
                    map.keys().all(|k| k == "includes" || k == "excludes")
                }
                _ => false,
            };
            if !ok {
                return Err(QueryError::invalid_config(
                    "source",
                    format!(
                        "must be true/false, a field or field list, or {{includes, excludes}}; got {source}"
                    ),
                ));
            }
        }
        if let Some(slice) = self.slice
            && (slice.max < 2 || slice.id >= slice.max)
        {
            return Err(QueryError::invalid_config(
                "slice",
                format!(
                    "needs max >= 2 and 0 <= id < max, got id {} max {}",
                    slice.id, slice.max
                ),
            ));
        }
        let from = self
            .from
            .as_ref()
            .map(|b| b.render("from", self.timestamp_type))
            .transpose()?;
        let until = self
            .until
            .as_ref()
            .map(|b| b.render("until", self.timestamp_type))
            .transpose()?;
        if let (Some(TimeBound::At(f)), Some(TimeBound::At(u))) = (&self.from, &self.until)
            && f >= u
        {
            return Err(QueryError::invalid_config(
                "until",
                format!("{u} is not after from ({f}): the window would be empty"),
            ));
        }
        Ok(QuerySpec {
            config: self,
            flavor,
            index_path,
            tiebreaker,
            from,
            until,
            ceiling: None,
            floor: None,
        })
    }
}

/// What breaks ties between documents with equal timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tiebreaker {
    /// The user's unique field.
    Field(String),
    /// `_shard_doc`: unique within one point in time only.
    ShardDoc,
}

/// A validated [`QueryConfig`] for one server [`Flavor`]: builds every request of
/// an incremental read (see the `build` methods) and reads hits' timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySpec {
    pub(crate) config: QueryConfig,
    pub(crate) flavor: Flavor,
    pub(crate) index_path: String,
    pub(crate) tiebreaker: Tiebreaker,
    pub(crate) from: Option<serde_json::Value>,
    pub(crate) until: Option<serde_json::Value>,
    /// [`QuerySpec::with_ceiling`]'s bound, rendered.
    pub(crate) ceiling: Option<serde_json::Value>,
    /// The audit's lower bound (inclusive), rendered.
    pub(crate) floor: Option<serde_json::Value>,
}

impl QuerySpec {
    /// The configuration this was built from.
    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// The server flavor this was built for.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The tiebreaker in use.
    pub fn tiebreaker(&self) -> &Tiebreaker {
        &self.tiebreaker
    }

    /// A copy whose requests also read only documents with a timestamp strictly
    /// before `ceiling` (on top of `until`, if any): the settle bound of a live
    /// tail, fixed for one pass, so the cursor never passes a position that
    /// documents may still fill in. Documents without a timestamp are not
    /// affected (see [`MissingTimestamp`]).
    pub fn with_ceiling(&self, ceiling: DateTime<Utc>) -> QuerySpec {
        QuerySpec {
            ceiling: Some(self.config.timestamp_type.bound(ceiling)),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: QueryConfig = serde_json::from_str(r#"{"index": "logs-*"}"#).unwrap();
        assert_eq!(config, QueryConfig::new("logs-*"));
        assert_eq!(config.timestamp_field, "@timestamp");
        assert_eq!(config.batch_size, DEFAULT_BATCH_SIZE);
        let err = serde_json::from_str::<QueryConfig>(r#"{"index": "a", "tiebreaker": "x"}"#)
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `tiebreaker`"),
            "{err}"
        );
    }

    #[test]
    fn time_bounds_from_config() {
        let parse = |text: &str| serde_json::from_str::<TimeBound>(text);
        assert_eq!(
            parse("1705314600000").unwrap(),
            TimeBound::EpochMillis(1705314600000)
        );
        assert_eq!(
            parse(r#""now-30s""#).unwrap(),
            TimeBound::Expr("now-30s".into())
        );
        assert_eq!(
            parse(r#""2024-01-01||+1d""#).unwrap(),
            TimeBound::Expr("2024-01-01||+1d".into())
        );
        let at = parse(r#""2024-01-15T11:30:00+01:00""#).unwrap();
        assert_eq!(
            serde_json::to_string(&at).unwrap(),
            r#""2024-01-15T10:30:00Z""#
        );
        assert!(parse(r#""yesterday""#).is_err());
    }

    #[test]
    fn sort_values_to_time() {
        let ms = serde_json::json!(1705314600123_i64);
        let ns = serde_json::json!(1705314600123456789_i64);
        assert_eq!(
            TimestampKind::Date
                .sort_value_to_time(&ms)
                .unwrap()
                .to_rfc3339(),
            "2024-01-15T10:30:00.123+00:00"
        );
        assert_eq!(
            TimestampKind::DateNanos
                .sort_value_to_time(&ns)
                .unwrap()
                .to_rfc3339(),
            "2024-01-15T10:30:00.123456789+00:00"
        );
        assert_eq!(
            TimestampKind::Date.sort_value_to_time(&serde_json::json!(i64::MIN)),
            None
        );
        assert_eq!(
            TimestampKind::Date.sort_value_to_time(&serde_json::json!("x")),
            None
        );
    }
}
