//! The delivery queue contract: durable tasks with a due time, a lease that
//! expires (visibility timeout), acknowledgement and dead-lettering.

use crate::trace::TraceParent;
use crate::{ApplicationId, ContentType, DeliveryId, EventId, WebhookId};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// Everything the dispatcher needs to attempt one delivery. It carries ids and
/// the payload, never a secret: secrets are looked up at send time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTask {
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub application_id: ApplicationId,
    pub product: String,
    pub webhook_id: WebhookId,
    pub idempotency_key: String,
    pub content_type: ContentType,
    /// The producer's bytes; base64 in JSON encodings.
    #[serde(with = "payload_base64")]
    pub payload: Bytes,
    /// Attempts already made, so the next attempt is number `attempts_made + 1`.
    pub attempts_made: u32,
    /// The event's span, parent of each attempt's span; `None` unless the
    /// creator exported traces. Readers of older messages see `None`. Boxed,
    /// so a task without a trace grows by one pointer only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<Box<TraceParent>>,
}

mod payload_base64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        payload: &Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(payload))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

/// A queue message on the wire: versioned and tagged so that a rolling
/// upgrade can read messages written by the previous release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum QueueMessage {
    #[serde(rename = "1")]
    V1(DeliveryTask),
}

/// A task taken from the queue. Until it is settled, no other consumer
/// receives it; if the lease expires first, the task becomes visible again.
#[derive(Debug, Clone)]
pub struct Leased {
    pub task: DeliveryTask,
    /// Opaque handle the backend needs to settle this receipt.
    pub lease: u64,
}

/// The outcome of a leased task.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// Done: delivered, or given up and recorded as dead in the state store.
    Ack { lease: Leased },
    /// Try again at `due_at`; `attempts_made` is stored with the task.
    Retry {
        lease: Leased,
        due_at: OffsetDateTime,
        attempts_made: u32,
    },
    /// Moves the task to the dead-letter queue with its reason.
    DeadLetter { lease: Leased, reason: String },
}

/// Counts of tasks by visibility.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct QueueDepth {
    pub ready: u64,
    pub scheduled: u64,
    pub leased: u64,
    pub dead: u64,
    /// Age in seconds of the oldest task that is due and not leased.
    pub oldest_ready_age_secs: Option<f64>,
}

/// Failure of the queue backend; always worth retrying later.
#[derive(Debug, thiserror::Error)]
#[error("delivery queue failed: {message}")]
pub struct QueueError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl QueueError {
    pub fn new(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// A durable delivery queue.
#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Stores tasks durably; when this returns `Ok`, no crash loses them.
    /// Enqueueing a task whose delivery id is already queued has no effect,
    /// unless [`DeliveryQueue::may_hold_copies`] returns `true`.
    async fn enqueue(&self, tasks: Vec<DeliveryTask>) -> Result<(), QueueError>;

    /// Leases up to `max` due tasks for `visibility`, waiting up to `wait`
    /// for one to become due. Returns an empty list when none did.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Leased>, QueueError>;

    /// Settles leased tasks in one batch.
    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), QueueError>;

    async fn depth(&self) -> Result<QueueDepth, QueueError>;

    /// Makes the scheduled tasks of `application` due now, so that an
    /// endpoint that was enabled again gets what was kept for it without
    /// waiting out the postponement. Returns how many tasks it moved. A
    /// queue that cannot reschedule queued tasks returns `Ok(0)` and they
    /// stay due at their postponed time.
    async fn wake_application(&self, application: &ApplicationId) -> Result<u64, QueueError> {
        let _ = application;
        Ok(0)
    }

    /// Makes the tasks of `application` that are scheduled no later than
    /// `until` due now. The dispatcher calls it for the tasks it postponed
    /// while an endpoint was congested, once that endpoint responds again.
    /// Tasks scheduled after `until`, such as later retries, keep their
    /// time. Returns how many tasks it moved. A queue that cannot
    /// reschedule queued tasks returns `Ok(0)`.
    async fn wake_postponed(
        &self,
        application: &ApplicationId,
        until: OffsetDateTime,
    ) -> Result<u64, QueueError> {
        let _ = (application, until);
        Ok(0)
    }

    /// Whether the queue may hold two copies of one delivery, because
    /// [`DeliveryQueue::enqueue`] does not deduplicate by delivery id. The
    /// dispatcher then asks the state store before attempting a task, and
    /// drops copies of deliveries that are already delivered or dead.
    fn may_hold_copies(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_tagged_with_version() {
        let task = DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            application_id: ApplicationId::generate(),
            product: "order-created".into(),
            webhook_id: WebhookId::derive("order-created", "k"),
            idempotency_key: "k".into(),
            content_type: ContentType::Json,
            payload: Bytes::from_static(b"{}"),
            attempts_made: 0,
            traceparent: None,
        };
        let json = serde_json::to_value(QueueMessage::V1(task.clone())).unwrap();
        assert_eq!(json["version"], "1");
        assert_eq!(json["product"], "order-created");
        assert_eq!(json["payload"], "e30=", "payload is base64 of the bytes");
        let back: QueueMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, QueueMessage::V1(task));
    }

    #[test]
    fn message_carries_traceparent() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut task = DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            application_id: ApplicationId::generate(),
            product: "order-created".into(),
            webhook_id: WebhookId::derive("order-created", "k"),
            idempotency_key: "k".into(),
            content_type: ContentType::Json,
            payload: Bytes::from_static(b"{}"),
            attempts_made: 0,
            traceparent: TraceParent::parse(traceparent).map(Box::new),
        };
        let json = serde_json::to_value(QueueMessage::V1(task.clone())).unwrap();
        assert_eq!(json["traceparent"], traceparent);
        let back: QueueMessage = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, QueueMessage::V1(task.clone()));

        let mut older = json;
        older.as_object_mut().unwrap().remove("traceparent");
        let QueueMessage::V1(read) = serde_json::from_value(older).unwrap();
        assert_eq!(
            read.traceparent, None,
            "a message without the field has no trace"
        );
        task.traceparent = None;
        let json = serde_json::to_value(QueueMessage::V1(task)).unwrap();
        assert!(json.get("traceparent").is_none(), "None is left out");
    }
}
