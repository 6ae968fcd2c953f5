//! [`Store`] on SQLite. The trait methods delegate to the submodules:
//! products and applications in `catalogue`, events and their deduplication
//! in `events`, and deliveries with their attempts in `deliveries`.

mod catalogue;
mod deliveries;
mod events;
mod records;

use crate::codec::store_failure;
use async_trait::async_trait;
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{
    AttemptOutcome, DeadLetter, DeliveryFilter, InsertOutcome, NewEvent, RejectedRecord, Store,
    StoreError,
};
use hookline_core::{Application, ApplicationId, DeliveryId, DeliveryRecord, EventId, Product};
use sqlx::{Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;

/// The state store of the embedded backend.
pub struct SqliteStore {
    /// The only connection that writes (a pool of one).
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    pub(crate) fn new(writer: SqlitePool, reader: SqlitePool) -> Self {
        Self { writer, reader }
    }

    /// Begins a write transaction that takes the database's write lock at
    /// once, so that a second process writing to the same file makes this
    /// one wait (up to the busy timeout) instead of failing midway.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

#[async_trait]
impl Store for SqliteStore {
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
        self.insert_event_batch(batch)
            .await
            .map_err(store_failure("insert events"))
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
            .execute(&self.reader)
            .await
            .map_err(store_failure("reach the database"))?;
        Ok(())
    }
}
