//! `[input] kind = "iggy"` of `es-connector sink`: a topic read partition by
//! partition, each from the offset this sink stored for it.
//!
//! The sink names every partition it polls and the offset it polls from, and
//! stores an offset only for the partition its messages came from, only after
//! their outcome is known ([`IggyInput::commit`]). Nothing depends on the
//! server's consumer-group assignment or on a position the server keeps for a
//! member: a crash anywhere re-reads at most the batch in flight, and a
//! restarted sink reads every partition again from what it stored. (A
//! consumer-group sink lost whole batches after a SIGKILL on a 3-partition topic
//! of the tested server, apache/iggy cc269ef: docs/iggy.md.)

use std::collections::BTreeMap;

use iggy::prelude::{
    Consumer, ConsumerGroupClient, ConsumerOffsetClient, Identifier, IggyClient, IggyError,
    IggyMessage, MessageClient, PollingStrategy, TopicClient,
};
use serde_json::value::RawValue;

use super::{connect, describe_error, is_retryable, name_id};
use crate::config::{IggyInputConfig, IggyTarget};
use crate::error::ConnectorError;
use crate::message::{
    HEADER_ID, HEADER_INDEX, HEADER_SEQ_NO, HEADER_TIMESTAMP, Message, MessageId,
};

/// One consumed message: a [`Message`] when its payload is JSON, else what it was.
#[derive(Debug)]
pub enum Consumed {
    /// Ready to index.
    Message(Message),
    /// Not indexable: payload not JSON; for the dead-letter output.
    Invalid {
        /// The Iggy message id.
        id: MessageId,
        /// The `es_*` headers it carries.
        headers: BTreeMap<&'static str, String>,
        /// The payload, lossily as text.
        payload: String,
        /// Why.
        reason: String,
    },
}

/// A polled batch of one partition.
#[derive(Debug)]
pub struct Polled {
    /// The partition the messages were read from.
    pub partition: u32,
    /// The offset of the first message.
    pub first_offset: u64,
    /// The offset of the last message (what [`IggyInput::commit`] stores).
    pub last_offset: u64,
    /// The messages with their offsets, in offset order.
    pub messages: Vec<(u64, Consumed)>,
}

/// How far one partition has been consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The partition.
    pub partition: u32,
    /// The next offset the sink reads (everything before it is done).
    pub next_offset: u64,
    /// Messages the partition holds (its current offset + 1; 0 when empty).
    pub end_offset: u64,
}

/// A reader of the `[[streams]]` topic with offsets stored per partition.
#[derive(Debug)]
pub struct IggyInput {
    config: IggyInputConfig,
    target: IggyTarget,
    name: String,
    client: Option<Connected>,
    /// The next offset to read, per partition; learnt from the server on first
    /// use and moved only by `commit`.
    next: BTreeMap<u32, u64>,
    /// Where the round-robin over partitions goes on.
    turn: usize,
}

#[derive(Debug)]
struct Connected {
    client: IggyClient,
    stream: Identifier,
    topic: Identifier,
    consumer: Consumer,
    /// The partitions read, in order.
    partitions: Vec<u32>,
}

impl IggyInput {
    /// An input for `config` reading `target`; connects on first use.
    pub fn new(config: IggyInputConfig, target: IggyTarget) -> Self {
        let name = format!(
            "iggy {}/{}/{} (consumer {})",
            config.connection.describe(),
            target.stream,
            target.topic,
            config.options.consumer
        );
        IggyInput {
            config,
            target,
            name,
            client: None,
            next: BTreeMap::new(),
            turn: 0,
        }
    }

