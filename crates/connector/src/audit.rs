//! `es-connector audit`: compares what the index holds with what the connector
//! delivered, per time bucket, and names what is missing.
//!
//! The index side is one histogram of the configured query's documents per
//! bucket. The delivered side is read back from the destination: the `file`
//! output's lines, the `iggy` output's topic, or the `elasticsearch` output's
//! target index (each document's source index, id and timestamp). Buckets whose
//! counts differ (every bucket with `exact`) are examined document by document:
//! documents the index holds and the destination does not are **missed** (named),
//! documents delivered and no longer in the index were **deleted** since, and a
//! message delivered more than once is **duplicated**. Both sides are cut to the
//! same window, `[since, until)`, where `until` defaults to the committed cursor's
//! timestamp: what the connector has not reached yet is not counted as missed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use es_query::QuerySpec;
use serde::{Deserialize, Serialize};

use crate::config::{ConnectorConfig, OutputConfig, PluginConfig, ValidatedConfig};
use crate::error::{ConnectorError, Result};
use crate::message::timestamp_millis;
use crate::message::{HEADER_ID, HEADER_INDEX, HEADER_TIMESTAMP, MessageId};
use crate::source::client::EsClient;
use crate::source::dedup::document_key;

/// Default bucket width.
pub const DEFAULT_BUCKET: Duration = Duration::from_secs(60);
/// Missed documents named per bucket, at most.
pub const NAMED_PER_BUCKET: usize = 10;
/// Ids per page when examining a bucket.
const PAGE: usize = 1000;
/// How long the examining scroll stays open between pages.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Only documents with a timestamp at or after this. Default: no bound.
    pub since: Option<DateTime<Utc>>,
    /// Only documents with a timestamp before this. Default: the committed
    /// cursor's timestamp (the earliest slice's), or now minus `settle` without
    /// a stored state.
    pub until: Option<DateTime<Utc>>,
    /// Bucket width (whole milliseconds). Default one minute.
    pub bucket: Duration,
    /// Examine every bucket, not only those whose counts differ (a bucket where
    /// as many documents were missed as were deleted since has equal counts).
    pub exact: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            since: None,
            until: None,
            bucket: DEFAULT_BUCKET,
            exact: false,
        }
    }
}

/// One bucket where the index and the destination disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketDifference {
    /// Its first instant.
    pub start: DateTime<Utc>,
    /// Documents the index holds there.
    pub indexed: u64,
    /// Distinct documents the destination holds there.
    pub delivered: u64,
    /// Documents in the index and not in the destination.
    pub missed: u64,
    /// The first [`NAMED_PER_BUCKET`] of them, as `index/id`.
    pub missed_examples: Vec<String>,
    /// Documents in the destination and no longer in the index.
    pub deleted: u64,
    /// Messages delivered again (same message id) beyond the first copy.
    pub duplicated: u64,
}

/// What an audit found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// The index or pattern audited.
    pub index: String,
    /// Where delivered documents were read back from.
    pub destination: String,
    /// The window's start, if bounded.
    pub since: Option<DateTime<Utc>>,
    /// The window's end (exclusive).
    pub until: DateTime<Utc>,
    /// Why `until` is what it is.
    pub until_from: String,
    /// Bucket width in milliseconds.
    pub bucket_ms: u64,
    /// Documents the index holds in the window.
    pub indexed: u64,
    /// Distinct documents the destination holds in the window.
    pub delivered: u64,
    /// Messages the destination holds in the window (copies included).
    pub messages: u64,
    /// Total missed, deleted and duplicated.
    pub missed: u64,
    /// See [`BucketDifference::deleted`].
    pub deleted: u64,
    /// See [`BucketDifference::duplicated`].
    pub duplicated: u64,
    /// Buckets examined document by document.
    pub examined: u64,
    /// The buckets that differ, in time order.
    pub differences: Vec<BucketDifference>,
}

impl AuditReport {
    /// Whether documents were missed (the audit fails).
    pub fn missed_any(&self) -> bool {
        self.missed > 0
    }

