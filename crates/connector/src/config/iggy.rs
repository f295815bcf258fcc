//! `kind = "iggy"` in `[output]` (and `[input]`): how to reach an Apache Iggy
//! server and where messages go.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Secret, StreamConfig};
use crate::error::{ConnectorError, Result};

/// Default `address` of an Iggy server (TCP).
pub const DEFAULT_IGGY_ADDRESS: &str = "127.0.0.1:8090";
/// Default `batch_length`: messages per send.
pub const DEFAULT_IGGY_BATCH_LENGTH: usize = 1000;
/// Default `partitions` of a topic the output creates.
pub const DEFAULT_IGGY_PARTITIONS: u32 = 1;

/// `transport`: how the client talks to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IggyTransport {
    /// The binary protocol over TCP (default; TLS with `tls = true`).
    #[default]
    Tcp,
    /// The binary protocol over QUIC (always TLS).
    Quic,
    /// The REST API; `address` is then a URL (`http://127.0.0.1:3000`). Refused
    /// by [`IggyConnection::validate`]: the 0.11 client cannot send or read
    /// 128-bit message ids over it.
    Http,
}

/// The connection settings shared by the Iggy output and input.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IggyConnection {
    /// `host:port`. Default `127.0.0.1:8090`.
    #[serde(default = "default_address")]
    pub address: String,
    /// `tcp` (default), `quic` or `http`.
    #[serde(default)]
    pub transport: IggyTransport,
    /// User name; with `password`.
    pub username: Option<String>,
    /// Password; never printed.
    pub password: Option<Secret>,
    /// A personal access token instead of `username`/`password`; never printed.
    pub token: Option<Secret>,
    /// TLS for TCP (QUIC always uses it). Default false.
    #[serde(default)]
    pub tls: bool,
    /// A PEM file with the CA that signed the server's certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// The name the server's certificate is checked against. Default: the host of `address`.
    pub tls_domain: Option<String>,
}

fn default_address() -> String {
    DEFAULT_IGGY_ADDRESS.into()
}

impl fmt::Debug for IggyConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IggyConnection")
            .field("address", &self.address)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_domain", &self.tls_domain)
            .finish()
    }
}

impl IggyConnection {
    /// Checks the values; errors name `{table}.key`.
    pub fn validate(&self, table: &str) -> Result<()> {
        let key = |k: &str| format!("{table}.{k}");
        if self.transport == IggyTransport::Http {
            return Err(ConnectorError::invalid(
                key("transport"),
                "\"http\" cannot carry these messages: the iggy 0.11 client's HTTP transport \
                 cannot serialise 128-bit message ids (it panics), and every message here has \
                 one; use \"tcp\" (with tls = true for TLS)",
            ));
        }
        if self.address.trim().is_empty() {
            return Err(ConnectorError::invalid(
                key("address"),
                "is empty; e.g. \"127.0.0.1:8090\"",
            ));
        }
        if self.address.contains("://") {
            return Err(ConnectorError::invalid(
                key("address"),
                format!(
                    "{} is a URL; transport = \"tcp\" or \"quic\" takes host:port",
                    self.address
                ),
            ));
        }
        match (&self.username, &self.password, &self.token) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => {}
            (_, _, Some(_)) => {
                return Err(ConnectorError::invalid(
                    key("token"),
                    "is set together with username/password; use one of them",
                ));
            }
            (Some(_), None, None) => {
                return Err(ConnectorError::invalid(key("password"), "is missing"));
            }
            (None, Some(_), None) => {
                return Err(ConnectorError::invalid(key("username"), "is missing"));
            }
            (None, None, None) => {
                return Err(ConnectorError::invalid(
                    key("username"),
                    "is missing: set username and password, or token",
                ));
            }
        }
        if let Some(path) = &self.tls_ca_file
            && !path.is_file()
        {
            return Err(ConnectorError::invalid(
                key("tls_ca_file"),
                format!("{} is not a readable file", path.display()),
            ));
        }
        Ok(())
    }

    /// `tcp://127.0.0.1:8090` (never credentials).
    pub fn describe(&self) -> String {
        match self.transport {
            IggyTransport::Tcp => format!("tcp://{}", self.address),
            IggyTransport::Quic => format!("quic://{}", self.address),
            IggyTransport::Http => format!("http://{}", self.address),
        }
    }
}

