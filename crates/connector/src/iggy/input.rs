//! `[input] kind = "iggy"` of `es-connector sink`: a topic consumed with a
//! consumer group. Offsets are stored only by [`IggyInput::commit`], which the
//! sink calls once the batch's outcome in Elasticsearch is known.

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
        /// The payload, lossily as text.
        payload: String,
        /// Why.
        reason: String,
    },
}

/// A polled batch of one partition.
#[derive(Debug)]
pub struct Polled {
    /// The partition.
    pub partition: u32,
    /// The offset of the last message (what [`IggyInput::commit`] stores).
    pub last_offset: u64,
    /// The messages, in offset order.
    pub messages: Vec<Consumed>,
}

/// A consumer-group reader of the `[[streams]]` topic.
#[derive(Debug)]
pub struct IggyInput {
    config: IggyInputConfig,
    target: IggyTarget,
    name: String,
    client: Option<Joined>,
}

#[derive(Debug)]
struct Joined {
    client: IggyClient,
    stream: Identifier,
    topic: Identifier,
    consumer: Consumer,
}

impl IggyInput {
    /// An input for `config` reading `target`; connects on first use.
    pub fn new(config: IggyInputConfig, target: IggyTarget) -> Self {
        let name = format!(
            "iggy {}/{}/{} (group {})",
            config.connection.describe(),
            target.stream,
            target.topic,
            config.options.consumer_group
        );
        IggyInput {
            config,
            target,
            name,
            client: None,
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

    async fn joined(&mut self) -> Result<&Joined, ConnectorError> {
        if self.client.is_none() {
            let client = connect(&self.config.connection)
                .await
                .map_err(|e| self.error(&e, "cannot connect"))?;
            let (s, t) = (&self.target.stream, &self.target.topic);
            let stream = name_id(s).map_err(|e| self.error(&e, "stream"))?;
            let topic = name_id(t).map_err(|e| self.error(&e, "topic"))?;
            let exists = client
                .get_topic(&stream, &topic)
                .await
                .map_err(|e| self.error(&e, &format!("cannot look up topic `{s}/{t}`")))?
                .is_some();
            if !exists {
                return Err(self.error(
                    &IggyError::TopicNameNotFound(t.clone(), s.clone()),
                    &format!("topic `{s}/{t}` does not exist"),
                ));
            }
            let group_name = &self.config.options.consumer_group;
            let group = name_id(group_name).map_err(|e| self.error(&e, "consumer_group"))?;
            let known = client
                .get_consumer_group(&stream, &topic, &group)
                .await
                .map_err(|e| self.error(&e, "cannot look up the consumer group"))?
                .is_some();
            if !known {
                match client
                    .create_consumer_group(&stream, &topic, group_name)
                    .await
                {
                    Ok(_) => tracing::info!(group = %group_name, "created the Iggy consumer group"),
                    Err(IggyError::ConsumerGroupNameAlreadyExists(_, _)) => {}
                    Err(e) => return Err(self.error(&e, "cannot create the consumer group")),
                }
            }
            client
                .join_consumer_group(&stream, &topic, &group)
                .await
                .map_err(|e| self.error(&e, "cannot join the consumer group"))?;
            self.client = Some(Joined {
                client,
                stream,
                topic,
                consumer: Consumer::group(group),
            });
        }
        self.client.as_ref().ok_or_else(|| ConnectorError::Input {
            input: self.name.clone(),
            reason: "not connected".into(),
            retryable: true,
        })
    }

    /// The next messages after the group's stored offset on one of its
    /// partitions (at most `batch_length`); `None` when there is nothing new.
    pub async fn poll(&mut self) -> Result<Option<Polled>, ConnectorError> {
        let count = u32::try_from(self.target.batch_length).unwrap_or(u32::MAX);
        let j = self.joined().await?;
        let polled = j
            .client
            .poll_messages(
                &j.stream,
                &j.topic,
                None,
                &j.consumer,
                &PollingStrategy::next(),
                count,
                false,
            )
            .await;
        let polled = match polled {
            Ok(p) => p,
            Err(e) => {
                self.client = None;
                return Err(self.error(&e, "cannot poll"));
            }
        };
        let Some(last) = polled.messages.last() else {
            return Ok(None);
        };
        let last_offset = last.header.offset;
        Ok(Some(Polled {
            partition: polled.partition_id,
            last_offset,
            messages: polled.messages.iter().map(consumed).collect(),
        }))
    }

    /// Stores the group's offset: everything up to `polled` is done.
    pub async fn commit(&mut self, polled: &Polled) -> Result<(), ConnectorError> {
        let j = self.joined().await?;
        let stored = j
            .client
            .store_consumer_offset(
                &j.consumer,
                &j.stream,
                &j.topic,
                Some(polled.partition),
                polled.last_offset,
            )
            .await;
        if let Err(e) = stored {
            self.client = None;
            return Err(self.error(&e, "cannot store the consumer offset"));
        }
        Ok(())
    }
}

/// An Iggy message as a [`Message`]: its id, the `es_*` headers it carries, its
/// JSON payload.
fn consumed(m: &IggyMessage) -> Consumed {
    let id = MessageId(m.header.id);
    let text = String::from_utf8_lossy(&m.payload);
    let payload = match RawValue::from_string(text.to_string()) {
        Ok(p) => p,
        Err(e) => {
            return Consumed::Invalid {
                id,
                payload: text.into_owned(),
                reason: format!("the payload is not JSON: {e}"),
            };
        }
    };
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
    Consumed::Message(Message {
        id,
        headers,
        payload,
    })
}
