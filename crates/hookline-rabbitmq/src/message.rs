//! Message encoding and confirmed publishing.
//!
//! A message body is the JSON of [`QueueMessage::V1`] (the payload is base64
//! inside), published persistent (`delivery_mode` 2) with content type
//! `application/json` and the delivery id as message id.

use futures::future::join_all;
use hookline_core::queue::{DeliveryTask, QueueError, QueueMessage};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use std::time::Duration;

/// Header that carries the reason of a dead letter.
pub const REASON_HEADER: &str = "x-hookline-reason";

const PERSISTENT: u8 = 2;

/// One message to publish through the default exchange.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// Name of the target queue.
    pub(crate) routing_key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

impl Outgoing {
    /// Encodes `task` as a message for the queue `routing_key`.
    pub(crate) fn task(task: &DeliveryTask, routing_key: &str) -> Result<Self, QueueError> {
        let message = QueueMessage::V1(task.clone());
        let body = serde_json::to_vec(&message).map_err(|error| {
            QueueError::new(
                format!("failed to encode delivery {} as JSON", task.delivery_id),
                error,
            )
        })?;
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into())
            .with_message_id(task.delivery_id.as_str().into());
        Ok(Self {
            routing_key: routing_key.to_owned(),
            body,
            properties,
        })
    }

    /// Adds the dead-letter reason header, keeping any other headers.
    pub(crate) fn with_reason(mut self, reason: &str) -> Self {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
        self.properties = self.properties.with_headers(headers);
        self
    }
}

/// Publishes `messages` and waits up to `confirm_timeout` for the broker to
/// confirm all of them. Returns one result per message, in order.
///
/// Every publish is mandatory, so a message that reaches no queue comes back
/// and counts as failed instead of being confirmed and dropped. After a
/// timeout every message counts as failed, although the broker may still
/// store some of them: a caller that retries may then publish duplicates.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    messages: &[Outgoing],
    confirm_timeout: Duration,
) -> Vec<Result<(), QueueError>> {
    match tokio::time::timeout(confirm_timeout, publish_all(channel, messages)).await {
        Ok(results) => results,
        Err(_) => messages
            .iter()
            .map(|message| {
                Err(failure(format!(
                    "timed out after {confirm_timeout:?} waiting for the broker to confirm a message to queue {}",
                    message.routing_key
                )))
            })
            .collect(),
    }
}

/// Sends every message first and then awaits the confirms together, so a
/// batch costs one round trip.
async fn publish_all(channel: &Channel, messages: &[Outgoing]) -> Vec<Result<(), QueueError>> {
    let mut confirms = Vec::with_capacity(messages.len());
    for message in messages {
        let published = channel
            .basic_publish(
                "".into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &message.body,
                message.properties.clone(),
            )
            .await;
        confirms.push(async move {
            let confirm = published.map_err(|error| publish_failed(message, error))?;
            let confirmation = confirm
                .await
                .map_err(|error| publish_failed(message, error))?;
            check_confirmation(message, confirmation)
        });
    }
    join_all(confirms).await
}

fn check_confirmation(message: &Outgoing, confirmation: Confirmation) -> Result<(), QueueError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(failure(format!(
                "the broker returned a message to queue {}: {} {}; check that the queue exists",
                message.routing_key, returned.reply_code, returned.reply_text
            )))
        }
        Confirmation::Nack(None) => Err(failure(format!(
            "the broker rejected (nack) a message to queue {}",
            message.routing_key
        ))),
        Confirmation::NotRequested => Err(failure(format!(
            "publisher confirms are not enabled on the channel that published to queue {}",
            message.routing_key
        ))),
    }
}

/// Returns the value of the dead-letter reason header, if present.
pub fn reason_header(properties: &BasicProperties) -> Option<String> {
    let headers: &FieldTable = properties.headers().as_ref()?;
    match headers.inner().get(REASON_HEADER)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

fn publish_failed(message: &Outgoing, error: lapin::Error) -> QueueError {
    QueueError::new(
        format!("failed to publish to queue {}", message.routing_key),
        error,
    )
}

pub(crate) fn failure(message: String) -> QueueError {
    QueueError {
        message,
        source: None,
    }
}
