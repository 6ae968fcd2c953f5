//! Events: deduplicated insertion with the fan-out to deliveries, the
//! `enqueued` flag that crash recovery reads, idempotency key expiry, and
//! rejected records.

use super::SqliteStore;
use crate::codec::{content_type_name, json_rows, to_millis};
use crate::tasks::{task_from_row, task_select};
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{InsertOutcome, NewEvent, RejectedRecord};
use hookline_core::{Event, EventId};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;

/// Claims each key for its event unless the product already has it. Rows
/// are inserted in batch order, so the first of two equal keys wins.
const INSERT_KEYS: &str = "INSERT OR IGNORE INTO idempotency_keys \
     (product, idempotency_key, event_id, created_at) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?1) ORDER BY key";

/// For each batch position, the event that owns the key and whether that
/// event is already stored (`stored`) and enqueued. Run before the batch's
/// own events are inserted, so `stored` is true only for earlier events.
const CLAIMED_KEYS: &str = "SELECT j.key, k.event_id, e.id IS NOT NULL AS stored, \
     COALESCE(e.enqueued, 0) AS enqueued \
     FROM json_each(?1) AS j \
     JOIN idempotency_keys AS k \
       ON k.product = j.value ->> 0 AND k.idempotency_key = j.value ->> 1 \
     LEFT JOIN events AS e ON e.id = k.event_id";

const INSERT_DELIVERIES: &str = "INSERT INTO deliveries \
     (id, event_id, application_id, state, attempts, next_attempt_at, created_at, updated_at) \
     SELECT value ->> 0, value ->> 1, value ->> 2, 'pending', 0, value ->> 3, value ->> 3, value ->> 3 \
     FROM json_each(?1)";

/// Row counts of the multi-row event inserts, largest first. Few distinct
/// row counts keep the prepared-statement cache small. 64 rows of 9
/// parameters stay far below SQLite's default limit of 32766 parameters
/// (`SQLITE_MAX_VARIABLE_NUMBER` since SQLite 3.32).
const EVENT_CHUNK_SIZES: [usize; 3] = [64, 8, 1];

/// Idempotency keys deleted per statement, so that expiry never holds the
/// write lock for long.
const EXPIRY_BATCH: u32 = 10_000;

impl SqliteStore {
    /// Inserts a batch in one transaction and returns one outcome per event,
    /// in input order.
    pub(super) async fn insert_event_batch(
        &self,
        batch: &[NewEvent],
    ) -> Result<Vec<InsertOutcome>, sqlx::Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let key_rows: Vec<(&str, &str, &str, i64)> = batch
            .iter()
            .map(|new_event| {
                let event = &new_event.event;
                let received_at = to_millis(event.received_at);
                (
                    event.product.as_str(),
                    event.idempotency_key.as_str(),
                    event.id.as_str(),
                    received_at,
                )
            })
            .collect();
        let keys = json_rows(&key_rows)?;

        let mut transaction = self.begin_write().await?;
        sqlx::query(INSERT_KEYS)
            .bind(&keys)
            .execute(&mut *transaction)
            .await?;
        let outcomes = claimed_outcomes(&mut transaction, batch, &keys).await?;