/// `partitioning`: which partition a message goes to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IggyPartitioning {
    /// Round-robin over the partitions, chosen by the server (default).
    #[default]
    Balanced,
    /// Every message to one partition (`"partition:N"`).
    Partition(u32),
    /// By the value of a field of the document (`"field:NAME"`, a top-level
    /// field or a JSON pointer like `/host/name`): equal values, same partition.
    Field(String),
}

impl<'de> Deserialize<'de> for IggyPartitioning {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        IggyPartitioning::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl IggyPartitioning {
    /// `balanced`, `partition:N` or `field:NAME`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a partitioning: use \"balanced\", \"partition:N\" or \"field:NAME\""
            )
        };
        if text == "balanced" {
            return Ok(IggyPartitioning::Balanced);
        }
        match text.split_once(':') {
            Some(("partition", n)) => n
                .trim()
                .parse()
                .map(IggyPartitioning::Partition)
                .map_err(|_| bad()),
            Some(("field", name)) if !name.trim().is_empty() => {
                Ok(IggyPartitioning::Field(name.trim().to_owned()))
            }
            _ => Err(bad()),
        }
    }
}

/// The connection keys, accepted flat in `[output]`/`[input]` next to the
/// table's own keys.
const CONNECTION_KEYS: &[&str] = &[
    "address",
    "transport",
    "username",
    "password",
    "token",
    "tls",
    "tls_ca_file",
    "tls_domain",
];

/// Splits a flat table into the connection keys and the rest, each deserialized
/// with unknown keys refused (serde cannot refuse them through `flatten`).
fn split_table<'de, D, T>(d: D) -> std::result::Result<(IggyConnection, T), D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    let table = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    let (connection, rest): (serde_json::Map<_, _>, serde_json::Map<_, _>) = table
        .into_iter()
        .partition(|(k, _)| CONNECTION_KEYS.contains(&k.as_str()));
    let connection = serde_json::from_value(connection.into()).map_err(D::Error::custom)?;
    let rest = serde_json::from_value(rest.into()).map_err(D::Error::custom)?;
    Ok((connection, rest))
}

/// `[output] kind = "iggy"`: the connection keys plus these.
#[derive(Debug, Clone)]
pub struct IggyOutputConfig {
    /// How to reach the server.
    pub connection: IggyConnection,
    /// Where and how messages go.
    pub options: IggyOutputOptions,
}

impl<'de> Deserialize<'de> for IggyOutputConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (connection, options) = split_table(d)?;
        Ok(IggyOutputConfig {
            connection,
            options,
        })
    }
}

/// The output's own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IggyOutputOptions {
    /// `balanced` (default), `partition:N` or `field:NAME`.
    #[serde(default)]
    pub partitioning: IggyPartitioning,
    /// Create the stream and topic when missing. Default true.
    #[serde(default = "yes")]
    pub create_missing: bool,
    /// Partitions of a topic this output creates. Default 1.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Before the first send, read the last messages of every partition and skip
    /// the documents already there (see docs/iggy.md). Default true.
    #[serde(default = "yes")]
    pub tail_resume: bool,
}

fn yes() -> bool {
    true
}

fn default_partitions() -> u32 {
    DEFAULT_IGGY_PARTITIONS
}

/// Where an Iggy output sends: the one `[[streams]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IggyTarget {
    /// Stream name.
    pub stream: String,
    /// Topic name.
    pub topic: String,
    /// Messages per send request.
    pub batch_length: usize,
}