    /// What this input reads, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, e: &IggyError, what: &str) -> ConnectorError {
        ConnectorError::Input {
            input: self.name.clone(),
            reason: describe_error(e, what),
            retryable: is_retryable(e),
        }
    }

    fn refused(&self, reason: String) -> ConnectorError {
        ConnectorError::Input {
            input: self.name.clone(),
            reason,
            retryable: false,
        }
    }

    async fn connected(&mut self) -> Result<&Connected, ConnectorError> {
        if self.client.is_none() {
            let client = connect(&self.config.connection)
                .await
                .map_err(|e| self.error(&e, "cannot connect"))?;
            let stream = name_id(&self.target.stream).map_err(|e| self.error(&e, "stream"))?;
            let topic = name_id(&self.target.topic).map_err(|e| self.error(&e, "topic"))?;
            let consumer_name = &self.config.options.consumer;
            let consumer = Consumer::new(
                name_id(consumer_name).map_err(|e| self.error(&e, "input.consumer"))?,
            );
            let mut connected = Connected {
                client,
                stream,
                topic,
                consumer,
                partitions: Vec::new(),
            };
            connected.partitions = self.partitions_of(&connected).await?;
            self.client = Some(connected);
        }
        self.client.as_ref().ok_or_else(|| ConnectorError::Input {
            input: self.name.clone(),
            reason: "not connected".into(),
            retryable: true,
        })
    }

    /// The partitions to read: `partitions` if configured (each must exist),
    /// else every partition of the topic.
    async fn partitions_of(&self, c: &Connected) -> Result<Vec<u32>, ConnectorError> {
        let (s, t) = (&self.target.stream, &self.target.topic);
        let details = c
            .client
            .get_topic(&c.stream, &c.topic)
            .await
            .map_err(|e| self.error(&e, &format!("cannot look up topic `{s}/{t}`")))?
            .ok_or_else(|| {
                self.error(
                    &IggyError::TopicNameNotFound(t.clone(), s.clone()),
                    &format!("topic `{s}/{t}` does not exist"),
                )
            })?;
        let existing: Vec<u32> = details.partitions.iter().map(|p| p.id).collect();
        match &self.config.options.partitions {
            None => Ok(existing),
            Some(wanted) => match wanted.iter().find(|p| !existing.contains(p)) {
                Some(p) => Err(self.refused(format!(
                    "input.partitions names partition {p}, but topic `{s}/{t}` has partitions \
                     {existing:?}"
                ))),
                None => Ok(wanted.clone()),
            },
        }
    }

    /// The next offset to read on `partition`: the stored offset + 1, or 0.
    /// A partition this consumer never stored an offset for, but which an
    /// earlier (consumer-group) version of the sink did, continues from the
    /// group's offset of the same name.
    async fn next_offset(&mut self, partition: u32) -> Result<u64, ConnectorError> {
        if let Some(next) = self.next.get(&partition) {
            return Ok(*next);
        }
        let group_name = self.config.options.consumer.clone();
        let c = self.connected().await?;
        let stored = c
            .client
            .get_consumer_offset(&c.consumer, &c.stream, &c.topic, Some(partition))
            .await;
        let next = match stored {
            Ok(Some(info)) => info.stored_offset + 1,
            Ok(None) => group_offset(c, &group_name, partition).await.unwrap_or(0),
            Err(e) => {
                let e = self.error(
                    &e,
                    &format!("cannot read the offset of partition {partition}"),
                );
                self.client = None;
                return Err(e);
            }
        };
        self.next.insert(partition, next);
        Ok(next)
    }

    /// The next messages of one partition after its stored offset (at most
    /// `batch_length`), partitions taken in turn; `None` when every partition
    /// is caught up.
    pub async fn poll(&mut self) -> Result<Option<Polled>, ConnectorError> {
        let count = u32::try_from(self.target.batch_length).unwrap_or(u32::MAX);
        let partitions = self.connected().await?.partitions.clone();
        for step in 0..partitions.len() {
            let index = (self.turn + step) % partitions.len();
            let partition = partitions[index];
            let from = self.next_offset(partition).await?;
            let c = self.connected().await?;
            let polled = c
                .client
                .poll_messages(
                    &c.stream,
                    &c.topic,
                    Some(partition),
                    &c.consumer,
                    &PollingStrategy::offset(from),
                    count,
                    false,
                )
                .await;
            let polled = match polled {
                Ok(p) => p,
                Err(e) => {
                    let e = self.error(&e, &format!("cannot poll partition {partition}"));
                    self.client = None;
                    return Err(e);
                }
            };
            let (Some(first), Some(last)) = (polled.messages.first(), polled.messages.last())
            else {
                continue;
            };
            let (first_offset, last_offset) = (first.header.offset, last.header.offset);
            let in_order = polled
                .messages
                .windows(2)
                .all(|w| w[0].header.offset < w[1].header.offset);
            if polled.partition_id != partition || first_offset < from || !in_order {
                // Storing an offset for such an answer could skip messages.
                return Err(self.refused(format!(
                    "the server answered a poll of partition {partition} from offset {from} \
                     with partition {} offsets {first_offset}..={last_offset}{}; nothing was \
                     stored. Check the server version (apache/iggy cc269ef was tested)",
                    polled.partition_id,
                    if in_order { "" } else { " out of order" }
                )));
            }
            if first_offset > from {
                tracing::warn!(
                    partition,
                    missing = ?(from..first_offset),
                    "messages of the partition are gone before the sink read them \
                     (deleted by the topic's retention?)"
                );
            }
            self.turn = index + 1;
            return Ok(Some(Polled {
                partition,
                first_offset,
                last_offset,
                messages: polled
                    .messages
                    .iter()
                    .map(|m| (m.header.offset, consumed(m)))
                    .collect(),
            }));
        }
        // Caught up: look for new partitions before the next sweep.
        if self.config.options.partitions.is_none()
            && let Some(c) = &self.client
        {
            let fresh = self.partitions_of(c).await?;
            if let Some(c) = self.client.as_mut() {
                c.partitions = fresh;
            }
        }
        Ok(None)
    }

    /// Stores the offset of `polled`'s last message for its partition:
    /// everything of that partition up to it is done.
    pub async fn commit(&mut self, polled: &Polled) -> Result<(), ConnectorError> {
        let c = self.connected().await?;
        let stored = c
            .client
            .store_consumer_offset(
                &c.consumer,
                &c.stream,
                &c.topic,
                Some(polled.partition),
                polled.last_offset,
            )
            .await;
        if let Err(e) = stored {
            let e = self.error(&e, "cannot store the consumer offset");
            self.client = None;
            return Err(e);
        }
        self.next.insert(polled.partition, polled.last_offset + 1);
        Ok(())
    }

    /// Where each partition read stands: what was consumed and what it holds.
    pub async fn progress(&mut self) -> Result<Vec<PartitionProgress>, ConnectorError> {
        let partitions = self.connected().await?.partitions.clone();
        let c = self.connected().await?;
        let details = c
            .client
            .get_topic(&c.stream, &c.topic)
            .await
            .map_err(|e| self.error(&e, "cannot look up the topic"))?;
        let ends: BTreeMap<u32, u64> = details
            .map(|d| {
                d.partitions
                    .iter()
                    .map(|p| {
                        (
                            p.id,
                            if p.messages_count == 0 {
                                0
                            } else {
                                p.current_offset + 1
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::with_capacity(partitions.len());
        for partition in partitions {
            out.push(PartitionProgress {
                partition,
                next_offset: self.next_offset(partition).await?,
                end_offset: ends.get(&partition).copied().unwrap_or(0),
            });
        }
        Ok(out)
    }
}

/// The offset + 1 that a consumer group named `name` stored on `partition`,
/// if the group exists and has one (a sink upgraded from the consumer-group
/// version continues where it was).
async fn group_offset(c: &Connected, name: &str, partition: u32) -> Option<u64> {
    let group = name_id(name).ok()?;
    c.client
        .get_consumer_group(&c.stream, &c.topic, &group)
        .await
        .ok()??;
    let info = c
        .client
        .get_consumer_offset(
            &Consumer::group(group),
            &c.stream,
            &c.topic,
            Some(partition),
        )
        .await
        .ok()??;
    tracing::warn!(
        partition,
        offset = info.stored_offset,
        group = name,
        "no offset of this sink's own yet: continuing after the consumer group's stored offset"
    );
    Some(info.stored_offset + 1)
}

/// An Iggy message as a [`Message`]: its id, the `es_*` headers it carries, its
/// JSON payload.
pub(crate) fn consumed(m: &IggyMessage) -> Consumed {
    let id = MessageId(m.header.id);
    let mut headers = BTreeMap::new();
    if let Ok(Some(map)) = m.user_headers_map() {
        for (k, v) in map {
            let key = k.to_string_value();
            for known in [HEADER_INDEX, HEADER_ID, HEADER_TIMESTAMP, HEADER_SEQ_NO] {
                if key == known {
                    headers.insert(known, v.to_string_value());
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&m.payload);
    match RawValue::from_string(text.to_string()) {
        Ok(payload) => Consumed::Message(Message {
            id,
            headers,
            payload,
        }),
        Err(e) => Consumed::Invalid {
            id,
            headers,
            payload: text.into_owned(),
            reason: format!("the payload is not JSON: {e}"),
        },
    }
}
