//! [`Store`] on PostgreSQL. The trait methods delegate to the submodules:
//! products and applications in `catalogue`, events and their deduplication
//! in `events` and `dedup`, and deliveries with their attempts in
//! `deliveries`.

mod catalogue;
mod dedup;
mod deliveries;
mod events;
mod records;
mod tasks;

use crate::codec::store_failure;
use async_trait::async_trait;
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{
    AttemptOutcome, DeadLetter, DeliveryFilter, InsertOutcome, NewEvent, RejectedRecord, Store,
    StoreError,
};
use hookline_core::{Application, ApplicationId, DeliveryId, DeliveryRecord, EventId, Product};
use sqlx::PgPool;
use time::OffsetDateTime;

/// The state store on a PostgreSQL connection pool.
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_product(&self, product: &Product) -> Result<(), StoreError> {
        self.insert_product(product).await
    }

    async fn product(&self, name: &str) -> Result<Option<Product>, StoreError> {
        self.find_product(name).await
    }

    async fn products(&self) -> Result<Vec<Product>, StoreError> {
        self.list_products().await
    }

    async fn create_application(&self, application: &Application) -> Result<(), StoreError> {
        self.insert_application(application).await
    }

    async fn application(&self, id: &ApplicationId) -> Result<Option<Application>, StoreError> {
        self.find_application(id).await
    }

    async fn applications(&self, product: Option<&str>) -> Result<Vec<Application>, StoreError> {
        self.list_applications(product).await
    }

    async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        self.insert_event_batch(batch).await
    }

    async fn mark_enqueued(&self, events: &[EventId]) -> Result<(), StoreError> {
        self.set_enqueued(events)
            .await
            .map_err(store_failure("mark events as enqueued"))
    }

    /// Returns every pending task of up to `limit` events, oldest event
    /// first. The limit counts events, not tasks, so that marking the
    /// returned events as enqueued never skips a task.
    async fn unenqueued_tasks(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<DeliveryTask>, StoreError> {
        self.find_unenqueued_tasks(before, limit)
            .await
            .map_err(store_failure("read tasks of events not yet enqueued"))
    }

    async fn event_tasks(&self, event: &EventId) -> Result<Vec<DeliveryTask>, StoreError> {
        self.find_event_tasks(event)
            .await
            .map_err(store_failure("read the pending tasks of an event"))
    }

    async fn expire_idempotency_keys(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.delete_idempotency_keys(before)
            .await
            .map_err(store_failure("expire idempotency keys"))
    }

    async fn record_rejected(&self, record: &RejectedRecord) -> Result<(), StoreError> {
        self.insert_rejected(record)
            .await
            .map_err(store_failure("record a rejected record"))
    }

    async fn record_outcomes(&self, outcomes: &[AttemptOutcome]) -> Result<(), StoreError> {
        self.apply_outcomes(outcomes)
            .await
            .map_err(store_failure("record delivery attempts"))
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.find_delivery(id)
            .await
            .map_err(store_failure("read a delivery"))
    }

    /// Lists an application's deliveries newest first (delivery ids sort by
    /// creation time), each with all its attempts in the order recorded.
    async fn deliveries(
        &self,
        application: &ApplicationId,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.list_deliveries(application, filter)
            .await
            .map_err(store_failure("list deliveries"))
    }

    /// Lists dead deliveries, most recently changed first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.list_dead_letters(limit)
            .await
            .map_err(store_failure("list dead deliveries"))
    }

    async fn revive(&self, id: &DeliveryId) -> Result<Option<DeliveryTask>, StoreError> {
        self.revive_delivery(id)
            .await
            .map_err(store_failure("revive a delivery"))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_failure("reach the database"))?;
        Ok(())
    }
}