    /// A table for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let since = self.since.map_or_else(|| "the beginning".to_owned(), show);
        let _ = writeln!(
            out,
            "audit of {} against {}: buckets of {} ms from {since} to {} ({})",
            self.index,
            self.destination,
            self.bucket_ms,
            show(self.until),
            self.until_from
        );
        let _ = writeln!(
            out,
            "indexed {}, delivered {} distinct documents in {} messages; {} buckets examined",
            self.indexed, self.delivered, self.messages, self.examined
        );
        if self.differences.is_empty() {
            let _ = writeln!(
                out,
                "every bucket agrees: nothing missed, duplicated or deleted"
            );
            return out;
        }
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>9} {:>7} {:>10} {:>7}  missed documents",
            "bucket", "indexed", "delivered", "missed", "duplicated", "deleted"
        );
        for d in &self.differences {
            let more = d.missed.saturating_sub(d.missed_examples.len() as u64);
            let mut names = d.missed_examples.join(" ");
            if more > 0 {
                let _ = write!(names, " (and {more} more)");
            }
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:>9} {:>7} {:>10} {:>7}  {names}",
                show(d.start),
                d.indexed,
                d.delivered,
                d.missed,
                d.duplicated,
                d.deleted
            );
        }
        let _ = writeln!(
            out,
            "{} buckets differ: {} missed, {} duplicated, {} deleted since delivery",
            self.differences.len(),
            self.missed,
            self.duplicated,
            self.deleted
        );
        out
    }
}

fn show(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What the destination holds in one bucket.
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    duplicated: u64,
    /// Fingerprints of `index\0id`.
    documents: HashSet<u64>,
}

/// What the destination holds, per bucket start (epoch milliseconds).
#[derive(Debug, Default)]
struct Delivered {
    buckets: BTreeMap<i64, Tally>,
    messages: HashSet<u128>,
}

impl Delivered {
    fn add(&mut self, bucket: i64, index: &str, id: &str, message: Option<u128>) {
        let tally = self.buckets.entry(bucket).or_default();
        tally.messages += 1;
        if let Some(message) = message
            && !self.messages.insert(message)
        {
            tally.duplicated += 1;
        }
        tally.documents.insert(document_key(index, id));
    }
}

/// The window and bucketing both sides are cut to.
#[derive(Debug, Clone, Copy)]
struct Window {
    since: Option<i64>,
    until: i64,
    bucket: i64,
}

impl Window {
    /// The bucket of a timestamp, if inside the window.
    fn bucket_of(&self, millis: i64) -> Option<i64> {
        if millis >= self.until || self.since.is_some_and(|s| millis < s) {
            return None;
        }
        Some(millis.div_euclid(self.bucket) * self.bucket)
    }
}

/// Audits the source `config` describes against its `[output]`.
pub async fn audit(config: &ConnectorConfig, options: &AuditOptions) -> Result<AuditReport> {
    let validated = config.plugin_config.validate()?;
    let source = &config.plugin_config;
    let client = EsClient::new(&validated)?;
    let server = client.server_info().await?;
    let spec = crate::source::query_config(&validated)
        .build(server.flavor)
        .map_err(|e| ConnectorError::invalid("plugin_config", e))?;
    let (until, until_from) = match options.until {
        Some(until) => (until, "--until".to_owned()),
        None => default_until(&validated, &spec).await?,
    };
    let what = "audit: documents per bucket";
    // Checks the bucket width too (whole, positive milliseconds).
    let request = spec
        .count_per_bucket(options.since, until, options.bucket)
        .map_err(|e| ConnectorError::invalid("--bucket", e))?;
    let bucket_ms = i64::try_from(options.bucket.as_millis()).unwrap_or(i64::MAX);
    let window = Window {
        since: options.since.map(|s| s.timestamp_millis()),
        until: until.timestamp_millis(),
        bucket: bucket_ms,
    };
    let (destination, delivered) = read_delivered(config, &spec, window).await?;

    let (status, body) = client.send(&request, what).await?;
    let indexed: BTreeMap<i64, u64> = es_query::parse_bucket_counts(status, &body)
        .map_err(|e| client.refused(what, e))?
        .into_iter()
        .collect();

    let starts: BTreeSet<i64> = indexed
        .keys()
        .chain(delivered.buckets.keys())
        .copied()
        .collect();
    let mut report = AuditReport {
        index: source.index.clone(),
        destination,
        since: options.since,
        until,
        until_from,
        bucket_ms: bucket_ms.unsigned_abs(),
        indexed: indexed.values().sum(),
        delivered: delivered
            .buckets
            .values()
            .map(|t| t.documents.len() as u64)
            .sum(),
        messages: delivered.buckets.values().map(|t| t.messages).sum(),
        missed: 0,
        deleted: 0,
        duplicated: 0,
        examined: 0,
        differences: Vec::new(),
    };
    let empty = Tally::default();
    for start in starts {
        let count = indexed.get(&start).copied().unwrap_or(0);
        let tally = delivered.buckets.get(&start).unwrap_or(&empty);
        let distinct = tally.documents.len() as u64;
        let mut difference = BucketDifference {
            start: Utc.timestamp_millis_opt(start).single().unwrap_or(until),
            indexed: count,
            delivered: distinct,
            missed: 0,
            missed_examples: Vec::new(),
            deleted: 0,
            duplicated: tally.duplicated,
        };
        if options.exact || count != distinct {
            report.examined += 1;
            let from = options
                .since
                .map_or(start, |s| s.timestamp_millis().max(start));
            let to = (start + bucket_ms).min(window.until);
            let in_index = index_documents(&client, &spec, from, to).await?;
            for (index, id) in &in_index {
                if !tally.documents.contains(&document_key(index, id)) {
                    difference.missed += 1;
                    if difference.missed_examples.len() < NAMED_PER_BUCKET {
                        difference.missed_examples.push(format!("{index}/{id}"));
                    }
                }
            }
            let held: HashSet<u64> = in_index.iter().map(|(i, d)| document_key(i, d)).collect();
            difference.deleted = tally.documents.difference(&held).count() as u64;
        }
        if difference.missed + difference.deleted + difference.duplicated > 0 {
            report.missed += difference.missed;
            report.deleted += difference.deleted;
            report.duplicated += difference.duplicated;
            report.differences.push(difference);
        }
    }
    Ok(report)
}