        let inserted: Vec<&NewEvent> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| **outcome == InsertOutcome::Inserted)
            .map(|(new_event, _)| new_event)
            .collect();
        insert_event_rows(&mut transaction, &inserted).await?;
        insert_delivery_rows(&mut transaction, &inserted).await?;
        transaction.commit().await?;
        Ok(outcomes)
    }

    pub(super) async fn set_enqueued(&self, events: &[EventId]) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = events.iter().map(EventId::as_str).collect();
        sqlx::query("UPDATE events SET enqueued = 1 WHERE id IN (SELECT value FROM json_each(?1))")
            .bind(json_rows(&ids)?)
            .execute(&mut *crate::durability::relaxed(&self.writer).await?)
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
               SELECT id FROM events \
               WHERE enqueued = 0 AND received_at < ?1 AND EXISTS ( \
                 SELECT 1 FROM deliveries AS p \
                 WHERE p.event_id = events.id AND p.state = 'pending') \
               ORDER BY received_at, id LIMIT ?2) \
             ORDER BY e.received_at, e.id, d.id"
        );
        let rows = sqlx::query(sql)
            .bind(to_millis(before))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|row| task_from_row(row, 0)).collect()
    }

    pub(super) async fn find_event_tasks(
        &self,
        event: &EventId,
    ) -> Result<Vec<DeliveryTask>, sqlx::Error> {
        let sql = task_select!("WHERE d.event_id = ?1 AND d.state = 'pending' ORDER BY d.id");
        let rows = sqlx::query(sql)
            .bind(event.as_str())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|row| task_from_row(row, 0)).collect()
    }

    /// Deletes keys created before `before` in batches of [`EXPIRY_BATCH`],
    /// each its own transaction, and returns how many were deleted.
    pub(super) async fn delete_idempotency_keys(
        &self,
        before: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        let before = to_millis(before);
        let mut deleted = 0;
        loop {
            let result = sqlx::query(
                "DELETE FROM idempotency_keys WHERE (product, idempotency_key) IN ( \
                   SELECT product, idempotency_key FROM idempotency_keys \
                   WHERE created_at < ?1 LIMIT ?2)",
            )
            .bind(before)
            .bind(i64::from(EXPIRY_BATCH))
            .execute(&self.writer)
            .await?;
            deleted += result.rows_affected();
            if result.rows_affected() < u64::from(EXPIRY_BATCH) {
                return Ok(deleted);
            }
        }
    }

    pub(super) async fn insert_rejected(&self, record: &RejectedRecord) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO rejected_records \
             (product, reason, kafka_topic, kafka_partition, kafka_offset, idempotency_key, \
              payload, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(record.product.as_deref())
        .bind(&record.reason)
        .bind(record.topic.as_deref())
        .bind(record.partition)
        .bind(record.offset)
        .bind(record.idempotency_key.as_deref())
        .bind(record.payload.as_deref())
        .bind(to_millis(record.received_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

/// Reads which event owns each key of the batch and turns that into the
/// outcome for each position.
async fn claimed_outcomes(
    connection: &mut SqliteConnection,
    batch: &[NewEvent],
    keys: &str,
) -> Result<Vec<InsertOutcome>, sqlx::Error> {
    let rows = sqlx::query(CLAIMED_KEYS)
        .bind(keys)
        .fetch_all(&mut *connection)
        .await?;
    let mut outcomes: Vec<Option<InsertOutcome>> = vec![None; batch.len()];
    for row in rows {
        let position: i64 = row.try_get("key")?;
        let owner: String = row.try_get("event_id")?;
        let stored: bool = row.try_get("stored")?;
        let enqueued: bool = row.try_get("enqueued")?;
        let Some(position) = usize::try_from(position).ok().filter(|&p| p < batch.len()) else {
            continue;
        };
        // The key is this event's only if this statement just claimed it. A
        // stored owner with the same id is the same batch inserted before.
        outcomes[position] = Some(if owner == batch[position].event.id.as_str() && !stored {
            InsertOutcome::Inserted
        } else {
            InsertOutcome::Duplicate {
                existing: EventId::from_stored(owner),
                enqueued,
            }
        });
    }
    // Every key is either claimed or already present, so a gap means the
    // table changed underneath the transaction.
    outcomes
        .into_iter()
        .map(|outcome| outcome.ok_or(sqlx::Error::RowNotFound))
        .collect()
}

/// Inserts the event rows with multi-row statements of [`EVENT_CHUNK_SIZES`].
async fn insert_event_rows(
    connection: &mut SqliteConnection,
    inserted: &[&NewEvent],
) -> Result<(), sqlx::Error> {
    let sources = inserted
        .iter()
        .map(|new_event| json_rows(&new_event.event.source))
        .collect::<Result<Vec<String>, _>>()?;
    let rows: Vec<(&Event, &str)> = inserted
        .iter()
        .map(|new_event| &new_event.event)
        .zip(sources.iter().map(String::as_str))
        .collect();

    for chunk in split_by_sizes(&rows, &EVENT_CHUNK_SIZES) {
        let mut builder = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, product, idempotency_key, webhook_id, content_type, \
             payload, source, received_at, traceparent) ",
        );
        builder.push_values(chunk, |mut values, &(event, source)| {
            values
                .push_bind(event.id.as_str())
                .push_bind(event.product.as_str())
                .push_bind(event.idempotency_key.as_str())
                .push_bind(event.webhook_id.as_str())
                .push_bind(content_type_name(event.content_type))
                .push_bind(event.payload.as_ref())
                .push_bind(source)
                .push_bind(to_millis(event.received_at))
                .push_bind(event.traceparent.map(|parent| parent.to_string()));
        });
        builder.build().execute(&mut *connection).await?;
    }
    Ok(())
}

/// Inserts one pending delivery per subscriber of each inserted event, due
/// when the event arrived.
async fn insert_delivery_rows(
    connection: &mut SqliteConnection,
    inserted: &[&NewEvent],
) -> Result<(), sqlx::Error> {
    let mut rows: Vec<(&str, &str, &str, i64)> = Vec::new();
    for new_event in inserted {
        let event = &new_event.event;
        let created_at = to_millis(event.received_at);
        for (delivery_id, application_id) in &new_event.deliveries {
            rows.push((
                delivery_id.as_str(),
                event.id.as_str(),
                application_id.as_str(),
                created_at,
            ));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT_DELIVERIES)
        .bind(json_rows(&rows)?)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Splits `items` into consecutive chunks whose lengths are taken greedily
/// from `sizes`, which must be in descending order and end with 1.
fn split_by_sizes<'a, T>(items: &'a [T], sizes: &[usize]) -> Vec<&'a [T]> {
    let mut chunks = Vec::new();
    let mut rest = items;
    for &size in sizes {
        while rest.len() >= size && size > 0 {
            let (chunk, tail) = rest.split_at(size);
            chunks.push(chunk);
            rest = tail;
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_sizes_covers_every_item_in_order() {
        let items: Vec<usize> = (0..139).collect();
        let chunks = split_by_sizes(&items, &EVENT_CHUNK_SIZES);
        let lengths: Vec<usize> = chunks.iter().map(|chunk| chunk.len()).collect();
        assert_eq!(lengths, vec![64, 64, 8, 1, 1, 1]);
        let joined: Vec<usize> = chunks.concat();
        assert_eq!(joined, items);
    }
}
