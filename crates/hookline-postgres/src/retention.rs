//! Retention: deleting history older than a cutoff in short transactions.
//!
//! Each transaction deletes at most one batch of rows from one table, so a
//! purge never holds many row locks and the API and the dispatchers keep
//! working while it runs. Pending deliveries are never deleted, and neither
//! is an event that still has a delivery.

use crate::codec::store_failure;
use hookline_core::store::StoreError;
use sqlx::{PgPool, Row};
use std::time::Instant;
use time::OffsetDateTime;

/// Selects and locks finished deliveries. `SKIP LOCKED` passes over rows
/// that a dispatcher is updating, and the locks keep a revive from moving a
/// selected delivery back to pending before it is deleted.
const LOCK_FINISHED_DELIVERIES: &str = "SELECT id FROM deliveries \
     WHERE state <> 'pending' AND updated_at < $1 \
     ORDER BY updated_at, id LIMIT $2 FOR UPDATE SKIP LOCKED";

const FIRST_OLD_EVENTS: &str = "SELECT id, received_at FROM events \
     WHERE received_at < $1 ORDER BY received_at, id LIMIT $2";

/// The next old events after the last one examined, `($3, $4)`.
const NEXT_OLD_EVENTS: &str = "SELECT id, received_at FROM events \
     WHERE received_at < $1 AND (received_at, id) > ($3, $4) \
     ORDER BY received_at, id LIMIT $2";

/// Deletes the given events unless a delivery still refers to them.
/// Deliveries are only ever inserted with their event, so no delivery can
/// appear for an event that this statement finds without one.
const DELETE_EVENTS_WITHOUT_DELIVERIES: &str = "DELETE FROM events AS e \
     WHERE e.id = ANY($1) \
       AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id)";

const DELETE_OLD_KEYS: &str = "DELETE FROM idempotency_keys \
     WHERE (product, idempotency_key) IN ( \
       SELECT product, idempotency_key FROM idempotency_keys \
       WHERE created_at < $1 ORDER BY created_at LIMIT $2)";

const DELETE_OLD_REJECTED: &str = "DELETE FROM rejected_records WHERE id IN ( \
       SELECT id FROM rejected_records \
       WHERE received_at < $1 ORDER BY received_at, id LIMIT $2)";

/// Rows deleted by one purge, by table.
#[derive(Debug, Default)]
struct Purged {
    deliveries: u64,
    attempts: u64,
    events: u64,
    idempotency_keys: u64,
    rejected_records: u64,
}

/// Deletes the history older than `older_than`, `batch_size` rows of one
/// table per transaction, and returns the rows deleted in all tables.
pub(crate) async fn purge(
    pool: &PgPool,
    older_than: OffsetDateTime,
    batch_size: u32,
) -> Result<u64, StoreError> {
    let started = Instant::now();
    let mut purged = Purged::default();

    (purged.deliveries, purged.attempts) = delete_finished_deliveries(pool, older_than, batch_size)
        .await
        .map_err(store_failure("delete finished deliveries"))?;
    purged.events = delete_events_without_deliveries(pool, older_than, batch_size)
        .await
        .map_err(store_failure("delete events without deliveries"))?;
    purged.idempotency_keys = delete_idempotency_keys(pool, older_than, batch_size)
        .await
        .map_err(store_failure("delete old idempotency keys"))?;
    purged.rejected_records = delete_in_batches(pool, DELETE_OLD_REJECTED, older_than, batch_size)
        .await
        .map_err(store_failure("delete old rejected records"))?;

    let total = purged.deliveries
        + purged.attempts
        + purged.events
        + purged.idempotency_keys
        + purged.rejected_records;
    tracing::info!(
        %older_than,
        batch_size,
        deliveries = purged.deliveries,
        attempts = purged.attempts,
        events = purged.events,
        idempotency_keys = purged.idempotency_keys,
        rejected_records = purged.rejected_records,
        total,
        elapsed_ms = started.elapsed().as_millis(),
        "Purged history"
    );
    Ok(total)
}

/// Deletes delivered and dead deliveries last updated before `older_than`
/// with their attempts, and returns the deliveries and attempts deleted.
async fn delete_finished_deliveries(
    pool: &PgPool,
    older_than: OffsetDateTime,
    batch_size: u32,
) -> Result<(u64, u64), sqlx::Error> {
    let (mut deliveries, mut attempts) = (0, 0);
    loop {
        let mut transaction = pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(LOCK_FINISHED_DELIVERIES)
            .bind(older_than)
            .bind(i64::from(batch_size))
            .fetch_all(&mut *transaction)
            .await?;
        if ids.is_empty() {
            return Ok((deliveries, attempts));
        }
        attempts += sqlx::query("DELETE FROM attempts WHERE delivery_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        deliveries += sqlx::query("DELETE FROM deliveries WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        transaction.commit().await?;
        if (ids.len() as u64) < u64::from(batch_size) {
            return Ok((deliveries, attempts));
        }
    }
}

/// Deletes events received before `older_than` that have no delivery left.
/// It walks the old events in (received_at, id) order once, so events kept
/// for a pending delivery are not read again by every batch.
async fn delete_events_without_deliveries(
    pool: &PgPool,
    older_than: OffsetDateTime,
    batch_size: u32,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    let mut last: Option<(String, OffsetDateTime)> = None;
    loop {
        let rows = match &last {
            None => {
                sqlx::query(FIRST_OLD_EVENTS)
                    .bind(older_than)
                    .bind(i64::from(batch_size))
                    .fetch_all(pool)
                    .await?
            }
            Some((id, received_at)) => {
                sqlx::query(NEXT_OLD_EVENTS)
                    .bind(older_than)
                    .bind(i64::from(batch_size))
                    .bind(*received_at)
                    .bind(id.as_str())
                    .fetch_all(pool)
                    .await?
            }
        };
        let Some(final_row) = rows.last() else {
            return Ok(deleted);
        };
        last = Some((final_row.try_get("id")?, final_row.try_get("received_at")?));
        let ids = rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<Vec<String>, _>>()?;
        deleted += sqlx::query(DELETE_EVENTS_WITHOUT_DELIVERIES)
            .bind(&ids)
            .execute(pool)
            .await?
            .rows_affected();
        if (ids.len() as u64) < u64::from(batch_size) {
            return Ok(deleted);
        }
    }
}

/// Deletes idempotency keys created before `before`, `batch_size` per
/// transaction, and returns how many were deleted.
pub(crate) async fn delete_idempotency_keys(
    pool: &PgPool,
    before: OffsetDateTime,
    batch_size: u32,
) -> Result<u64, sqlx::Error> {
    delete_in_batches(pool, DELETE_OLD_KEYS, before, batch_size).await
}

/// Runs `statement`, which deletes up to `$2` rows older than `$1`, until it
/// deletes fewer than `batch_size`, and returns the rows deleted. Each run is
/// its own transaction.
async fn delete_in_batches(
    pool: &PgPool,
    statement: &'static str,
    before: OffsetDateTime,
    batch_size: u32,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let batch = sqlx::query(statement)
            .bind(before)
            .bind(i64::from(batch_size))
            .execute(pool)
            .await?
            .rows_affected();
        deleted += batch;
        if batch < u64::from(batch_size) {
            return Ok(deleted);
        }
    }
}
