//! Deliveries: recording attempts and their outcome, listing, dead letters
//! and revival.

use super::records::{describe_failure, record_select, records_with_attempts, AttemptColumns};
use super::tasks::{task_from_row, task_select};
use super::usage::add_totals;
use super::PgStore;
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{AttemptOutcome, DeadLetter, DeliveryFilter, DeliveryUpdate};
use hookline_core::usage::UsageBatch;
use hookline_core::{ApplicationId, DeliveryId, DeliveryRecord, DeliveryState, WebhookId};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::collections::HashMap;
use time::OffsetDateTime;

/// Locks the batch's deliveries in id order before they are updated. The
/// `UPDATE ... FROM` below locks rows in join order, which could deadlock
/// with another batch that shares two deliveries.
///
/// This statement, [`UPDATE_DELIVERIES`] and the lookup of finished
/// deliveries run unprepared (`persistent(false)`), so that PostgreSQL plans
/// each call for its own id array. A generic plan cached while `deliveries`
/// was still small is a sequential scan, which a connection keeps until the
/// next `ANALYZE` (BENCHMARKS.md, third pass, has the measurements).
const LOCK_DELIVERIES: &str =
    "SELECT id FROM deliveries WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

/// Applies one change per delivery. A delivered delivery stays delivered:
/// an attempt that raced with the successful one (after a lease expired)
/// still counts, but cannot move the delivery back to pending or dead.
const UPDATE_DELIVERIES: &str = "UPDATE deliveries AS d SET \
       attempts = d.attempts + u.attempt_count, \
       state = CASE WHEN d.state = 'delivered' THEN 'delivered' ELSE u.state END, \
       next_attempt_at = CASE WHEN d.state = 'delivered' THEN NULL ELSE u.next_attempt_at END, \
       last_error = CASE WHEN d.state = 'delivered' THEN NULL ELSE u.last_error END, \
       updated_at = $6 \
     FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::integer[]) \
       AS u (id, state, next_attempt_at, last_error, attempt_count) \
     WHERE d.id = u.id";

/// Starts the read-only snapshot that a record and its attempts are read
/// in, so that both come from the same point in time. Readers commit it
/// before they return, because a dropped transaction is rolled back later
/// by a background task and keeps its table locks until then.
const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// The change one batch makes to one delivery.
struct DeliveryChange<'a> {
    id: &'a str,
    state: &'static str,
    next_attempt_at: Option<OffsetDateTime>,
    last_error: Option<String>,
    /// Attempts of this delivery in the batch.
    attempt_count: i32,
}

impl PgStore {
    /// Writes the attempts, delivery states and usage in one transaction.
    /// The usage rows come last, because every dispatcher adds to the same
    /// row of an application's hour and keeps its lock until the commit.
    pub(super) async fn apply_finished(
        &self,
        outcomes: &[AttemptOutcome],
        usage: &UsageBatch,
    ) -> Result<(), sqlx::Error> {
        if outcomes.is_empty() && usage.is_empty() {
            return Ok(());
        }
        let mut transaction = self.pool.begin().await?;
        if !outcomes.is_empty() {
            apply_outcomes(&mut transaction, outcomes).await?;
        }
        add_totals(&mut transaction, usage).await?;
        transaction.commit().await
    }

