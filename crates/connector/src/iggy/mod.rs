//! Apache Iggy: the `iggy` output (documents into a stream's topic) and the
//! `iggy` input of the sink direction (a topic into Elasticsearch).
//!
//! Supported servers: those speaking the binary protocol of the `iggy` client
//! crate 0.11 (apache/iggy master of 2026-08, cc269ef, was tested). Version skew
//! shows up as refused commands; they are reported naming what was refused and
//! what to do (see [`describe_error`]).

pub(crate) mod input;
mod output;

use std::str::FromStr;

use iggy::prelude::{
    AutoLogin, Client, Credentials, Identifier, IggyClient, IggyError, NonZeroIggyDuration,
};
use secrecy::SecretString;

use crate::config::{IggyConnection, IggyTransport};

pub use input::{Consumed, IggyInput, PartitionProgress, Polled};
pub use output::IggyOutput;

/// How long to wait between reconnection attempts of the TCP/QUIC client.
const RECONNECT_INTERVAL: &str = "1s";
/// Reconnection attempts of the client before an operation fails; the run loop
/// then retries with its own backoff on a new connection.
const RECONNECT_RETRIES: u32 = 3;
/// The longest wait for a connection (and its login) to be established.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Builds a client for `c` and connects (logging in).
pub(crate) async fn connect(c: &IggyConnection) -> Result<IggyClient, IggyError> {
    let credentials = match (&c.username, &c.password, &c.token) {
        (_, _, Some(token)) => {
            Credentials::PersonalAccessToken(SecretString::from(token.expose().to_owned()))
        }
        (Some(user), Some(password), None) => Credentials::UsernamePassword(
            user.clone(),
            SecretString::from(password.expose().to_owned()),
        ),
        _ => return Err(IggyError::InvalidCredentials),
    };
    let interval = NonZeroIggyDuration::from_str(RECONNECT_INTERVAL)
        .map_err(|_| IggyError::InvalidConfiguration)?;
    let client = match c.transport {
        IggyTransport::Tcp => {
            let mut builder = IggyClient::builder()
                .with_tcp()
                .with_server_address(c.address.clone())
                .with_auto_sign_in(AutoLogin::Enabled(credentials))
                .with_reconnection_max_retries(Some(RECONNECT_RETRIES))
                .with_reconnection_interval(interval)
                .with_tls_enabled(c.tls);
            if let Some(ca) = &c.tls_ca_file {
                builder = builder.with_tls_ca_file(ca.display().to_string());
            }
            if let Some(domain) = &c.tls_domain {
                builder = builder.with_tls_domain(domain.clone());
            }
            builder.build()?
        }
        IggyTransport::Quic => {
            let mut builder = IggyClient::builder()
                .with_quic()
                .with_server_address(c.address.clone())
                .with_auto_sign_in(AutoLogin::Enabled(credentials))
                .with_reconnection_max_retries(Some(RECONNECT_RETRIES))
                .with_reconnection_interval(interval);
            if let Some(domain) = &c.tls_domain {
                builder = builder.with_server_name(domain.clone());
            }
            builder.build()?
        }
        // Refused by `IggyConnection::validate` (see `IggyTransport::Http`).
        IggyTransport::Http => return Err(IggyError::FeatureUnavailable),
    };
    // A server that accepts the connection but never completes the handshake
    // must not hang the caller.
    tokio::time::timeout(CONNECT_TIMEOUT, client.connect())
        .await
        .map_err(|_| IggyError::CannotEstablishConnection)??;
    Ok(client)
}

/// A stream or topic name as an identifier.
pub(crate) fn name_id(name: &str) -> Result<Identifier, IggyError> {
    Identifier::named(name)
}

/// Whether sending the same thing again later can succeed: the server is
/// unreachable, restarting or busy. Everything else (credentials, permissions,
/// refused options, bad messages) needs a person.
pub(crate) fn is_retryable(e: &IggyError) -> bool {
    !matches!(
        e,
        IggyError::Unauthenticated
            | IggyError::Unauthorized
            | IggyError::InvalidCredentials
            | IggyError::UnsupportedOptionKey(_)
            | IggyError::InvalidMessagePayloadLength
            | IggyError::TooBigMessagePayload
            | IggyError::TooBigUserHeaders
            | IggyError::InvalidConfiguration
            | IggyError::StreamNameNotFound(_)
            | IggyError::TopicNameNotFound(_, _)
            | IggyError::StreamIdNotFound(_)
            | IggyError::TopicIdNotFound(_, _)
            | IggyError::PartitionNotFound(_, _, _)
            | IggyError::FeatureUnavailable
    )
}

