//! Records of the state store: event APIs, applications, events, deliveries
//! and attempts.

use crate::trace::TraceParent;
use crate::{ApplicationId, ContentType, DeliveryId, EventId, SigningSecret, WebhookId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// An event API (product), such as `order-created`, fed by one topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub name: String,
    /// Kafka topic the product's events are read from.
    pub topic: String,
    pub content_type: ContentType,
    /// JSON Schema text for a JSON product, or an Avro schema (JSON) for an
    /// Avro product; see [`crate::formats`].
    pub schema: Option<String>,
    /// Whether payloads are validated against the schema (JSON) or decoded
    /// (Avro) on ingest, besides the well-formedness check.
    pub validate: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Whether an application receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplicationState {
    Active,
    Disabled,
}

impl ApplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// Format in which an application receives the events of an Avro product:
/// the producer's bytes as they are, or converted to JSON by
/// [`crate::formats::avro_json`]. Other formats are always sent as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AvroFormat {
    /// The producer's bytes with `content-type: application/avro`.
    #[default]
    Binary,
    /// One JSON document with `content-type: application/json`.
    Json,
}

impl AvroFormat {
    /// Returns the name used in the API and in the state store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Json => "json",
        }
    }

    /// Parses `binary` or `json`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "binary" => Some(Self::Binary),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// An API consumer subscribed to one product with one webhook endpoint.
#[derive(Debug, Clone)]
pub struct Application {
    pub id: ApplicationId,
    pub name: String,
    pub product: String,
    pub plan: String,
    pub webhook_url: String,
    pub secret: SigningSecret,
    pub state: ApplicationState,
    pub created_at: OffsetDateTime,
}

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EventSource {
    Http,
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// One accepted event; the payload is kept byte for byte.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub product: String,
    pub idempotency_key: String,
    pub webhook_id: WebhookId,
    pub content_type: ContentType,
    pub payload: Bytes,
    pub source: EventSource,
    pub received_at: OffsetDateTime,
    /// The event's span, stored so that delivery attempts in any process
    /// continue its trace; `None` when traces are not exported.
    pub traceparent: Option<TraceParent>,
}

/// Lifecycle of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// What the consumer's endpoint did with one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptResult {
    /// The endpoint answered with this HTTP status.
    Response { status: u16 },
    /// No response: connection, TLS, timeout or address errors.
    Error { class: String, message: String },
}

impl AttemptResult {
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Response { status } if (200..300).contains(status))
    }
}

/// One recorded delivery attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub delivery_id: DeliveryId,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub number: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    pub result: AttemptResult,
    /// The start of the response body, cut at the capture limit.
    pub response_excerpt: Option<String>,
    pub response_truncated: bool,
}

/// Summary of a delivery with all its attempts, as the API shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub application_id: ApplicationId,
    pub product: String,
    pub webhook_id: WebhookId,
    pub state: DeliveryState,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub attempts: Vec<Attempt>,
    /// The delivery that this one replays, when it is a replay.
    pub replay_of: Option<DeliveryId>,
}
