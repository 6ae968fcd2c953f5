//! Deliveries: recording attempts and their outcome, listing, dead letters
//! and revival.

use super::bookkeeping::Bookkeeping;
use super::records::{describe_failure, record_select, records_with_attempts};
use super::SqliteStore;
use crate::codec::{now_millis, to_millis};
use crate::tasks::{task_from_row, task_select};
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{AttemptOutcome, DeadLetter, DeliveryFilter, DeliveryUpdate};
use hookline_core::usage::UsageBatch;
use hookline_core::{ApplicationId, DeliveryId, DeliveryRecord, DeliveryState, WebhookId};
use std::collections::HashMap;

/// Column form of one delivery's update: id, state, next attempt time, last
/// error and how many attempts of the batch it had.
pub(super) type UpdateRow<'a> = (&'a str, &'static str, Option<i64>, Option<String>, u32);

impl SqliteStore {
    /// Writes the attempts, delivery states and usage in one script.
    pub(super) async fn apply_finished(
        &self,
        outcomes: &[AttemptOutcome],
        usage: &UsageBatch,
    ) -> Result<(), sqlx::Error> {
        Bookkeeping::default()
            .outcomes(outcomes)?
            .usage(usage)?
            .write(&self.writer, &self.scripts)
            .await?;
        Ok(())
    }

    pub(super) async fn find_delivery(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, sqlx::Error> {
        let mut transaction = self.reader.begin().await?;
        let rows = sqlx::query(record_select!("WHERE d.id = ?1"))
            .bind(id.as_str())
            .fetch_all(&mut *transaction)
            .await?;
        let records = records_with_attempts(&mut transaction, &rows).await?;
        Ok(records.into_iter().next())
    }

    pub(super) async fn list_deliveries(
        &self,
        application: &ApplicationId,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, sqlx::Error> {
        let state = filter.state.map(DeliveryState::as_str);
        let limit = i64::from(filter.limit);
        // Two statements instead of `?4 IS NULL OR d.id < ?4`, which would keep
        // SQLite from seeking the index to the page start.
        let query = match &filter.before {
            Some(before) => sqlx::query(record_select!(
                "WHERE d.application_id = ?1 AND (?2 IS NULL OR d.state = ?2) AND d.id < ?4 \
                 ORDER BY d.id DESC LIMIT ?3"
            ))
            .bind(application.as_str())
            .bind(state)
            .bind(limit)
            .bind(before.as_str()),
            None => sqlx::query(record_select!(
                "WHERE d.application_id = ?1 AND (?2 IS NULL OR d.state = ?2) \
                 ORDER BY d.id DESC LIMIT ?3"
            ))
            .bind(application.as_str())
            .bind(state)
            .bind(limit),
        };

        let mut transaction = self.reader.begin().await?;
        let rows = query.fetch_all(&mut *transaction).await?;
        records_with_attempts(&mut transaction, &rows).await
    }

    pub(super) async fn list_dead_letters(
        &self,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, sqlx::Error> {
        let mut transaction = self.reader.begin().await?;
        let rows = sqlx::query(record_select!(
            "WHERE d.state = 'dead' ORDER BY d.updated_at DESC, d.id DESC LIMIT ?1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&mut *transaction)
        .await?;
        let records = records_with_attempts(&mut transaction, &rows).await?;
        Ok(records
            .into_iter()
            .map(|delivery| DeadLetter {
                reason: delivery.last_error.clone().unwrap_or_default(),
                delivery,
            })
            .collect())
    }

    /// Moves a dead delivery back to pending, due now, and returns its task
    /// with no attempts made, so that it gets the full retry schedule again.
    /// The last error stays until the next attempt replaces it.
    pub(super) async fn revive_delivery(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryTask>, sqlx::Error> {
        let now = now_millis();
        let mut transaction = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, updated_at = ?2 \
             WHERE id = ?1 AND state = 'dead'",
        )
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        if changed.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(task_select!("WHERE d.id = ?1"))
            .bind(id.as_str())
            .fetch_one(&mut *transaction)
            .await?;
        let task = task_from_row(&row, 0)?;
        transaction.commit().await?;
        tracing::info!(delivery_id = %id, "Revived dead delivery");
        Ok(Some(task))
    }

    /// Inserts a replay of a delivered or dead delivery, as
    /// [`hookline_core::store::Store::replay`] describes, and returns its task.
    pub(super) async fn replay_delivery(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryTask>, sqlx::Error> {
        let replay = DeliveryId::generate();
        let webhook_id = WebhookId::generate();
        let now = now_millis();
        let mut transaction = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO deliveries (id, event_id, application_id, state, next_attempt_at, \
             created_at, updated_at, webhook_id, replay_of) \
             SELECT ?2, event_id, application_id, 'pending', ?3, ?3, ?3, ?4, id \
             FROM deliveries \
             WHERE id = ?1 AND state IN ('delivered', 'dead')",
        )
        .bind(id.as_str())
        .bind(replay.as_str())
        .bind(now)
        .bind(webhook_id.as_str())
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(task_select!("WHERE d.id = ?1"))
            .bind(replay.as_str())
            .fetch_one(&mut *transaction)
            .await?;
        let task = task_from_row(&row, 0)?;
        transaction.commit().await?;
        tracing::info!(
            delivery_id = %id,
            replay_id = %replay,
            webhook_id = %webhook_id,
            "Replayed delivery"
        );
        Ok(Some(task))
    }
}

/// Folds the outcomes into one update per delivery. When a batch contains
/// several attempts of one delivery, the last one decides its state, except
/// that a successful attempt always wins.
pub(super) fn update_rows(outcomes: &[AttemptOutcome]) -> Vec<UpdateRow<'_>> {
    let mut rows: Vec<UpdateRow<'_>> = Vec::with_capacity(outcomes.len());
    let mut positions: HashMap<&str, usize> = HashMap::with_capacity(outcomes.len());
    for outcome in outcomes {
        let id = outcome.attempt.delivery_id.as_str();
        let (state, next_attempt_at, last_error) = match &outcome.update {
            DeliveryUpdate::Delivered => ("delivered", None, None),
            DeliveryUpdate::Retrying { next_attempt_at } => (
                "pending",
                Some(to_millis(*next_attempt_at)),
                Some(describe_failure(&outcome.attempt.result)),
            ),
            DeliveryUpdate::Dead { reason } => ("dead", None, Some(reason.clone())),
        };
        match positions.get(id) {
            Some(&position) => {
                let row = &mut rows[position];
                row.4 += 1;
                if row.1 != "delivered" {
                    (row.1, row.2, row.3) = (state, next_attempt_at, last_error);
                }
            }
            None => {
                positions.insert(id, rows.len());
                rows.push((id, state, next_attempt_at, last_error, 1));
            }
        }
    }
    rows
}
