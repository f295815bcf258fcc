//! `es-connector sink`: the other direction, an Iggy topic into Elasticsearch.
//!
//! Each polled batch (one partition's messages after the offset the sink
//! stored for that partition) is bulk-indexed through the `bulk` crate, `_id` = the source's
//! document id (`es_id` header) or the message id, so a batch indexed twice
//! rewrites the same documents. Documents refused for good (mapping errors, a
//! payload that is not JSON) go to the `[dead_letter]` file; without one the
//! sink stops instead of dropping them. Only then is the partition's offset stored:
//! a crash re-reads at most the batch in flight, never skips one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::config::{IggyInputConfig, IggyTarget, OutputConfig, StreamConfig, parse_toml};
use crate::error::{ConnectorError, Result};
use crate::iggy::{Consumed, IggyInput, PartitionProgress, Polled};
use crate::message::{HEADER_TIMESTAMP, Message};
use crate::metrics::Metrics;
use crate::output::{ElasticsearchOutput, FileOutput, OutputError};
use crate::retried;
use crate::run::{Attempt, Backoff, DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF, Retry, pause};

/// `[input]`: where the sink reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum InputConfig {
    /// An Iggy topic, with a consumer group.
    Iggy(IggyInputConfig),
}

/// `[dead_letter]`: where documents refused for good are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A JSON-lines file (fsynced before the offset is stored).
    pub path: PathBuf,
}

/// The configuration file of `es-connector sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Runtime: `"sink"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Runtime: `"elasticsearch"`.
    pub key: Option<String>,
    /// Runtime: whether the runtime loads it.
    pub enabled: Option<bool>,
    /// Runtime: config version.
    pub version: Option<u64>,
    /// Runtime: display name.
    pub name: Option<String>,
    /// Runtime: path of the plugin library.
    pub path: Option<String>,
    /// The topic to read: exactly one `[[streams]]` entry (`batch_length`:
    /// messages per poll, default 1000).
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    /// Where to read.
    pub input: InputConfig,
    /// Where to index: `kind = "elasticsearch"`.
    pub output: OutputConfig,
    /// Where refused documents go; without it a refused document stops the sink.
    pub dead_letter: Option<DeadLetterConfig>,
}

impl SinkConfig {
    /// Parses and validates TOML text; errors name the key.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: SinkConfig = parse_toml(text)?;
        let InputConfig::Iggy(input) = &config.input;
        input.validate()?;
        IggyTarget::from_streams(&config.streams)?;
        match &config.output {
            OutputConfig::Elasticsearch { .. } => {
                config.output.validate()?;
                config.output.check_files()?;
            }
            _ => {
                return Err(ConnectorError::invalid(
                    "output.kind",
                    "the sink indexes into Elasticsearch: use kind = \"elasticsearch\" with url and index",
                ));
            }
        }
        if let Some(d) = &config.dead_letter
            && d.path.as_os_str().is_empty()
        {
            return Err(ConnectorError::invalid("dead_letter.path", "is empty"));
        }
        Ok(config)
    }

    /// Reads and validates `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config::read_config_file(path, Self::from_toml)
    }
}

/// How [`run_sink`] behaves.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// Stop at the first poll that finds nothing new.
    pub once: bool,
    /// When `true`: stop at the next safe point and return. A poll, an indexing
    /// attempt or an offset store in flight is abandoned, a pause before a retry
    /// ended; the batch's offset is then not stored (it is read again at the next
    /// start). A dead-letter write in progress is finished.
    pub shutdown: Option<watch::Receiver<bool>>,
    /// Counters updated per batch, empty poll and error (see [`crate::metrics`]):
    /// documents and bytes indexed, dead-lettered documents, lag from the
    /// messages' `es_timestamp` header.
    pub metrics: Option<Metrics>,
}

/// What a sink run did.
#[derive(Debug, Clone, Default)]
pub struct SinkSummary {
    /// Messages consumed (and offsets stored for them).
    pub messages: u64,
    /// Documents indexed.
    pub indexed: u64,
    /// Documents written to the dead-letter file.
    pub dead_lettered: u64,
    /// Batches consumed.
    pub batches: u64,
    /// Errors met and retried.
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Where each partition stands at the end (read after a clean end only).
    pub partitions: Vec<PartitionProgress>,
}

