//! The delivery path's bookkeeping as one relaxed script: attempt records
//! and delivery states, usage totals, and queue settlements.
//!
//! Recording attempts, adding usage and settling tasks each run this script
//! with the other parts empty. The outcome recorder runs it once with all
//! three, so a batch of finished work costs one transaction and one round
//! trip to the writer's thread (module `durability`).

use super::deliveries::update_rows;
use super::records::attempt_row;
use super::usage::{hour_row, window_row};
use crate::codec::{json_rows, now_millis, to_millis};
use crate::durability::{relaxed_script, Scripts};
use hookline_core::queue::{Leased, Settlement};
use hookline_core::store::AttemptOutcome;
use hookline_core::usage::UsageBatch;
use sqlx::{Row, SqlitePool};
use std::collections::HashSet;
use std::sync::LazyLock;

/// Parameters: `?1` attempts, `?2` delivery updates, `?3` the current time,
/// `?4` hourly usage, `?5` limit windows, `?6` tasks to remove, `?7` tasks
/// to reschedule, each a JSON array read with `json_each`.
///
/// - Attempt rows are inserted in batch order, so attempt ids follow it.
/// - A delivered delivery stays delivered: an attempt that raced with the
///   successful one (after a lease expired) still counts, but cannot move
///   the delivery back to pending or dead.
/// - `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join
///   constraint of the `SELECT`.
/// - Settlements apply only while the row still has the settling lease
///   token, and return the ids they applied to. Dead letters need no queue
///   row: the delivery is already marked dead with its reason.
const BODY: &str = "\
INSERT INTO attempts \
  (delivery_id, number, started_at, duration_ms, result_kind, status, error_class, \
   error_message, response_excerpt, response_truncated) \
  SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
         value ->> 6, value ->> 7, value ->> 8, value ->> 9 \
  FROM json_each(?1) ORDER BY key; \
UPDATE deliveries SET \
    attempts = deliveries.attempts + u.attempt_count, \
    state = CASE WHEN deliveries.state = 'delivered' THEN 'delivered' ELSE u.state END, \
    next_attempt_at = CASE WHEN deliveries.state = 'delivered' THEN NULL \
                      ELSE u.next_attempt_at END, \
    last_error = CASE WHEN deliveries.state = 'delivered' THEN NULL ELSE u.last_error END, \
    updated_at = ?3 \
  FROM (SELECT value ->> 0 AS id, value ->> 1 AS state, value ->> 2 AS next_attempt_at, \
               value ->> 3 AS last_error, value ->> 4 AS attempt_count \
        FROM json_each(?2)) AS u \
  WHERE deliveries.id = u.id; \
INSERT INTO usage_hourly \
  (application_id, hour_start, delivered, failed_attempts, throttled, dead_lettered, \
   latency_ms_sum, latency_count, latency_ms_max) \
  SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
         value ->> 6, value ->> 7, value ->> 8 \
  FROM json_each(?4) WHERE true \
  ON CONFLICT (application_id, hour_start) DO UPDATE SET \
    delivered = delivered + excluded.delivered, \
    failed_attempts = failed_attempts + excluded.failed_attempts, \
    throttled = throttled + excluded.throttled, \
    dead_lettered = dead_lettered + excluded.dead_lettered, \
    latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum, \
    latency_count = latency_count + excluded.latency_count, \
    latency_ms_max = max(latency_ms_max, excluded.latency_ms_max); \
INSERT INTO limit_windows \
  (application_id, window_start, window_end, plan, rate_limit, throttled) \
  SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
  FROM json_each(?5) WHERE true \
  ON CONFLICT (application_id, window_start, window_end) DO UPDATE SET \
    plan = excluded.plan, rate_limit = excluded.rate_limit, \
    throttled = throttled + excluded.throttled; \
DELETE FROM queue \
  WHERE (delivery_id, lease_token) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?6)) \
  RETURNING delivery_id; \
UPDATE queue SET \
    due_at = u.due_at, visible_at = u.due_at, lease_token = NULL, \
    attempts_made = u.attempts_made \
  FROM (SELECT value ->> 0 AS delivery_id, value ->> 1 AS lease_token, \
               value ->> 2 AS due_at, value ->> 3 AS attempts_made \
        FROM json_each(?7)) AS u \
  WHERE queue.delivery_id = u.delivery_id AND queue.lease_token = u.lease_token \
  RETURNING queue.delivery_id";

static SCRIPT: LazyLock<String> = LazyLock::new(|| relaxed_script(BODY));

/// The JSON parameters of one run of the script.
#[derive(Default)]
pub(crate) struct Bookkeeping {
    attempts: Option<String>,
    updates: Option<String>,
    hours: Option<String>,
    windows: Option<String>,
    removals: Option<String>,
    retries: Option<String>,
}

impl Bookkeeping {
    /// Adds the attempts and the delivery states they lead to.
    pub(crate) fn outcomes(mut self, outcomes: &[AttemptOutcome]) -> Result<Self, sqlx::Error> {
        if !outcomes.is_empty() {
            let attempts: Vec<_> = outcomes
                .iter()
                .map(|outcome| attempt_row(&outcome.attempt))
                .collect();
            self.attempts = Some(json_rows(&attempts)?);
            self.updates = Some(json_rows(&update_rows(outcomes))?);
        }
        Ok(self)
    }

    /// Adds usage totals.
    pub(crate) fn usage(mut self, usage: &UsageBatch) -> Result<Self, sqlx::Error> {
        if !usage.hours.is_empty() {
            let hours: Vec<_> = usage.hours.iter().map(hour_row).collect();
            self.hours = Some(json_rows(&hours)?);
        }
        if !usage.windows.is_empty() {
            let windows: Vec<_> = usage.windows.iter().map(window_row).collect();
            self.windows = Some(json_rows(&windows)?);
        }
        Ok(self)
    }

    /// Adds queue settlements.
    pub(crate) fn settlements(mut self, settlements: &[Settlement]) -> Result<Self, sqlx::Error> {
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
        if !removals.is_empty() {
            self.removals = Some(json_rows(&removals)?);
        }
        if !retries.is_empty() {
            self.retries = Some(json_rows(&retries)?);
        }
        Ok(self)
    }

    /// Runs the script and returns the delivery ids whose settlement took
    /// effect. Does nothing when every part is empty.
    pub(crate) async fn write(
        self,
        writer: &SqlitePool,
        scripts: &Scripts,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let parts = [
            self.attempts,
            self.updates,
            self.hours,
            self.windows,
            self.removals,
            self.retries,
        ];
        if parts.iter().all(Option::is_none) {
            return Ok(HashSet::new());
        }
        let [attempts, updates, hours, windows, removals, retries] =
            parts.map(|part| part.unwrap_or_else(|| "[]".to_owned()));
        let query = sqlx::query(SCRIPT.as_str())
            .bind(attempts)
            .bind(updates)
            .bind(now_millis())
            .bind(hours)
            .bind(windows)
            .bind(removals)
            .bind(retries);
        let rows = scripts.run(writer, query).await?;
        rows.iter()
            .map(|row| row.try_get::<String, _>("delivery_id"))
            .collect()
    }
}

/// Converts a lease to its stored token: the `i64` with the same bits as the
/// `u64` handed out by `receive`.
fn lease_token(lease: &Leased) -> i64 {
    lease.lease as i64
}
