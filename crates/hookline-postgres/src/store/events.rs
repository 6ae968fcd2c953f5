//! Events: deduplicated insertion with the fan-out to deliveries, the
//! `enqueued` flag that crash recovery reads, idempotency key expiry, and
//! rejected records.

use super::dedup::{claim_keys, resolve_outcomes};
use super::tasks::{task_from_row, task_select};
use super::PgStore;
use crate::codec::{content_type_name, store_failure};
use crate::retention;
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{InsertOutcome, NewEvent, RejectedRecord, StoreError};
use hookline_core::EventId;
use sqlx::PgConnection;
use time::OffsetDateTime;

const INSERT_EVENTS: &str = "INSERT INTO events \
     (id, product, idempotency_key, webhook_id, content_type, payload, source, received_at, \
      traceparent) \
     SELECT id, product, idempotency_key, webhook_id, content_type, payload, source::jsonb, \
            received_at, traceparent \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], \
                 $7::text[], $8::timestamptz[], $9::text[]) \
       AS e (id, product, idempotency_key, webhook_id, content_type, payload, source, \
             received_at, traceparent)";

/// New deliveries are pending and due when their event arrived.
const INSERT_DELIVERIES: &str = "INSERT INTO deliveries \
     (id, event_id, application_id, state, attempts, next_attempt_at, created_at, updated_at) \
     SELECT id, event_id, application_id, 'pending', 0, created_at, created_at, created_at \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[]) \
       AS d (id, event_id, application_id, created_at)";

/// Idempotency keys deleted per transaction by
/// [`PgStore::delete_idempotency_keys`], so expiry never holds locks for long.
const EXPIRY_BATCH: u32 = 10_000;

impl PgStore {
    /// Inserts a batch in one transaction and returns one outcome per event,
    /// in input order.
    pub(super) async fn insert_event_batch(
        &self,
        batch: &[NewEvent],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(store_failure("begin inserting events"))?;
        let claimed = claim_keys(&mut transaction, batch)
            .await
            .map_err(store_failure("insert events"))?;
        let outcomes = resolve_outcomes(&mut transaction, batch, claimed).await?;

        let inserted: Vec<&NewEvent> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| **outcome == InsertOutcome::Inserted)
            .map(|(new_event, _)| new_event)
            .collect();
        insert_rows(&mut transaction, &inserted)
            .await
            .map_err(store_failure("insert events"))?;
        transaction
            .commit()
            .await
            .map_err(store_failure("commit inserted events"))?;
        Ok(outcomes)
    }

    pub(super) async fn set_enqueued(&self, events: &[EventId]) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = events.iter().map(EventId::as_str).collect();
        sqlx::query("UPDATE events SET enqueued = true WHERE id = ANY($1) AND NOT enqueued")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Reads the pending tasks of up to `limit` events that are not marked
    /// enqueued and arrived before `before`, oldest event first. Events
    /// without a pending delivery are skipped, so they cannot fill the limit.
    pub(super) async fn find_unenqueued_tasks(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<DeliveryTask>, sqlx::Error> {
        let sql = task_select!(
            "WHERE d.state = 'pending' AND d.event_id IN ( \
               SELECT u.id FROM events AS u \
               WHERE NOT u.enqueued AND u.received_at < $1 AND EXISTS ( \
                 SELECT 1 FROM deliveries AS p \
                 WHERE p.event_id = u.id AND p.state = 'pending') \
               ORDER BY u.received_at, u.id LIMIT $2) \
             ORDER BY e.received_at, e.id, d.id"
        );
        let rows = sqlx::query(sql)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    pub(super) async fn find_event_tasks(
        &self,
        event: &EventId,
    ) -> Result<Vec<DeliveryTask>, sqlx::Error> {
        let sql = task_select!("WHERE d.event_id = $1 AND d.state = 'pending' ORDER BY d.id");
        let rows = sqlx::query(sql)
            .bind(event.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Deletes keys created before `before`, [`EXPIRY_BATCH`] per
    /// transaction, and returns how many were deleted.
    pub(super) async fn delete_idempotency_keys(
        &self,
        before: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        retention::delete_idempotency_keys(&self.pool, before, EXPIRY_BATCH).await
    }

    pub(super) async fn insert_rejected(&self, record: &RejectedRecord) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO rejected_records \
             (product, reason, kafka_topic, kafka_partition, kafka_offset, idempotency_key, \
              payload, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(record.product.as_deref())
        .bind(&record.reason)
        .bind(record.topic.as_deref())
        .bind(record.partition)
        .bind(record.offset)
        .bind(record.idempotency_key.as_deref())
        .bind(record.payload.as_deref())
        .bind(record.received_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Inserts the rows of the events that won their key, and their deliveries,
/// with one statement each.
async fn insert_rows(
    connection: &mut PgConnection,
    inserted: &[&NewEvent],
) -> Result<(), sqlx::Error> {
    if inserted.is_empty() {
        return Ok(());
    }
    let events: Vec<_> = inserted.iter().map(|new_event| &new_event.event).collect();
    let sources = events
        .iter()
        .map(|event| serde_json::to_string(&event.source))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    sqlx::query(INSERT_EVENTS)
        .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.product.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.idempotency_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.webhook_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| content_type_name(e.content_type))
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.payload.as_ref())
                .collect::<Vec<&[u8]>>(),
        )
        .bind(sources)
        .bind(events.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.traceparent.map(|parent| parent.to_string()))
                .collect::<Vec<Option<String>>>(),
        )
        .execute(&mut *connection)
        .await?;

    let deliveries: Vec<_> = inserted
        .iter()
        .flat_map(|new_event| {
            let event = &new_event.event;
            new_event
                .deliveries
                .iter()
                .map(move |(delivery_id, application_id)| (delivery_id, event, application_id))
        })
        .collect();
    if deliveries.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT_DELIVERIES)
        .bind(deliveries.iter().map(|d| d.0.as_str()).collect::<Vec<_>>())
        .bind(
            deliveries
                .iter()
                .map(|d| d.1.id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(deliveries.iter().map(|d| d.2.as_str()).collect::<Vec<_>>())
        .bind(
            deliveries
                .iter()
                .map(|d| d.1.received_at)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *connection)
        .await?;
    Ok(())
}