/// Consumes until shutdown (or, with `once`, until caught up).
pub async fn run_sink(config: &SinkConfig, options: SinkOptions) -> Result<SinkSummary> {
    let metrics = options.metrics.clone();
    let outcome = sink_loop(config, options).await;
    if let (Err(e), Some(metrics)) = (&outcome, &metrics) {
        // The error that ended the run (those retried are counted as they come).
        metrics.record_connector_error(e);
    }
    outcome
}

async fn sink_loop(config: &SinkConfig, mut options: SinkOptions) -> Result<SinkSummary> {
    let started = Instant::now();
    let InputConfig::Iggy(input_config) = &config.input;
    let target = IggyTarget::from_streams(&config.streams)?;
    let poll_interval = input_config.options.poll_interval;
    let mut input = IggyInput::new(input_config.clone(), target);
    let Some((endpoint, index, sending)) = config.output.elasticsearch_target()? else {
        return Err(ConnectorError::invalid(
            "output.kind",
            "must be \"elasticsearch\"",
        ));
    };
    let mut es = ElasticsearchOutput::with_options(&endpoint, index, sending)?;
    let dead_letter = match &config.dead_letter {
        Some(d) => Some(FileOutput::open(d.path.clone())?),
        None => None,
    };
    let mut backoff = Backoff::new(DEFAULT_MIN_BACKOFF, DEFAULT_MAX_BACKOFF);
    let mut summary = SinkSummary::default();
    let outcome = loop {
        if options.shutdown.as_ref().is_some_and(|rx| *rx.borrow()) {
            break Ok(());
        }
        let retry = Retry::new(&mut backoff, &mut options.shutdown, &mut summary.errors)
            .metrics(options.metrics.as_ref());
        let polled = retried!(retry, "poll failed", input.poll());
        if let (Ok(Some(None)), Some(metrics)) = (&polled, &options.metrics) {
            metrics.record_empty_poll();
        }
        let polled = match polled {
            Ok(Some(Some(polled))) => polled,
            Ok(None) => break Ok(()),
            Ok(Some(None)) if options.once => {
                // Caught up on every partition: say where each stands.
                match input.progress().await {
                    Ok(p) => summary.partitions = p,
                    Err(e) => tracing::warn!(error = %e, "cannot read the partitions' progress"),
                }
                break Ok(());
            }
            Ok(Some(None)) => {
                if !pause(poll_interval, &mut options.shutdown).await {
                    break Ok(());
                }
                continue;
            }
            Err(e) => break Err(e),
        };
        match deliver(
            &polled,
            &mut es,
            dead_letter.as_ref(),
            &mut input,
            &mut backoff,
            &mut summary,
            &mut options.shutdown,
            options.metrics.as_ref(),
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    partition = polled.partition,
                    "stopping: the offset of the batch in flight is not stored; it is read again at the next start"
                );
                break Ok(());
            }
            Err(e) => break Err(e),
        }
        summary.batches += 1;
        summary.messages += polled.messages.len() as u64;
        tracing::info!(
            partition = polled.partition,
            offset = polled.last_offset,
            messages = summary.messages,
            indexed = summary.indexed,
            dead_lettered = summary.dead_lettered,
            "batch indexed, offset stored"
        );
    };
    let closed = crate::output::Output::close(&mut es).await;
    outcome?;
    closed?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Indexes one batch, dead-letters what is refused, stores the offset; `false`
