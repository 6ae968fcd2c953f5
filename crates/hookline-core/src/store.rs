//! The state store contract: catalogue, events, deliveries, attempts,
//! plans and usage.

use crate::endpoint_health::Disablement;
use crate::queue::DeliveryTask;
use crate::usage::{HourlyUsage, OverLimitWindow, UsageBatch, UsageQuery};
use crate::{
    Application, ApplicationId, Attempt, AvroFormat, DeliveryId, DeliveryRecord, DeliveryState,
    Event, EventId, Plan, Product,
};
use async_trait::async_trait;
use std::collections::HashMap;
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

impl NewEvent {
    /// Returns the first task of each delivery, all sharing the event's payload.
    pub fn tasks(&self) -> impl Iterator<Item = DeliveryTask> + '_ {
        let event = &self.event;
        self.deliveries
            .iter()
            .map(move |(delivery_id, application_id)| DeliveryTask {
                delivery_id: delivery_id.clone(),
                event_id: event.id.clone(),
                application_id: application_id.clone(),
                product: event.product.clone(),
                webhook_id: event.webhook_id.clone(),
                idempotency_key: event.idempotency_key.clone(),
                content_type: event.content_type,
                payload: event.payload.clone(),
                attempts_made: 0,
                traceparent: event.traceparent.map(Box::new),
            })
    }
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
    /// The producer's idempotency key, so that a replay deduplicates like
    /// the original record would have.
    pub idempotency_key: Option<String>,
    pub payload: Option<bytes::Bytes>,
    pub received_at: OffsetDateTime,
}

/// A stored [`RejectedRecord`] with its id and replay state.
#[derive(Debug, Clone)]
pub struct StoredRejection {
    pub id: i64,
    pub record: RejectedRecord,
    /// When a replay made an event of it; `None` while it waits.
    pub replayed_at: Option<OffsetDateTime>,
    pub replayed_event: Option<EventId>,
}

/// Filter for listing a product's rejected records.
#[derive(Debug, Clone, Default)]
pub struct RejectionFilter {
    /// Also list records that were replayed.
    pub include_replayed: bool,
    /// Only records with a smaller id (keyset pagination, newest first).
    pub before: Option<i64>,
    pub limit: u32,
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
    /// Replaces the schema and the `validate` flag of a product. Returns
    /// `false` when the product does not exist.
    async fn update_product_schema(&self, product: &Product) -> Result<bool, StoreError>;

    async fn create_application(&self, application: &Application) -> Result<(), StoreError>;
    async fn application(&self, id: &ApplicationId) -> Result<Option<Application>, StoreError>;
    async fn applications(&self, product: Option<&str>) -> Result<Vec<Application>, StoreError>;
    /// Creates an application that receives Avro in `avro_format`. The
    /// default creates it and then sets the format, in two steps.
    async fn create_application_with_avro_format(
        &self,
        application: &Application,
        avro_format: AvroFormat,
    ) -> Result<(), StoreError> {
        self.create_application(application).await?;
        if avro_format != AvroFormat::default() {
            self.set_avro_format(&application.id, avro_format).await?;
        }
        Ok(())
    }
    /// Returns the Avro format of each application among `ids` that exists.
    /// A store without the setting returns none, which means `binary`.
    async fn avro_formats(
        &self,
        ids: &[ApplicationId],
    ) -> Result<HashMap<ApplicationId, AvroFormat>, StoreError> {
        let _ = ids;
        Ok(HashMap::new())
    }
    /// Sets how the application receives Avro; returns `false` when it does
    /// not exist.
    async fn set_avro_format(
        &self,
        application: &ApplicationId,
        avro_format: AvroFormat,
    ) -> Result<bool, StoreError> {
        let _ = (application, avro_format);
        Err(unsupported("set the Avro format of applications"))
    }
    /// Inserts an application kept by an external directory, or updates its
    /// name, product, plan, webhook URL and state. An existing row keeps its
    /// secret and creation time, so the secret of a new row is a placeholder
    /// when the directory signs with secrets of its own. Moving an
    /// application from disabled to active marks it resumed, as
    /// [`Store::enable_application`] does.
    async fn upsert_application(&self, application: &Application) -> Result<(), StoreError>;

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
    /// Lists a product's rejected records, newest first.
    async fn rejections(
        &self,
        product: &str,
        filter: &RejectionFilter,
    ) -> Result<Vec<StoredRejection>, StoreError>;
    async fn rejection(&self, id: i64) -> Result<Option<StoredRejection>, StoreError>;
    /// Marks a rejected record as replayed into `event`. Returns `false`
    /// when it does not exist or was already replayed.
    async fn mark_replayed(&self, id: i64, event: &EventId) -> Result<bool, StoreError>;

