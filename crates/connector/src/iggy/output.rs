//! `[output] kind = "iggy"`: each message into the `[[streams]]` topic, with the
//! source's deterministic id, the `es_*` headers and the document as payload.
//!
//! `send` returns only once the server acknowledged every message, so the source's
//! state advances after Iggy has them. Iggy does not deduplicate by message id, so
//! before its first send the output reads the last messages of every partition
//! ([`Output::recently_delivered`]); the run loop skips the documents already
//! there, which a crash between a send and the state save would otherwise repeat.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;
use iggy::prelude::{
    Consumer, HeaderKey, HeaderValue, Identifier, IggyClient, IggyError, IggyMessage,
    MessageClient, Partitioning, PollingStrategy, StreamClient, TopicClient, TopicCreateOptions,
};

use super::{connect, describe_error, is_retryable, name_id};
use crate::config::{IggyOutputConfig, IggyPartitioning, IggyTarget};
use crate::message::{Message, MessageId};
use crate::output::{Output, OutputError};

/// Messages per poll when `tail_resume` reads a partition's tail.
const TAIL_PAGE: u32 = 1000;

/// The Iggy output.
#[derive(Debug)]
pub struct IggyOutput {
    config: IggyOutputConfig,
    target: IggyTarget,
    name: String,
    connected: Option<Connected>,
    /// The last send failed: before the next one, look at what reached the topic.
    failed_send: bool,
}

#[derive(Debug)]
struct Connected {
    client: IggyClient,
    stream: Identifier,
    topic: Identifier,
}

impl IggyOutput {
    /// An output for `config` sending to `target`; connects on first use.
    pub fn new(config: IggyOutputConfig, target: IggyTarget) -> Self {
        let name = format!(
            "iggy {}/{}/{}",
            config.connection.describe(),
            target.stream,
            target.topic
        );
        IggyOutput {
            config,
            target,
            name,
            connected: None,
            failed_send: false,
        }
    }

    fn error(&self, e: &IggyError, what: &str) -> OutputError {
        output_error(&self.name, e, what)
    }

    /// Connects, and creates the stream and topic when missing (if allowed).
    async fn connection(&mut self) -> Result<&Connected, OutputError> {
        if self.connected.is_none() {
            let client = connect(&self.config.connection)
                .await
                .map_err(|e| self.error(&e, "cannot connect"))?;
            let stream = name_id(&self.target.stream).map_err(|e| self.error(&e, "stream"))?;
            let topic = name_id(&self.target.topic).map_err(|e| self.error(&e, "topic"))?;
            self.ensure_topic(&client, &stream, &topic).await?;
            self.connected = Some(Connected {
                client,
                stream,
                topic,
            });
        }
        match &self.connected {
            Some(c) => Ok(c),
            None => Err(OutputError::Unavailable {
                output: self.name.clone(),
                reason: "not connected".into(),
            }),
        }
    }

    async fn ensure_topic(
        &self,
        client: &IggyClient,
        stream: &Identifier,
        topic: &Identifier,
    ) -> Result<(), OutputError> {
        let options = &self.config.options;
        let (s, t) = (&self.target.stream, &self.target.topic);
        let stream_exists = client
            .get_stream(stream)
            .await
            .map_err(|e| self.error(&e, &format!("cannot look up stream `{s}`")))?
            .is_some();
        if !stream_exists {
            if !options.create_missing {
                return Err(self.error(
                    &IggyError::StreamNameNotFound(s.clone()),
                    &format!("stream `{s}` does not exist"),
                ));
            }
            match client.create_stream(s).await {
                Ok(_) => tracing::info!(stream = %s, "created the Iggy stream"),
                // Another instance created it first.
                Err(IggyError::StreamNameAlreadyExists(_)) => {}
                Err(e) => return Err(self.error(&e, &format!("cannot create stream `{s}`"))),
            }
        }
        let topic_exists = client
            .get_topic(stream, topic)
            .await
            .map_err(|e| self.error(&e, &format!("cannot look up topic `{s}/{t}`")))?
            .is_some();
        if !topic_exists {
            if !options.create_missing {
                return Err(self.error(
                    &IggyError::TopicNameNotFound(t.clone(), s.clone()),
                    &format!("topic `{s}/{t}` does not exist"),
                ));
            }
            let create = TopicCreateOptions {
                partitions_count: Some(options.partitions),
                ..TopicCreateOptions::default()
            };
            let created = match client.create_topic(stream, t, &create).await {
                Err(IggyError::UnsupportedOptionKey(key)) => {
                    // Version skew: this client always sends option keys (durability)
                    // that some servers do not know. Create it with no options block,
                    // i.e. the server's defaults.
                    tracing::warn!(stream = %s, topic = %t, refused_key = %key, "the Iggy server refused a topic option this client sends by default; creating the topic with the server's default options");
                    create_topic_with_server_defaults(client, s, t, options.partitions).await
                }
                other => other.map(|_| ()),
            };
            match created {
                Ok(()) => {
                    tracing::info!(stream = %s, topic = %t, partitions = options.partitions, "created the Iggy topic")
                }
                Err(IggyError::TopicNameAlreadyExists(_, _)) => {}
                Err(e) => {
                    return Err(self.error(&e, &format!("cannot create topic `{s}/{t}`")));
                }
            }
        }
        Ok(())
    }