/// The committed cursor's timestamp (the earliest slice's), or now minus `settle`.
async fn default_until(
    source: &ValidatedConfig,
    spec: &QuerySpec,
) -> Result<(DateTime<Utc>, String)> {
    let settled = || {
        let settle = chrono::Duration::from_std(source.settle).unwrap_or(chrono::Duration::MAX);
        Utc::now().checked_sub_signed(settle).unwrap_or(Utc::now())
    };
    let Some(manager) = crate::state::open_manager(source).await? else {
        return Ok((settled(), "no state kept: now minus settle".into()));
    };
    let stored = match manager.store().load(manager.state_id()).await {
        Ok(stored) => stored.state,
        Err(state_core::StateError::NotFound { .. }) => {
            return Ok((
                settled(),
                format!(
                    "no state stored under `{}` yet: now minus settle",
                    manager.state_id()
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let slices = usize::try_from(source.slices).unwrap_or(1).max(1);
    let cursors = crate::source::stored_cursors(&stored, slices)?;
    let kind = spec.config().timestamp_type;
    let earliest = cursors
        .iter()
        .map(|c| {
            c.as_ref()
                .and_then(|c| c.timestamp_value())
                .and_then(|v| kind.sort_value_to_time(v))
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|times| times.into_iter().min());
    Ok(match earliest {
        Some(at) => (
            at,
            format!("the committed cursor of state `{}`", manager.state_id()),
        ),
        None => (
            DateTime::UNIX_EPOCH,
            format!(
                "state `{}` has no cursor (in every slice) yet: nothing is expected",
                manager.state_id()
            ),
        ),
    })
}

/// The `(index, id)` of every document of the query in `[from, to)` (epoch ms).
async fn index_documents(
    client: &EsClient,
    spec: &QuerySpec,
    from: i64,
    to: i64,
) -> Result<Vec<(String, String)>> {
    let at = |ms: i64| Utc.timestamp_millis_opt(ms).single();
    let (Some(from), Some(to)) = (at(from), at(to)) else {
        return Ok(Vec::new());
    };
    let what = "audit: documents of a bucket";
    let request = spec
        .ids_between(Some(from), to, PAGE, KEEP_ALIVE)
        .map_err(|e| client.refused(what, e))?;
    let mut documents = Vec::new();
    client
        .scroll_all(spec, &request, KEEP_ALIVE, what, |h| {
            documents.push((h.index, h.id))
        })
        .await?;
    Ok(documents)
}

/// One line of the `file` output: the headers are all the audit reads.
#[derive(Deserialize)]
struct Line {
    id: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

async fn read_delivered(
    config: &ConnectorConfig,
    spec: &QuerySpec,
    window: Window,
) -> Result<(String, Delivered)> {
    match &config.output {
        OutputConfig::File { path } => {
            Ok((format!("file {}", path.display()), read_file(path, window)?))
        }
        OutputConfig::Elasticsearch { index, .. } => {
            let endpoint = config.output.elasticsearch_endpoint()?.ok_or_else(|| {
                ConnectorError::invalid("output.kind", "is not \"elasticsearch\"")
            })?;
            let delivered =
                read_target_index(&config.plugin_config, spec, &endpoint, index, window).await?;
            Ok((
                format!("elasticsearch {}/{index}", endpoint.url()),
                delivered,
            ))
        }
        #[cfg(feature = "iggy")]
        OutputConfig::Iggy(iggy) => {
            let target = crate::config::IggyTarget::from_streams(&config.streams)?;
            let mut delivered = Delivered::default();
            crate::iggy::read_topic(&iggy.connection, &target, |m| {
                let (Some(index), Some(id), Some(ts)) = (m.es_index, m.es_id, m.es_timestamp)
                else {
                    return;
                };
                if let Some(bucket) = timestamp_millis(&ts).and_then(|t| window.bucket_of(t)) {
                    delivered.add(bucket, &index, &id, Some(m.id));
                }
            })
            .await
            .map_err(|reason| crate::output::OutputError::Unavailable {
                output: format!("iggy topic {}/{}", target.stream, target.topic),
                reason,
            })?;
            Ok((
                format!("iggy topic {}/{}", target.stream, target.topic),
                delivered,
            ))
        }
        OutputConfig::Stdout => Err(ConnectorError::invalid(
            "output.kind",
            "the audit reads what was delivered back from the destination; stdout cannot be \
             read back: audit a configuration whose [output] is file, elasticsearch or iggy",
        )),
    }
}

fn read_file(path: &Path, window: Window) -> Result<Delivered> {
    let unreadable = |reason: String| {
        ConnectorError::invalid("output.path", format!("{}: {reason}", path.display()))
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        // Nothing delivered yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Delivered::default()),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let mut delivered = Delivered::default();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| unreadable(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|e| {
            unreadable(format!(
                "line {} is not a message of this connector: {e}",
                n + 1
            ))
        })?;
        let header = |name: &str| parsed.headers.get(name).map(String::as_str);
        let (Some(index), Some(id), Some(ts)) = (
            header(HEADER_INDEX),
            header(HEADER_ID),
            header(HEADER_TIMESTAMP),
        ) else {
            continue;
        };
        let Some(bucket) = timestamp_millis(ts).and_then(|t| window.bucket_of(t)) else {
            continue;
        };
        let message = parsed.id.parse::<MessageId>().ok().map(|m| m.0);
        delivered.add(bucket, index, id, message);
    }
    Ok(delivered)
}

/// The `elasticsearch` output's target index: `_id` `{source index}/{source id}`,
/// the source document's timestamp field copied with it.
async fn read_target_index(
    source: &PluginConfig,
    spec: &QuerySpec,
    endpoint: &crate::config::Endpoint,
    index: &str,
    window: Window,
) -> Result<Delivered> {
    // The output's cluster and access, the source's reading settings.
    let mut target_config = source.clone();
    target_config.url = endpoint.url().clone();
    target_config.index = index.to_owned();
    target_config.username = None;
    target_config.password = None;
    target_config.api_key = None;
    target_config.ca_file = endpoint.ca_file().map(std::path::Path::to_owned);
    match endpoint.auth() {
        crate::config::Auth::None => {}
        crate::config::Auth::Basic { username, password }
            if endpoint.url().username().is_none() =>
        {
            target_config.username = Some(username.clone());
            target_config.password = Some(password.clone());
        }
        // Credentials written in the output's url travel with it.
        crate::config::Auth::Basic { .. } => {}
        crate::config::Auth::ApiKey(key) => target_config.api_key = Some(key.clone()),
    }
    target_config.query = None;
    let validated = target_config.validate()?;
    let client = EsClient::new(&validated)?;
    let server = client.server_info().await?;
    let target = crate::source::query_config(&validated)
        .build(server.flavor)
        .map_err(|e| ConnectorError::invalid("output", e))?;
    let until = Utc
        .timestamp_millis_opt(window.until)
        .single()
        .unwrap_or_else(Utc::now);
    let since = window
        .since
        .and_then(|s| Utc.timestamp_millis_opt(s).single());
    let what = "audit: the target index";
    let request = target
        .ids_between(since, until, PAGE, KEEP_ALIVE)
        .map_err(|e| client.refused(what, e))?;
    let mut delivered = Delivered::default();
    client
        .scroll_all(&target, &request, KEEP_ALIVE, what, |hit| {
            let Some(bucket) = spec
                .hit_timestamp(&hit)
                .and_then(|ts| window.bucket_of(ts.timestamp_millis()))
            else {
                return;
            };
            // Index names cannot hold `/`: the first one ends the source index.
            let (source_index, id) = hit
                .id
                .split_once('/')
                .unwrap_or((hit.index.as_str(), hit.id.as_str()));
            delivered.add(bucket, source_index, id, None);
        })
        .await?;
    Ok(delivered)
}