/// The error in words, with what to do for the refusals a person must fix.
pub(crate) fn describe_error(e: &IggyError, what: &str) -> String {
    let hint = match e {
        IggyError::UnsupportedOptionKey(key) => format!(
            "; the server does not know the option `{key}` this client (iggy crate 0.11) sends: \
             it is older or newer than the tested apache/iggy cc269ef. Create the stream and \
             topic with the server's own tools (e.g. `iggy topic create`) and set \
             create_missing = false, or run a matching server version"
        ),
        IggyError::InvalidCredentials | IggyError::Unauthenticated => {
            "; check output/input username and password (or token)".to_owned()
        }
        IggyError::Unauthorized => {
            "; the user lacks the permission; grant it on the server".to_owned()
        }
        IggyError::StreamNameNotFound(_) | IggyError::TopicNameNotFound(_, _) => {
            "; create it, or set create_missing = true".to_owned()
        }
        IggyError::CannotEstablishConnection
        | IggyError::NotConnected
        | IggyError::Disconnected => {
            "; is the server up at that address? With tls = true: did tls_ca_file sign the \
             server's certificate, and does tls_domain match its name?"
                .to_owned()
        }
        IggyError::FeatureUnavailable => {
            "; the server does not support this command: check the server version".to_owned()
        }
        _ => String::new(),
    };
    format!("{what}: {e} (code {}){hint}", e.as_code())
}

/// What a topic holds: per partition message counts, and over all messages the
/// distinct message ids and `es_id` headers (duplicates show as a difference).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TopicCensus {
    /// `[partition id, messages]`.
    pub partitions: Vec<(u32, u64)>,
    /// Messages read.
    pub messages: u64,
    /// Distinct message ids among them.
    pub distinct_ids: u64,
    /// Distinct `es_id` headers among them (messages without one are not counted).
    pub distinct_documents: u64,
}

/// One message of a topic, as [`read_topic`] hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    /// Its partition.
    pub partition: u32,
    /// Its message id.
    pub id: u128,
    /// Its `es_id` header, if it has one.
    pub es_id: Option<String>,
    /// Its `es_index` header, if it has one.
    pub es_index: Option<String>,
    /// Its `es_timestamp` header, if it has one.
    pub es_timestamp: Option<String>,
}

/// Reads every message of `target`, partition by partition from offset 0,
/// handing each to `each`; returns `[partition id, messages]` as the server
/// counts them.
pub async fn read_topic(
    connection: &IggyConnection,
    target: &crate::config::IggyTarget,
    mut each: impl FnMut(TopicMessage),
) -> Result<Vec<(u32, u64)>, String> {
    use iggy::prelude::{Consumer, MessageClient, PollingStrategy, TopicClient};
    let client = connect(connection)
        .await
        .map_err(|e| describe_error(&e, "cannot connect"))?;
    let stream = name_id(&target.stream).map_err(|e| describe_error(&e, "stream"))?;
    let topic = name_id(&target.topic).map_err(|e| describe_error(&e, "topic"))?;
    let details = client
        .get_topic(&stream, &topic)
        .await
        .map_err(|e| describe_error(&e, "cannot read the topic"))?
        .ok_or_else(|| format!("topic `{}/{}` does not exist", target.stream, target.topic))?;
    let consumer = Consumer::new(Identifier::numeric(1).map_err(|e| e.to_string())?);
    let mut partitions = Vec::with_capacity(details.partitions.len());
    for p in &details.partitions {
        partitions.push((p.id, p.messages_count));
        let mut offset = 0;
        while offset < p.messages_count {
            let polled = client
                .poll_messages(
                    &stream,
                    &topic,
                    Some(p.id),
                    &consumer,
                    &PollingStrategy::offset(offset),
                    1000,
                    false,
                )
                .await
                .map_err(|e| describe_error(&e, &format!("cannot read partition {}", p.id)))?;
            if polled.messages.is_empty() {
                break;
            }
            for m in &polled.messages {
                let headers = m.user_headers_map().ok().flatten();
                let header = |name: &str| {
                    headers.as_ref().and_then(|headers| {
                        headers
                            .iter()
                            .find(|(k, _)| k.to_string_value() == name)
                            .map(|(_, v)| v.to_string_value())
                    })
                };
                each(TopicMessage {
                    partition: p.id,
                    id: m.header.id,
                    es_id: header(crate::message::HEADER_ID),
                    es_index: header(crate::message::HEADER_INDEX),
                    es_timestamp: header(crate::message::HEADER_TIMESTAMP),
                });
            }
            offset += polled.messages.len() as u64;
        }
    }
    Ok(partitions)
}

/// Reads every message of `target` and counts.
pub async fn topic_census(
    connection: &IggyConnection,
    target: &crate::config::IggyTarget,
) -> Result<TopicCensus, String> {
    let mut messages = 0;
    let mut ids = std::collections::HashSet::new();
    let mut documents = std::collections::HashSet::new();
    let partitions = read_topic(connection, target, |m| {
        messages += 1;
        ids.insert(m.id);
        if let Some(es_id) = m.es_id {
            documents.insert(es_id);
        }
    })
    .await?;
    Ok(TopicCensus {
        partitions,
        messages,
        distinct_ids: ids.len() as u64,
        distinct_documents: documents.len() as u64,
    })
}