    /// The messages of `batch` grouped by partitioning, each group in batch order.
    fn groups(
        &self,
        batch: &[Message],
    ) -> Result<Vec<(Partitioning, Vec<IggyMessage>)>, OutputError> {
        let mut groups: Vec<(Partitioning, Vec<IggyMessage>)> = Vec::new();
        let mut by_key: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for message in batch {
            let m = self.to_iggy(message)?;
            let partitioning = match &self.config.options.partitioning {
                IggyPartitioning::Balanced => None,
                IggyPartitioning::Partition(n) => {
                    Some((Vec::new(), Partitioning::partition_id(*n)))
                }
                IggyPartitioning::Field(field) => {
                    let key = field_key(message, field);
                    let p = Partitioning::messages_key(&key).map_err(|e| OutputError::Refused {
                        output: self.name.clone(),
                        reason: format!(
                            "the value of `{field}` in document {} cannot be a partition key: {e}",
                            message.headers.get("es_id").map_or("?", String::as_str)
                        ),
                    })?;
                    Some((key, p))
                }
            };
            match partitioning {
                None => match groups.first_mut() {
                    Some((_, ms)) => ms.push(m),
                    None => groups.push((Partitioning::balanced(), vec![m])),
                },
                Some((key, p)) => {
                    let index = *by_key.entry(key).or_insert_with(|| {
                        groups.push((p, Vec::new()));
                        groups.len() - 1
                    });
                    groups[index].1.push(m);
                }
            }
        }
        Ok(groups)
    }

    fn to_iggy(&self, message: &Message) -> Result<IggyMessage, OutputError> {
        let refused = |reason: String| OutputError::Refused {
            output: self.name.clone(),
            reason: format!(
                "document {}: {reason}",
                message.headers.get("es_id").map_or("?", String::as_str)
            ),
        };
        let mut headers = BTreeMap::new();
        for (k, v) in &message.headers {
            let key = HeaderKey::try_from(*k).map_err(|e| refused(format!("header {k}: {e}")))?;
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|e| refused(format!("header {k}: {e}")))?;
            headers.insert(key, value);
        }
        IggyMessage::builder()
            .id(message.id.0)
            .payload(Bytes::copy_from_slice(message.payload.get().as_bytes()))
            .user_headers(headers)
            .build()
            .map_err(|e| refused(e.to_string()))
    }
}

/// `CreateTopic` with an empty options block: the server applies its defaults.
/// Over the binary transports only (the HTTP transport has no binary path).
async fn create_topic_with_server_defaults(
    client: &IggyClient,
    stream: &str,
    topic: &str,
    partitions: u32,
) -> Result<(), IggyError> {
    use iggy_binary_protocol::WireEncode;
    use iggy_binary_protocol::codes::CREATE_TOPIC_CODE;
    use iggy_binary_protocol::primitives::options::WireOptions;
    use iggy_binary_protocol::requests::topics::create_topic::CreateTopicRequest;
    use iggy_binary_protocol::{WireIdentifier, WireName};
    let request = CreateTopicRequest {
        stream_id: WireIdentifier::named(stream).map_err(|_| IggyError::InvalidFormat)?,
        partitions_count: partitions,
        name: WireName::new(topic).map_err(|_| IggyError::InvalidFormat)?,
        options: WireOptions::empty(),
    };
    client
        .send_binary_request(CREATE_TOPIC_CODE, request.to_bytes())
        .await
        .map(|_| ())
}

/// `e` as an output error of `output`: retryable or refused.
fn output_error(output: &str, e: &IggyError, what: &str) -> OutputError {
    let reason = describe_error(e, what);
    let output = output.to_owned();
    if is_retryable(e) {
        OutputError::Unavailable { output, reason }
    } else {
        OutputError::Refused { output, reason }
    }
}