impl IggyTarget {
    /// The target of `streams` (exactly one entry, `schema` json or absent).
    pub fn from_streams(streams: &[StreamConfig]) -> Result<IggyTarget> {
        let [entry] = streams else {
            return Err(ConnectorError::invalid(
                "streams",
                format!(
                    "has {} entries; kind = \"iggy\" needs exactly one [[streams]] table with stream and topic",
                    streams.len()
                ),
            ));
        };
        if entry.stream.trim().is_empty() {
            return Err(ConnectorError::invalid("streams.stream", "is empty"));
        }
        if entry.topic.trim().is_empty() {
            return Err(ConnectorError::invalid("streams.topic", "is empty"));
        }
        if let Some(schema) = &entry.schema
            && schema != "json"
        {
            return Err(ConnectorError::invalid(
                "streams.schema",
                format!(
                    "`{schema}` is not supported: messages carry the document's JSON, use \"json\""
                ),
            ));
        }
        let batch_length = match entry.batch_length {
            None => DEFAULT_IGGY_BATCH_LENGTH,
            Some(0) => {
                return Err(ConnectorError::invalid(
                    "streams.batch_length",
                    "must be at least 1",
                ));
            }
            Some(n) => n as usize,
        };
        if let Some(linger) = &entry.linger_time {
            humantime::parse_duration(linger).map_err(|e| {
                ConnectorError::invalid(
                    "streams.linger_time",
                    format!("`{linger}` is not a duration: {e}"),
                )
            })?;
        }
        Ok(IggyTarget {
            stream: entry.stream.clone(),
            topic: entry.topic.clone(),
            batch_length,
        })
    }
}

impl IggyOutputConfig {
    /// Checks the values; errors name the key.
    pub fn validate(&self) -> Result<()> {
        self.connection.validate("output")?;
        let o = &self.options;
        if o.partitions == 0 {
            return Err(ConnectorError::invalid(
                "output.partitions",
                "must be at least 1",
            ));
        }
        if let IggyPartitioning::Partition(n) = o.partitioning
            && o.create_missing
            && n >= o.partitions
        {
            return Err(ConnectorError::invalid(
                "output.partitioning",
                format!(
                    "names partition {n}, but a topic created here has partitions = {} (0..{})",
                    o.partitions, o.partitions
                ),
            ));
        }
        Ok(())
    }
}

/// Default `consumer` of the Iggy input.
pub const DEFAULT_IGGY_CONSUMER: &str = "es-connector-sink";

/// `[input] kind = "iggy"` of `es-connector sink`: the connection keys plus these.
#[derive(Debug, Clone)]
pub struct IggyInputConfig {
    /// How to reach the server.
    pub connection: IggyConnection,
    /// What to consume and how.
    pub options: IggyInputOptions,
}

impl<'de> Deserialize<'de> for IggyInputConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (connection, options) = split_table(d)?;
        Ok(IggyInputConfig {
            connection,
            options,
        })
    }
}

/// The input's own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IggyInputOptions {
    /// The consumer whose offsets the sink stores, one per partition (the old
    /// key `consumer_group` names the same thing). Default `es-connector-sink`.
    #[serde(default = "default_consumer", alias = "consumer_group")]
    pub consumer: String,
    /// The partitions this sink reads; default: every partition of the topic
    /// (looked up again when all are caught up, so new ones are picked up).
    /// Sinks sharing one `consumer` must be given disjoint lists.
    #[serde(default)]
    pub partitions: Option<Vec<u32>>,
    /// Wait between polls that found nothing. Default 1s.
    #[serde(
        default = "default_poll_interval",
        with = "state_core::humantime_duration"
    )]
    pub poll_interval: std::time::Duration,
}

fn default_consumer() -> String {
    DEFAULT_IGGY_CONSUMER.into()
}

fn default_poll_interval() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

impl IggyInputConfig {
    /// Checks the values; errors name the key.
    pub fn validate(&self) -> Result<()> {
        self.connection.validate("input")?;
        if self.options.consumer.trim().is_empty() {
            return Err(ConnectorError::invalid("input.consumer", "is empty"));
        }
        if let Some(partitions) = &self.options.partitions {
            if partitions.is_empty() {
                return Err(ConnectorError::invalid(
                    "input.partitions",
                    "is empty: leave the key out to read every partition",
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(p) = partitions.iter().find(|p| !seen.insert(**p)) {
                return Err(ConnectorError::invalid(
                    "input.partitions",
                    format!("names partition {p} twice"),
                ));
            }
        }
        Ok(())
    }
}
