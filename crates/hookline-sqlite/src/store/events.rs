//! Events: deduplicated insertion with the fan-out to deliveries, the
//! `enqueued` flag that crash recovery reads, idempotency key expiry, and
//! rejected records.

use super::SqliteStore;
use crate::codec::{content_type_name, json_rows, now_millis, to_millis};
use crate::durability::{full_script, relaxed_script};
use crate::queue::HandoffLease;
use crate::tasks::{task_from_row, task_select};
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{InsertOutcome, NewEvent, RejectedRecord};
use hookline_core::EventId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::sync::LazyLock;
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

/// Writes a batch of events in one script, which returns only the rows of
/// [`CLAIMED_KEYS`]. Parameters:
/// - `?1` the keys in batch order, `?2` the events, `?3` their deliveries;
/// - `?4` 1 to also enqueue the deliveries of new events and mark them
///   enqueued, `?5` the current time;
/// - `?6` the payloads of all events in one blob, which each event row
///   locates by offset and length;
/// - `?7` and `?8` the token and expiry of the lease that the queue rows
///   are written with when they are handed off, or NULL to write them
///   visible now.
///
/// An event is new when its key was just claimed for it and it is not
/// stored yet. The ids of new events are collected first in the writer's
/// temporary table `new_events` (`NEW_EVENTS_TABLE` in the crate root), which the
/// other statements join and the last one empties.
const INSERT_BATCH: &str = "\
INSERT INTO temp.new_events (id) \
  SELECT j.value ->> 0 FROM json_each(?2) AS j \
  WHERE EXISTS (SELECT 1 FROM idempotency_keys AS k \
                WHERE k.product = j.value ->> 1 AND k.idempotency_key = j.value ->> 2 \
                  AND k.event_id = j.value ->> 0) \
    AND NOT EXISTS (SELECT 1 FROM events AS s WHERE s.id = j.value ->> 0); \
INSERT INTO events (id, product, idempotency_key, webhook_id, content_type, payload, source, \
                    received_at, traceparent, enqueued) \
  SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
         substr(?6, j.value ->> 5, j.value ->> 9), j.value ->> 6, j.value ->> 7, \
         j.value ->> 8, ?4 \
  FROM json_each(?2) AS j WHERE j.value ->> 0 IN temp.new_events; \
INSERT INTO deliveries \
  (id, event_id, application_id, state, attempts, next_attempt_at, created_at, updated_at) \
  SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, 'pending', 0, \
         j.value ->> 3, j.value ->> 3, j.value ->> 3 \
  FROM json_each(?3) AS j WHERE j.value ->> 1 IN temp.new_events; \
INSERT INTO queue (delivery_id, due_at, visible_at, lease_token, attempts_made) \
  SELECT j.value ->> 0, ?5, COALESCE(?8, ?5), ?7, 0 \
  FROM json_each(?3) AS j WHERE ?4 AND j.value ->> 1 IN temp.new_events; \
DELETE FROM temp.new_events";

/// Events are written with `synchronous=FULL`: an accepted event survives
/// a power failure.
static INSERT_SCRIPT: LazyLock<String> =
    LazyLock::new(|| full_script(&format!("{INSERT_KEYS}; {CLAIMED_KEYS}; {INSERT_BATCH}")));

/// Marks events enqueued. A mark lost to a power failure makes crash
/// recovery enqueue the event's tasks again, which enqueueing ignores.
static MARK_ENQUEUED: LazyLock<String> = LazyLock::new(|| {
    relaxed_script("UPDATE events SET enqueued = 1 WHERE id IN (SELECT value FROM json_each(?1))")
});

/// Idempotency keys deleted per statement, so that expiry never holds the
/// write lock for long.
const EXPIRY_BATCH: u32 = 10_000;

impl SqliteStore {
    /// Inserts a batch in one transaction and returns one outcome per event,
    /// in input order. With `enqueue`, the same transaction also enqueues
    /// the deliveries of the new events, leased with `lease` when it is
    /// given, and marks those events enqueued.
    pub(crate) async fn insert_event_batch(
        &self,
        batch: &[NewEvent],
        enqueue: bool,
        lease: Option<&HandoffLease>,
    ) -> Result<Vec<InsertOutcome>, sqlx::Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (events, payloads) = event_rows(batch)?;
        let query = sqlx::query(INSERT_SCRIPT.as_str())
            .bind(key_rows(batch)?)
            .bind(events)
            .bind(delivery_rows(batch)?)
            .bind(i64::from(enqueue))
            .bind(now_millis())
            .bind(payloads)
            .bind(lease.map(|lease| lease.token))
            .bind(lease.map(|lease| lease.visible_at));
        let rows = self.scripts.run(&self.writer, query).await?;
        claimed_outcomes(&rows, batch)
    }

    pub(super) async fn set_enqueued(&self, events: &[EventId]) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = events.iter().map(EventId::as_str).collect();
        let query = sqlx::query(MARK_ENQUEUED.as_str()).bind(json_rows(&ids)?);
        self.scripts.run(&self.writer, query).await?;
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

/// Turns the rows of [`CLAIMED_KEYS`], which event owns each key of the
/// batch, into the outcome for each position.
fn claimed_outcomes(
    rows: &[SqliteRow],
    batch: &[NewEvent],
) -> Result<Vec<InsertOutcome>, sqlx::Error> {
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

/// Encodes the keys of the batch in its order: product, key, event id and
/// time.
fn key_rows(batch: &[NewEvent]) -> Result<String, sqlx::Error> {
    let rows: Vec<(&str, &str, &str, i64)> = batch
        .iter()
        .map(|new_event| {
            let event = &new_event.event;
            (
                event.product.as_str(),
                event.idempotency_key.as_str(),
                event.id.as_str(),
                to_millis(event.received_at),
            )
        })
        .collect();
    json_rows(&rows)
}

/// One row of `json_each(?2)`: an event, with its payload given as the
/// 1-based offset (column 5) and length (column 9) of its bytes in `?6`.
/// The payload stays out of the JSON text, which SQLite parses again for
/// every column it reads.
type EventRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'static str,
    usize,
    String,
    i64,
    Option<String>,
    usize,
);

/// Returns the event rows and the payloads joined in one blob.
fn event_rows(batch: &[NewEvent]) -> Result<(String, Vec<u8>), sqlx::Error> {
    let total = batch
        .iter()
        .map(|new_event| new_event.event.payload.len())
        .sum();
    let mut payloads = Vec::with_capacity(total);
    let mut rows: Vec<EventRow<'_>> = Vec::with_capacity(batch.len());
    for new_event in batch {
        let event = &new_event.event;
        let offset = payloads.len() + 1;
        payloads.extend_from_slice(&event.payload);
        rows.push((
            event.id.as_str(),
            event.product.as_str(),
            event.idempotency_key.as_str(),
            event.webhook_id.as_str(),
            content_type_name(event.content_type),
            offset,
            json_rows(&event.source)?,
            to_millis(event.received_at),
            event.traceparent.map(|parent| parent.to_string()),
            event.payload.len(),
        ));
    }
    Ok((json_rows(&rows)?, payloads))
}

/// Encodes one pending delivery per subscriber of each event, due when the
/// event arrived.
fn delivery_rows(batch: &[NewEvent]) -> Result<String, sqlx::Error> {
    let mut rows: Vec<(&str, &str, &str, i64)> = Vec::new();
    for new_event in batch {
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
    json_rows(&rows)
}
