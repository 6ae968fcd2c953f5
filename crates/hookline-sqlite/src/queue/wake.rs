//! Making the postponed tasks of one application due at once.

use super::SqliteQueue;
use crate::codec::{now_millis, queue_failure};
use hookline_core::queue::QueueError;
use hookline_core::ApplicationId;

/// Moves the scheduled, unleased tasks of pending deliveries of `?1` that
/// are due no later than `?3` to `?2`. Leased tasks keep their lease: their
/// dispatcher settles them.
const WAKE: &str = "UPDATE queue SET due_at = ?2, visible_at = ?2 \
     WHERE lease_token IS NULL AND visible_at > ?2 AND due_at <= ?3 \
       AND delivery_id IN (SELECT id FROM deliveries WHERE application_id = ?1 AND state = 'pending')";

impl SqliteQueue {
    /// Makes the tasks of `application` scheduled up to `until_millis`
    /// (Unix milliseconds) due now. `i64::MAX` wakes every scheduled task.
    pub(super) async fn wake_tasks_of(
        &self,
        application: &ApplicationId,
        until_millis: i64,
    ) -> Result<u64, QueueError> {
        let woken = sqlx::query(WAKE)
            .bind(application.as_str())
            .bind(now_millis())
            .bind(until_millis)
            .execute(&self.writer)
            .await
            .map_err(queue_failure("wake an application's tasks"))?;
        self.wake.notify_waiters();
        Ok(woken.rows_affected())
    }
}
