//! The state store contract: catalogue, events, deliveries and attempts.

use crate::queue::DeliveryTask;
use crate::{
    Application, ApplicationId, Attempt, DeliveryId, DeliveryRecord, DeliveryState, Event, EventId,
    Product,
};
use async_trait::async_trait;
use time::OffsetDateTime;

/// Failure of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with the same unique key exists.
    #[error("{entity} {key} already exists")]
    Conflict { entity: &'static str, key: String },
    /// The backend failed; retry later.
    #[error("state store failed: {message}")]
    Backend {
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            message: message.into(),
            source: Box::new(source),
        }
    }
}

/// An event with the deliveries fanned out from it, to store together.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    pub deliveries: Vec<(DeliveryId, ApplicationId)>,
}

/// Result of storing one [`NewEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The product already has an event with this idempotency key.
    Duplicate {
        existing: EventId,
        /// Whether every task of the existing event reached the queue. When
        /// false, the creator enqueues them again (a crash came in between).
        enqueued: bool,
    },
}

/// A record that could not become an event, kept with its reason.
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    pub product: Option<String>,
    pub reason: String,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub payload: Option<bytes::Bytes>,
    pub received_at: OffsetDateTime,
}

/// Dead delivery with its reason, as the dead-letter list shows it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub delivery: DeliveryRecord,
    pub reason: String,
}

/// Filter for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    /// Only deliveries created before this id (keyset pagination).
    pub before: Option<DeliveryId>,
    pub limit: u32,
}

/// Delivery state change after an attempt.
#[derive(Debug, Clone)]
pub enum DeliveryUpdate {
    Delivered,
    Retrying { next_attempt_at: OffsetDateTime },
    Dead { reason: String },
}

/// One attempt and the delivery state that follows from it.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub attempt: Attempt,
    pub update: DeliveryUpdate,
}

/// Persistent state of Hookline.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_product(&self, product: &Product) -> Result<(), StoreError>;
    async fn product(&self, name: &str) -> Result<Option<Product>, StoreError>;
    async fn products(&self) -> Result<Vec<Product>, StoreError>;

    async fn create_application(&self, application: &Application) -> Result<(), StoreError>;
    async fn application(&self, id: &ApplicationId) -> Result<Option<Application>, StoreError>;
    async fn applications(&self, product: Option<&str>) -> Result<Vec<Application>, StoreError>;

    /// Stores events and their deliveries atomically per event, deduplicating
    /// by product and idempotency key (also within the batch).
    async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError>;
    /// Records that every task of these events is in the queue.
    async fn mark_enqueued(&self, events: &[EventId]) -> Result<(), StoreError>;
    /// Tasks of events stored before `before` whose enqueueing was never
    /// confirmed: the recovery path after a crash.
    async fn unenqueued_tasks(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<DeliveryTask>, StoreError>;
    /// Pending tasks of one event, to enqueue again.
    async fn event_tasks(&self, event: &EventId) -> Result<Vec<DeliveryTask>, StoreError>;
    /// Deletes idempotency keys older than `before`; returns how many.
    async fn expire_idempotency_keys(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
    async fn record_rejected(&self, record: &RejectedRecord) -> Result<(), StoreError>;

    /// Records attempts and the resulting delivery states in one batch.
    async fn record_outcomes(&self, outcomes: &[AttemptOutcome]) -> Result<(), StoreError>;
    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;
    async fn deliveries(
        &self,
        application: &ApplicationId,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;
    /// Moves a dead delivery back to pending and returns its task, or `None`
    /// when the delivery is not dead.
    async fn revive(&self, id: &DeliveryId) -> Result<Option<DeliveryTask>, StoreError>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}
