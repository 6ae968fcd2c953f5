//! [`Store`] on SQLite. The trait methods delegate to the submodules:
//! products and applications in `catalogue`, events and their deduplication
//! in `events`, deliveries with their attempts in `deliveries`, and plans
//! and usage metering in `plans` and `usage`.

mod avro_formats;
pub(crate) mod bookkeeping;
mod catalogue;
mod deliveries;
mod endpoint_health;
mod events;
mod plans;
mod portal;
mod records;
mod rejections;
mod secrets;
mod usage;

use crate::codec::store_failure;
use crate::durability::Scripts;
use async_trait::async_trait;
use hookline_core::cipher::SecretCipher;
use hookline_core::endpoint_health::Disablement;
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{
    AttemptOutcome, DeadLetter, DeliveryFilter, InsertOutcome, NewEvent, RejectedRecord,
    RejectionFilter, Store, StoreError, StoredRejection,
};
use hookline_core::usage::{HourlyUsage, OverLimitWindow, UsageBatch, UsageQuery};
use hookline_core::{
    Application, ApplicationId, AvroFormat, DeliveryId, DeliveryRecord, EventId, Plan, Product,
};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

/// The state store of the embedded backend.
pub struct SqliteStore {
    /// The only connection that writes (a pool of one).
    writer: SqlitePool,
    reader: SqlitePool,
    scripts: Scripts,
    /// Encrypts signing secrets before they are written, and decrypts them.
    cipher: Arc<SecretCipher>,
}

impl SqliteStore {
    pub(crate) fn new(
        writer: SqlitePool,
        reader: SqlitePool,
        scripts: Scripts,
        cipher: Arc<SecretCipher>,
    ) -> Self {
        Self {
            writer,
            reader,
            scripts,
            cipher,
        }
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

    async fn update_product_schema(&self, product: &Product) -> Result<bool, StoreError> {
        self.set_product_schema(product)
            .await
            .map_err(store_failure("update a product's schema"))
    }

    async fn create_application(&self, application: &Application) -> Result<(), StoreError> {
        self.insert_application(application, AvroFormat::default())
            .await
    }

    async fn create_application_with_avro_format(
        &self,
        application: &Application,
        avro_format: AvroFormat,
    ) -> Result<(), StoreError> {
        self.insert_application(application, avro_format).await
    }

    async fn avro_formats(
        &self,
        ids: &[ApplicationId],
    ) -> Result<HashMap<ApplicationId, AvroFormat>, StoreError> {
        self.find_avro_formats(ids)
            .await
            .map_err(store_failure("read the Avro formats of applications"))
    }

    async fn set_avro_format(
        &self,
        application: &ApplicationId,
        avro_format: AvroFormat,
    ) -> Result<bool, StoreError> {
        self.update_avro_format(application, avro_format)
            .await
            .map_err(store_failure("set the Avro format of an application"))
    }

    async fn application(&self, id: &ApplicationId) -> Result<Option<Application>, StoreError> {
        self.find_application(id).await
    }

    async fn applications(&self, product: Option<&str>) -> Result<Vec<Application>, StoreError> {
        self.list_applications(product).await
    }

    async fn upsert_application(&self, application: &Application) -> Result<(), StoreError> {
        self.upsert_application_row(application).await
    }

    async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        self.insert_event_batch(batch, false, None)
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

    async fn rejections(
        &self,
        product: &str,
        filter: &RejectionFilter,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        self.list_rejections(product, filter)
            .await
            .map_err(store_failure("list rejected records"))
    }

    async fn rejection(&self, id: i64) -> Result<Option<StoredRejection>, StoreError> {
        self.find_rejection(id)
            .await
            .map_err(store_failure("read a rejected record"))
    }

    async fn mark_replayed(&self, id: i64, event: &EventId) -> Result<bool, StoreError> {
        self.set_replayed(id, event)
            .await
            .map_err(store_failure("mark a rejected record as replayed"))
    }

    async fn record_finished(
        &self,
        outcomes: &[AttemptOutcome],
        usage: &UsageBatch,
    ) -> Result<(), StoreError> {
        self.apply_finished(outcomes, usage)
            .await
            .map_err(store_failure("record delivery attempts and usage"))
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

    async fn replay(&self, id: &DeliveryId) -> Result<Option<DeliveryTask>, StoreError> {
        self.replay_delivery(id)
            .await
            .map_err(store_failure("replay a delivery"))
    }

    async fn create_plan(&self, plan: &Plan) -> Result<(), StoreError> {
        self.insert_plan(plan).await
    }

    async fn plan(&self, name: &str) -> Result<Option<Plan>, StoreError> {
        self.find_plan(name)
            .await
            .map_err(store_failure("read a plan"))
    }

    async fn plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.list_plans().await.map_err(store_failure("list plans"))
    }

    async fn update_plan(&self, plan: &Plan) -> Result<bool, StoreError> {
        self.replace_plan(plan)
            .await
            .map_err(store_failure("update a plan"))
    }

    async fn set_application_plan(
        &self,
        application: &ApplicationId,
        plan: &str,
    ) -> Result<bool, StoreError> {
        self.move_application(application, plan)
            .await
            .map_err(store_failure("change the plan of an application"))
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.add_usage(batch)
            .await
            .map_err(store_failure("record usage"))
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<HourlyUsage>, StoreError> {
        self.find_usage(query)
            .await
            .map_err(store_failure("read usage"))
    }

    async fn over_limit_windows(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<OverLimitWindow>, StoreError> {
        self.find_over_limit_windows(from, to)
            .await
            .map_err(store_failure("read windows over the limit"))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(store_failure("reach the database"))?;
        Ok(())
    }

    async fn disable_application(
        &self,
        application: &ApplicationId,
        disablement: &Disablement,
    ) -> Result<bool, StoreError> {
        self.disable_application_row(application, disablement).await
    }

    async fn enable_application(&self, application: &ApplicationId) -> Result<bool, StoreError> {
        self.enable_application_row(application).await
    }

    async fn disablement(
        &self,
        application: &ApplicationId,
    ) -> Result<Option<Disablement>, StoreError> {
        self.find_disablement(application).await
    }

    async fn record_endpoint_failure(
        &self,
        application: &ApplicationId,
        at: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        self.note_endpoint_failure(application, at).await
    }

    async fn record_endpoint_success(&self, application: &ApplicationId) -> Result<(), StoreError> {
        self.note_endpoint_success(application).await
    }

    async fn take_resumed_applications(
        &self,
        limit: u32,
    ) -> Result<Vec<ApplicationId>, StoreError> {
        self.take_resumed(limit).await
    }

    async fn application_tasks(
        &self,
        application: &ApplicationId,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryTask>, StoreError> {
        self.find_application_tasks(application, after, limit).await
    }

    async fn finished_deliveries(&self, ids: &[DeliveryId]) -> Result<Vec<DeliveryId>, StoreError> {
        self.find_finished(ids).await
    }
}