    pub(super) async fn find_delivery(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, sqlx::Error> {
        let mut transaction = begin_snapshot(&self.pool).await?;
        let rows = sqlx::query(record_select!("WHERE d.id = $1"))
            .bind(id.as_str())
            .fetch_all(&mut *transaction)
            .await?;
        let records = records_with_attempts(&mut transaction, &rows).await?;
        transaction.commit().await?;
        Ok(records.into_iter().next())
    }

    pub(super) async fn list_deliveries(
        &self,
        application: &ApplicationId,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, sqlx::Error> {
        let state = filter.state.map(DeliveryState::as_str);
        let limit = i64::from(filter.limit);
        // Two statements instead of `$4 IS NULL OR d.id < $4`, so that the
        // page start is an index bound in both.
        let query = match &filter.before {
            Some(before) => sqlx::query(record_select!(
                "WHERE d.application_id = $1 AND ($2::text IS NULL OR d.state = $2) \
                 AND d.id < $4 ORDER BY d.id DESC LIMIT $3"
            ))
            .bind(application.as_str())
            .bind(state)
            .bind(limit)
            .bind(before.as_str()),
            None => sqlx::query(record_select!(
                "WHERE d.application_id = $1 AND ($2::text IS NULL OR d.state = $2) \
                 ORDER BY d.id DESC LIMIT $3"
            ))
            .bind(application.as_str())
            .bind(state)
            .bind(limit),
        };

        let mut transaction = begin_snapshot(&self.pool).await?;
        let rows = query.fetch_all(&mut *transaction).await?;
        let records = records_with_attempts(&mut transaction, &rows).await?;
        transaction.commit().await?;
        Ok(records)
    }

    pub(super) async fn list_dead_letters(
        &self,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, sqlx::Error> {
        let mut transaction = begin_snapshot(&self.pool).await?;
        let rows = sqlx::query(record_select!(
            "WHERE d.state = 'dead' ORDER BY d.updated_at DESC, d.id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&mut *transaction)
        .await?;
        let records = records_with_attempts(&mut transaction, &rows).await?;
        transaction.commit().await?;
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
        let mut transaction = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $2, updated_at = $2 \
             WHERE id = $1 AND state = 'dead'",
        )
        .bind(id.as_str())
        .bind(OffsetDateTime::now_utc())
        .execute(&mut *transaction)
        .await?;
        if changed.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(None);
        }
        let row = sqlx::query(task_select!("WHERE d.id = $1"))
            .bind(id.as_str())
            .fetch_one(&mut *transaction)
            .await?;
        let task = task_from_row(&row)?;
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
        let now = OffsetDateTime::now_utc();
        let mut transaction = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deliveries (id, event_id, application_id, state, next_attempt_at, \
             created_at, updated_at, webhook_id, replay_of) \
             SELECT $2, event_id, application_id, 'pending', $3, $3, $3, $4, id \
             FROM deliveries \
             WHERE id = $1 AND state IN ('delivered', 'dead')",
        )
        .bind(id.as_str())
        .bind(replay.as_str())
        .bind(now)
        .bind(webhook_id.as_str())
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(None);
        }
        let row = sqlx::query(task_select!("WHERE d.id = $1"))
            .bind(replay.as_str())
            .fetch_one(&mut *transaction)
            .await?;
        let task = task_from_row(&row)?;
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

async fn begin_snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(BEGIN_SNAPSHOT).await
}

async fn update_deliveries(
    connection: &mut PgConnection,
    changes: Vec<DeliveryChange<'_>>,
) -> Result<(), sqlx::Error> {
    let mut ids = Vec::with_capacity(changes.len());
    let mut states = Vec::with_capacity(changes.len());
    let mut next_attempts = Vec::with_capacity(changes.len());
    let mut last_errors = Vec::with_capacity(changes.len());
    let mut attempt_counts = Vec::with_capacity(changes.len());
    for change in changes {
        ids.push(change.id);
        states.push(change.state);
        next_attempts.push(change.next_attempt_at);
        last_errors.push(change.last_error);
        attempt_counts.push(change.attempt_count);
    }
    sqlx::query(UPDATE_DELIVERIES)
        .persistent(false)
        .bind(ids)
        .bind(states)
        .bind(next_attempts)
        .bind(last_errors)
        .bind(attempt_counts)
        .bind(OffsetDateTime::now_utc())
        .execute(connection)
        .await?;
    Ok(())
}

/// Locks the deliveries of `outcomes`, adds their attempts and updates them.
async fn apply_outcomes(
    transaction: &mut PgConnection,
    outcomes: &[AttemptOutcome],
) -> Result<(), sqlx::Error> {
    let mut attempts = AttemptColumns::default();
    for outcome in outcomes {
        attempts.push(&outcome.attempt);
    }
    let changes = fold_changes(outcomes);
    let ids: Vec<&str> = changes.iter().map(|change| change.id).collect();
    sqlx::query(LOCK_DELIVERIES)
        .persistent(false)
        .bind(&ids)
        .execute(&mut *transaction)
        .await?;
    attempts.insert(&mut *transaction).await?;
    update_deliveries(transaction, changes).await
}

/// Folds the outcomes into one change per delivery, in order of first
/// appearance. When a batch contains several attempts of one delivery, the last
/// one decides its state, except that a successful attempt always wins.
fn fold_changes(outcomes: &[AttemptOutcome]) -> Vec<DeliveryChange<'_>> {
    let mut changes: Vec<DeliveryChange<'_>> = Vec::with_capacity(outcomes.len());
    let mut positions: HashMap<&str, usize> = HashMap::with_capacity(outcomes.len());
    for outcome in outcomes {
        let id = outcome.attempt.delivery_id.as_str();
        let (state, next_attempt_at, last_error) = match &outcome.update {
            DeliveryUpdate::Delivered => ("delivered", None, None),
            DeliveryUpdate::Retrying { next_attempt_at } => (
                "pending",
                Some(*next_attempt_at),
                Some(describe_failure(&outcome.attempt.result)),
            ),
            DeliveryUpdate::Dead { reason } => ("dead", None, Some(reason.clone())),
        };
        let Some(&position) = positions.get(id) else {
            positions.insert(id, changes.len());
            changes.push(DeliveryChange {
                id,
                state,
                next_attempt_at,
                last_error,
                attempt_count: 1,
            });
            continue;
        };
        let change = &mut changes[position];
        change.attempt_count = change.attempt_count.saturating_add(1);
        if change.state != "delivered" {
            change.state = state;
            change.next_attempt_at = next_attempt_at;
            change.last_error = last_error;
        }
    }
    changes
}