/// The bytes of a document's field used as partition key: a top-level field
/// name or a JSON pointer; strings by their text, other values by their JSON.
/// A missing field gives the empty key (one partition for all such documents).
fn field_key(message: &Message, field: &str) -> Vec<u8> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(message.payload.get()) else {
        return Vec::new();
    };
    let value = if field.starts_with('/') {
        doc.pointer(field)
    } else {
        doc.get(field)
    };
    match value {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => s.as_bytes().to_vec(),
        Some(other) => other.to_string().into_bytes(),
    }
}

#[async_trait]
impl Output for IggyOutput {
    async fn send(&mut self, batch: &[Message]) -> Result<(), OutputError> {
        // A send that failed part-way may have stored some of its requests: skip
        // the messages the topic's tail already holds.
        let kept: Vec<Message>;
        let batch = if self.failed_send {
            let there = self.recently_delivered(2 * batch.len()).await?;
            kept = batch
                .iter()
                .filter(|m| !there.contains(&m.id))
                .cloned()
                .collect();
            if kept.len() < batch.len() {
                tracing::info!(
                    output = %self.name,
                    skipped = batch.len() - kept.len(),
                    "part of the batch reached Iggy before the failure; sending only the rest"
                );
            }
            &kept[..]
        } else {
            batch
        };
        let groups = self.groups(batch)?;
        let chunk = self.target.batch_length;
        let c = self.connection().await?;
        let result = async {
            for (partitioning, mut messages) in groups {
                for part in messages.chunks_mut(chunk) {
                    c.client
                        .send_messages(&c.stream, &c.topic, &partitioning, part)
                        .await?;
                }
            }
            Ok::<(), IggyError>(())
        };
        match result.await {
            Ok(()) => {
                self.failed_send = false;
                Ok(())
            }
            Err(e) => {
                // Reconnect from scratch on the next attempt.
                self.connected = None;
                self.failed_send = true;
                Err(self.error(&e, "cannot send"))
            }
        }
    }

    /// Reads the last `window` messages of each partition a page of
    /// [`TAIL_PAGE`] at a time and keeps their ids only: memory is one page of
    /// messages plus 16 bytes (and the set's overhead) per id.
    async fn recently_delivered(
        &mut self,
        window: usize,
    ) -> Result<HashSet<MessageId>, OutputError> {
        if !self.config.options.tail_resume || window == 0 {
            return Ok(HashSet::new());
        }
        let window = u32::try_from(window).unwrap_or(u32::MAX);
        let name = self.name.clone();
        let c = self.connection().await?;
        let details = match c.client.get_topic(&c.stream, &c.topic).await {
            Ok(Some(details)) => details,
            Ok(None) => return Ok(HashSet::new()),
            Err(e) => return Err(output_error(&name, &e, "cannot read the topic")),
        };
        let consumer =
            Consumer::new(Identifier::numeric(1).map_err(|e| output_error(&name, &e, "consumer"))?);
        let mut ids = HashSet::new();
        for partition in &details.partitions {
            if partition.messages_count == 0 {
                continue;
            }
            // Page through the tail, keeping only the 16-byte ids: at most
            // TAIL_PAGE whole messages are held at a time.
            let end = partition.current_offset + 1;
            let mut next = end.saturating_sub(u64::from(window));
            while next < end {
                let count =
                    u32::try_from((end - next).min(u64::from(TAIL_PAGE))).unwrap_or(TAIL_PAGE);
                let polled = c
                    .client
                    .poll_messages(
                        &c.stream,
                        &c.topic,
                        Some(partition.id),
                        &consumer,
                        &PollingStrategy::offset(next),
                        count,
                        false,
                    )
                    .await
                    .map_err(|e| {
                        output_error(
                            &name,
                            &e,
                            &format!("cannot read the tail of partition {}", partition.id),
                        )
                    })?;
                let Some(last) = polled.messages.last().map(|m| m.header.offset) else {
                    // Nothing more there (retention, or fewer messages than counted).
                    break;
                };
                if last < next {
                    break;
                }
                ids.extend(polled.messages.iter().map(|m| MessageId(m.header.id)));
                next = last + 1;
            }
        }
        tracing::info!(output = %name, messages = ids.len(), partitions = details.partitions.len(), "read the topic's tail to skip documents already delivered");
        Ok(ids)
    }

    async fn close(&mut self) -> Result<(), OutputError> {
        if let Some(c) = self.connected.take() {
            use iggy::prelude::Client;
            if let Err(e) = c.client.disconnect().await {
                tracing::debug!(error = %e, "disconnecting from Iggy");
            }
        }
        Ok(())
    }
}
