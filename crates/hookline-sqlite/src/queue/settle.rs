//! Settling leased tasks: removing finished ones and rescheduling retries,
//! each only while the row still has the settling consumer's lease token.

use super::SqliteQueue;
use crate::codec::{json_rows, queue_failure, to_millis};
use hookline_core::queue::{Leased, QueueError, Settlement};
use sqlx::Connection as _;
use sqlx::{Row, SqliteConnection};
use std::collections::HashSet;

/// Removes acknowledged and dead-lettered tasks. Dead letters need no row
/// here: the state store already marked the delivery dead with its reason.
const REMOVE: &str = "DELETE FROM queue \
     WHERE (delivery_id, lease_token) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1)) \
     RETURNING delivery_id";

/// Makes retried tasks invisible until their new due time and ends the lease.
const RESCHEDULE: &str = "UPDATE queue SET \
       due_at = u.due_at, visible_at = u.due_at, lease_token = NULL, \
       attempts_made = u.attempts_made \
     FROM (SELECT value ->> 0 AS delivery_id, value ->> 1 AS lease_token, \
                  value ->> 2 AS due_at, value ->> 3 AS attempts_made \
           FROM json_each(?1)) AS u \
     WHERE queue.delivery_id = u.delivery_id AND queue.lease_token = u.lease_token \
     RETURNING queue.delivery_id";

impl SqliteQueue {
    /// Applies all settlements in one transaction. A settlement whose lease
    /// token no longer matches is skipped with a warning and is no error.
    pub(super) async fn settle_leases(&self, settlements: &[Settlement]) -> Result<(), QueueError> {
        if settlements.is_empty() {
            return Ok(());
        }
        let mut removals: Vec<(&str, i64)> = Vec::new();
        let mut retries: Vec<(&str, i64, i64, u32)> = Vec::new();
        for settlement in settlements {
            match settlement {
                Settlement::Ack { lease } | Settlement::DeadLetter { lease, .. } => {
                    removals.push((lease.task.delivery_id.as_str(), lease_token(lease)));
                }
                Settlement::Retry {
                    lease,
                    due_at,
                    attempts_made,
                } => retries.push((
                    lease.task.delivery_id.as_str(),
                    lease_token(lease),
                    to_millis(*due_at),
                    *attempts_made,
                )),
            }
        }

        let applied = self
            .apply_settlements(&removals, &retries)
            .await
            .map_err(queue_failure("settle leased tasks"))?;
        warn_stale(settlements, &applied);
        if !retries.is_empty() {
            self.wake.notify_waiters();
        }
        Ok(())
    }

    /// Runs both statements in one transaction and returns the delivery ids
    /// whose settlement took effect.
    async fn apply_settlements(
        &self,
        removals: &[(&str, i64)],
        retries: &[(&str, i64, i64, u32)],
    ) -> Result<HashSet<String>, sqlx::Error> {
        let mut applied = HashSet::with_capacity(removals.len() + retries.len());
        let mut connection = crate::durability::relaxed(&self.writer).await?;
        let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
        if !removals.is_empty() {
            let rows = json_rows(removals)?;
            collect_ids(&mut transaction, REMOVE, rows, &mut applied).await?;
        }
        if !retries.is_empty() {
            let rows = json_rows(retries)?;
            collect_ids(&mut transaction, RESCHEDULE, rows, &mut applied).await?;
        }
        transaction.commit().await?;
        Ok(applied)
    }
}

/// Runs a statement returning `delivery_id` and adds the ids to `applied`.
async fn collect_ids(
    connection: &mut SqliteConnection,
    sql: &'static str,
    rows: String,
    applied: &mut HashSet<String>,
) -> Result<(), sqlx::Error> {
    let returned = sqlx::query(sql)
        .bind(rows)
        .fetch_all(&mut *connection)
        .await?;
    for row in returned {
        applied.insert(row.try_get("delivery_id")?);
    }
    Ok(())
}

/// Logs each settlement that did not apply: its lease expired and another
/// receive took the task, or the task was settled already.
fn warn_stale(settlements: &[Settlement], applied: &HashSet<String>) {
    for settlement in settlements {
        let (Settlement::Ack { lease }
        | Settlement::Retry { lease, .. }
        | Settlement::DeadLetter { lease, .. }) = settlement;
        let delivery_id = lease.task.delivery_id.as_str();
        if !applied.contains(delivery_id) {
            tracing::warn!(
                delivery_id,
                "Ignored settlement of a task that no longer holds this lease; \
                 the lease expired and the task was received again, or it was settled already"
            );
        }
    }
}

/// Converts a lease to its stored token: the `i64` with the same bits as the
/// `u64` handed out by `receive`.
fn lease_token(lease: &Leased) -> i64 {
    lease.lease as i64
}