    /// Records attempts and the resulting delivery states in one batch.
    async fn record_outcomes(&self, outcomes: &[AttemptOutcome]) -> Result<(), StoreError> {
        self.record_finished(outcomes, &UsageBatch::default()).await
    }
    /// Records attempts, the resulting delivery states and the usage they
    /// add in one transaction, so that a crash keeps all of it or none.
    async fn record_finished(
        &self,
        outcomes: &[AttemptOutcome],
        usage: &UsageBatch,
    ) -> Result<(), StoreError>;
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
    /// Creates a replay of a delivered or dead delivery and returns its
    /// task: a new pending delivery, due now, of the same event to the same
    /// application, with a new delivery id and a new random `webhook-id`.
    /// The replayed delivery keeps its state and attempts, and the replay's
    /// [`DeliveryRecord::replay_of`] names it. The new `webhook-id` keeps a
    /// consumer that deduplicates on it, as Standard Webhooks recommends,
    /// from dropping the replay as a duplicate. Returns `None` when the
    /// delivery does not exist or is still pending.
    async fn replay(&self, id: &DeliveryId) -> Result<Option<DeliveryTask>, StoreError> {
        let _ = id;
        Err(unsupported("replay deliveries"))
    }

    async fn create_plan(&self, plan: &Plan) -> Result<(), StoreError>;
    async fn plan(&self, name: &str) -> Result<Option<Plan>, StoreError>;
    /// Lists every plan by name.
    async fn plans(&self) -> Result<Vec<Plan>, StoreError>;
    /// Replaces the terms of the plan named `plan.name`, keeping its creation
    /// time; returns `false` when no plan has that name.
    async fn update_plan(&self, plan: &Plan) -> Result<bool, StoreError>;
    /// Moves an application to the plan `plan`, which the caller checked;
    /// returns `false` when the application does not exist.
    async fn set_application_plan(
        &self,
        application: &ApplicationId,
        plan: &str,
    ) -> Result<bool, StoreError>;

    /// Adds a batch to the stored hourly and per-window usage totals.
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError>;
    /// Hourly totals of hours that start in `[query.from, query.to)`, by
    /// application and then hour. Hours without usage have no entry.
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<HourlyUsage>, StoreError>;
    /// Windows with throttled notifications that overlap `[from, to)`.
    async fn over_limit_windows(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<OverLimitWindow>, StoreError>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Disables an active application, storing why and when. Returns
    /// `false` when it does not exist or is disabled already, so of several
    /// dispatchers that see the same failure, one reports it.
    async fn disable_application(
        &self,
        application: &ApplicationId,
        disablement: &Disablement,
    ) -> Result<bool, StoreError> {
        let _ = (application, disablement);
        Err(unsupported("disable applications"))
    }

    /// Enables an application and forgets its disablement and failure
    /// streak. An application that was disabled is also marked resumed, so
    /// that [`Store::take_resumed_applications`] returns it once and a
    /// dispatcher enqueues its kept deliveries again. Returns `false` when
    /// it does not exist.
    async fn enable_application(&self, application: &ApplicationId) -> Result<bool, StoreError> {
        let _ = application;
        Err(unsupported("enable applications"))
    }

    /// Why and when the application was disabled by Hookline; `None` when it
    /// is active, does not exist, or was disabled by something else.
    async fn disablement(
        &self,
        application: &ApplicationId,
    ) -> Result<Option<Disablement>, StoreError> {
        let _ = application;
        Err(unsupported("read disablements"))
    }

    /// Records a failed attempt to the application's endpoint and returns
    /// the start of its failure streak: `at` unless an earlier failure with
    /// no success since started it. `None` when the application does not exist.
    async fn record_endpoint_failure(
        &self,
        application: &ApplicationId,
        at: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let _ = (application, at);
        Err(unsupported("track failing endpoints"))
    }

    /// Records a successful attempt, which ends any failure streak.
    async fn record_endpoint_success(&self, application: &ApplicationId) -> Result<(), StoreError> {
        let _ = application;
        Err(unsupported("track failing endpoints"))
    }

    /// Takes up to `limit` applications marked resumed, clearing their mark,
    /// so that of several dispatchers polling the same store one gets each.
    /// An application is marked when [`Store::enable_application`] or
    /// [`Store::upsert_application`] moves it from disabled to active. A
    /// store without the mark returns nothing.
    async fn take_resumed_applications(
        &self,
        limit: u32,
    ) -> Result<Vec<ApplicationId>, StoreError> {
        let _ = limit;
        Ok(Vec::new())
    }

    /// Tasks of the application's pending deliveries (neither delivered nor
    /// dead) with ids greater than `after`, oldest first, with no attempts
    /// made, like [`Store::revive`].
    async fn application_tasks(
        &self,
        application: &ApplicationId,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryTask>, StoreError> {
        let _ = (application, after, limit);
        Err(unsupported("list the pending deliveries of an application"))
    }

    /// Returns the deliveries among `ids` that are delivered or dead, so
    /// that a queue copy of a finished delivery can be dropped unsent. A
    /// store that cannot tell returns none.
    async fn finished_deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<DeliveryId>, StoreError> {
        let _ = ids;
        Ok(Vec::new())
    }
}

/// The error of a store that lacks an optional operation.
fn unsupported(operation: &str) -> StoreError {
    StoreError::backend(
        format!("this state store cannot {operation}"),
        std::io::Error::from(std::io::ErrorKind::Unsupported),
    )
}
