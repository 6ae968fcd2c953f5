//! Deduplication of a batch of events by product and idempotency key.
//!
//! The batch claims its keys with one `INSERT ... ON CONFLICT DO NOTHING
//! RETURNING`. A key that another open transaction has just inserted makes
//! this statement wait until that transaction ends. If it committed, the key
//! is skipped here and the following lookup, a new statement under READ
//! COMMITTED, reads the winner's event id. Keys are inserted in sorted order,
//! so two batches that share several keys lock them in the same order and
//! do not deadlock on them.
//!
//! NOTE: PostgreSQL does not document that `INSERT ... SELECT ... ORDER BY`
//! inserts rows in that order. PostgreSQL 15 does, and a test with two
//! batches in opposite key order fails on a deadlock without the sort.

use crate::codec::store_failure;
use hookline_core::store::{InsertOutcome, NewEvent, StoreError};
use hookline_core::EventId;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;

/// Claims each key for its event unless the product already has it. Among
/// equal keys in one batch, the first position wins.
const CLAIM_KEYS: &str = "INSERT INTO idempotency_keys \
     (product, idempotency_key, event_id, created_at) \
     SELECT product, idempotency_key, event_id, created_at \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[]) WITH ORDINALITY \
       AS k (product, idempotency_key, event_id, created_at, position) \
     ORDER BY product, idempotency_key, position \
     ON CONFLICT DO NOTHING \
     RETURNING product, idempotency_key, event_id";

/// The owner of each key that this batch did not claim, and whether the
/// owner's tasks are all in the queue. An owner event that retention has
/// deleted has no task left to enqueue, so it counts as enqueued.
const FIND_OWNERS: &str = "SELECT k.product, k.idempotency_key, k.event_id, \
       COALESCE(e.enqueued, true) AS enqueued \
     FROM idempotency_keys AS k \
     LEFT JOIN events AS e ON e.id = k.event_id \
     WHERE (k.product, k.idempotency_key) IN ( \
       SELECT * FROM UNNEST($1::text[], $2::text[]))";

/// A product and idempotency key pair.
type Key = (String, String);

/// The key of a batch event that is neither claimed by this batch nor
/// stored: another process expired it between the two statements.
#[derive(Debug, thiserror::Error)]
#[error("idempotency key {key:?} of product {product:?} was deleted while a batch with it was inserted; insert the batch again")]
struct KeyDeleted {
    product: String,
    key: String,
}

/// Inserts the batch's keys and returns the ones this batch claimed, each
/// with the event id it was claimed for.
pub(super) async fn claim_keys(
    connection: &mut PgConnection,
    batch: &[NewEvent],
) -> Result<HashMap<Key, String>, sqlx::Error> {
    let events: Vec<_> = batch.iter().map(|new_event| &new_event.event).collect();
    let rows = sqlx::query(CLAIM_KEYS)
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
        .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .fetch_all(&mut *connection)
        .await?;
    rows.iter()
        .map(|row| {
            let key = (row.try_get("product")?, row.try_get("idempotency_key")?);
            Ok((key, row.try_get("event_id")?))
        })
        .collect()
}

/// Turns the claimed keys into one outcome per batch position. A position is
/// inserted when its key was claimed for its event id and no earlier position
/// took that claim. Other positions are duplicates of the claiming event or
/// of the stored owner, which is looked up here.
pub(super) async fn resolve_outcomes(
    connection: &mut PgConnection,
    batch: &[NewEvent],
    mut claimed: HashMap<Key, String>,
) -> Result<Vec<InsertOutcome>, StoreError> {
    let mut owners_in_batch: HashMap<Key, EventId> = HashMap::new();
    let mut outcomes: Vec<Option<InsertOutcome>> = Vec::with_capacity(batch.len());
    let mut unresolved: Vec<usize> = Vec::new();
    for (position, new_event) in batch.iter().enumerate() {
        let event = &new_event.event;
        let key = (event.product.clone(), event.idempotency_key.clone());
        if claimed.get(&key).map(String::as_str) == Some(event.id.as_str()) {
            claimed.remove(&key);
            owners_in_batch.insert(key, event.id.clone());
            outcomes.push(Some(InsertOutcome::Inserted));
        } else if let Some(owner) = owners_in_batch.get(&key) {
            outcomes.push(Some(InsertOutcome::Duplicate {
                existing: owner.clone(),
                enqueued: false,
            }));
        } else {
            unresolved.push(position);
            outcomes.push(None);
        }
    }

    if !unresolved.is_empty() {
        let owners = find_owners(connection, batch, &unresolved)
            .await
            .map_err(store_failure(
                "read the owners of duplicate idempotency keys",
            ))?;
        for position in unresolved {
            let event = &batch[position].event;
            let key = (event.product.clone(), event.idempotency_key.clone());
            let Some((existing, enqueued)) = owners.get(&key) else {
                let error = KeyDeleted {
                    product: key.0,
                    key: key.1,
                };
                return Err(StoreError::backend("failed to insert events", error));
            };
            outcomes[position] = Some(InsertOutcome::Duplicate {
                existing: existing.clone(),
                enqueued: *enqueued,
            });
        }
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// Reads the stored owner of the keys at `positions`.
async fn find_owners(
    connection: &mut PgConnection,
    batch: &[NewEvent],
    positions: &[usize],
) -> Result<HashMap<Key, (EventId, bool)>, sqlx::Error> {
    let events: Vec<_> = positions.iter().map(|&p| &batch[p].event).collect();
    let rows = sqlx::query(FIND_OWNERS)
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
        .fetch_all(&mut *connection)
        .await?;
    rows.iter().map(owner_from_row).collect()
}

fn owner_from_row(row: &PgRow) -> Result<(Key, (EventId, bool)), sqlx::Error> {
    let key = (row.try_get("product")?, row.try_get("idempotency_key")?);
    let owner = EventId::from_stored(row.try_get("event_id")?);
    Ok((key, (owner, row.try_get("enqueued")?)))
}