/// when a shutdown request came first (the offset is not stored).
#[allow(clippy::too_many_arguments)]
async fn deliver(
    polled: &Polled,
    es: &mut ElasticsearchOutput,
    dead_letter: Option<&FileOutput>,
    input: &mut IggyInput,
    backoff: &mut Backoff,
    summary: &mut SinkSummary,
    shutdown: &mut Option<watch::Receiver<bool>>,
    metrics: Option<&Metrics>,
) -> Result<bool> {
    let mut valid: Vec<Message> = Vec::with_capacity(polled.messages.len());
    let mut valid_offsets: Vec<u64> = Vec::with_capacity(polled.messages.len());
    let mut dead: Vec<serde_json::Value> = Vec::new();
    for (offset, consumed) in &polled.messages {
        match consumed {
            Consumed::Message(m) => {
                valid.push(m.clone());
                valid_offsets.push(*offset);
            }
            Consumed::Invalid {
                id,
                headers,
                payload,
                reason,
            } => dead.push(json!({
                "id": id.to_string(),
                "partition": polled.partition,
                "offset": offset,
                "error": reason,
                "headers": headers,
                "payload": payload,
            })),
        }
    }
    let retry = Retry::new(backoff, shutdown, &mut summary.errors).metrics(metrics);
    let Some(refused) = retried!(
        retry,
        "indexing failed; sending the batch again",
        es.send_reporting(&valid)
    )?
    else {
        return Ok(false);
    };
    for (i, error) in &refused {
        let m = &valid[*i];
        dead.push(json!({
            "id": m.id.to_string(),
            "partition": polled.partition,
            "offset": valid_offsets[*i],
            "error": error,
            "headers": m.headers,
            "payload": m.payload,
        }));
    }
    let indexed = (valid.len() - refused.len()) as u64;
    summary.indexed += indexed;
    if !dead.is_empty() {
        let Some(file) = dead_letter else {
            let first = dead[0].to_string();
            return Err(OutputError::Refused {
                output: "sink".into(),
                reason: format!(
                    "{} documents of partition {} were refused for good and there is no \
                     [dead_letter] file to put them in; the offset was not stored. First: {first}. \
                     Fix the documents or the mapping, or set [dead_letter] path",
                    dead.len(),
                    polled.partition
                ),
            }
            .into());
        };
        let mut buf = Vec::new();
        for record in &dead {
            buf.extend_from_slice(record.to_string().as_bytes());
            buf.push(b'\n');
        }
        // Cut short, the records could be written twice after a restart.
        let retry = Retry::new(backoff, shutdown, &mut summary.errors)
            .metrics(metrics)
            .attempt(Attempt::Finish);
        let written = retried!(
            retry,
            "writing the dead-letter file failed; retrying",
            file.append(buf.clone())
        )?;
        if written.is_none() {
            return Ok(false);
        }
        tracing::warn!(
            documents = dead.len(),
            path = %file.path().display(),
            "documents refused for good were written to the dead-letter file"
        );
        summary.dead_lettered += dead.len() as u64;
    }
    let retry = Retry::new(backoff, shutdown, &mut summary.errors).metrics(metrics);
    let stored = retried!(
        retry,
        "storing the offset failed; retrying",
        input.commit(polled)
    )?;
    if let (Some(()), Some(metrics)) = (stored, metrics) {
        let refused: std::collections::HashSet<usize> = refused.iter().map(|(i, _)| *i).collect();
        let bytes = valid
            .iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains(i))
            .map(|(_, m)| m.payload.get().len() as u64)
            .sum();
        metrics.record_batch(indexed, bytes);
        metrics.record_dead_lettered(dead.len() as u64);
        if let Some(ts) = valid.last().and_then(|m| m.headers.get(HEADER_TIMESTAMP)) {
            metrics.observe_timestamp(ts);
        }
    }
    Ok(stored.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(input_extra: &str) -> Result<SinkConfig> {
        SinkConfig::from_toml(&format!(
            "[[streams]]\nstream = \"s\"\ntopic = \"t\"\n\
             [input]\nkind = \"iggy\"\nusername = \"u\"\npassword = \"p\"\n{input_extra}\n\
             [output]\nkind = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200\"\nindex = \"i\"\n"
        ))
    }

    fn options(c: &SinkConfig) -> &crate::config::IggyInputOptions {
        let InputConfig::Iggy(input) = &c.input;
        &input.options
    }

    #[test]
    fn the_consumer_is_named_by_consumer_or_the_old_consumer_group_key() {
        assert_eq!(options(&config("").unwrap()).consumer, "es-connector-sink");
        assert_eq!(options(&config("consumer = \"a\"").unwrap()).consumer, "a");
        assert_eq!(
            options(&config("consumer_group = \"b\"").unwrap()).consumer,
            "b"
        );
        let both = config("consumer = \"a\"\nconsumer_group = \"b\"").map(|_| ());
        assert!(both.is_err(), "both names at once must be refused");
    }

    #[test]
    fn partitions_are_checked_naming_the_key() {
        assert_eq!(
            options(&config("partitions = [0, 2]").unwrap()).partitions,
            Some(vec![0, 2])
        );
        for (bad, says) in [
            ("partitions = []", "is empty"),
            ("partitions = [1, 1]", "names partition 1 twice"),
        ] {
            let e = config(bad).map(|_| ()).unwrap_err().to_string();
            assert!(
                e.contains("input.partitions") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }
}
