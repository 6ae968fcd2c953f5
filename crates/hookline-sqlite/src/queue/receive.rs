//! Receiving: taking handed-off tasks, and leasing due rows in one
//! statement, then reading their tasks.

use super::handoff::Stale;
use super::SqliteQueue;
use crate::codec::{duration_millis, json_rows, now_millis, queue_failure, to_u32};
use crate::durability::relaxed_script;
use crate::tasks::{task_from_row, task_select};
use hookline_core::queue::{Leased, QueueError};
use sqlx::Row;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::time::Instant;

/// Leases up to `?3` visible rows, earliest first: sets their token to `?4`
/// and hides them until `?2`. The script runs on the single writer
/// connection, so two receivers never lease the same row. A lease lost to a
/// power failure only makes its tasks visible again.
const LEASE: &str = "UPDATE queue SET lease_token = ?4, visible_at = ?2 \
     WHERE delivery_id IN ( \
       SELECT delivery_id FROM queue WHERE visible_at <= ?1 ORDER BY visible_at LIMIT ?3)";

/// Reads the tasks of the lease in the same script. All rows of a lease
/// share its `visible_at`, so the visibility index finds them without an
/// index on the token.
const LEASED_TASKS: &str = task_select!(
    attempts_made,
    "JOIN queue AS q ON q.delivery_id = d.id \
     WHERE q.visible_at = ?2 AND q.lease_token = ?4 ORDER BY q.due_at"
);

static LEASE_SCRIPT: LazyLock<String> =
    LazyLock::new(|| relaxed_script(&format!("{LEASE}; {LEASED_TASKS}")));

/// Makes leased rows visible at their due time again, each only while it
/// still has the given token. `?1` contains (delivery id, token) pairs.
static RELEASE_SCRIPT: LazyLock<String> = LazyLock::new(|| {
    relaxed_script(
        "UPDATE queue SET lease_token = NULL, visible_at = due_at \
         WHERE (delivery_id, lease_token) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
    )
});

/// Upper bound of one wait, so that adding it to the current instant cannot
/// overflow. A longer `wait` is cut to this.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

impl SqliteQueue {
    /// Leases due tasks, waiting up to `wait` for one to become visible. The
    /// wait ends early at the earliest visibility time read from the table or
    /// when this process enqueues or reschedules a task.
    pub(super) async fn receive_leased(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Leased>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Registered before the lease query, so that an enqueue that
            // commits after the query still wakes this receiver.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();

            let leased = self
                .lease(max, visibility)
                .await
                .map_err(queue_failure("lease due tasks"))?;
            if !leased.is_empty() {
                return Ok(leased);
            }

            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let next_visible = self
                .next_visible_in()
                .await
                .map_err(queue_failure("read the next due time"))?;
            let until = next_visible.map_or(deadline, |delay| deadline.min(now + delay));
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Leases up to `max` tasks: first those handed off by inserts in this
    /// process, then due rows of the table. The table is also read when a
    /// lease from it is due, so that handed-off tasks cannot hold back
    /// retries and older rows.
    // NOTE: a caller that drops this future after taking handed-off tasks
    // loses them from memory. Their rows stay leased until the lease
    // expires or the next exclusive open, and the dispatcher drops a
    // receive only when it shuts down.
    async fn lease(&self, max: usize, visibility: Duration) -> Result<Vec<Leased>, sqlx::Error> {
        let table_due = self.handoff.table_due();
        let first = if table_due { max / 2 } else { max };
        let (mut leased, mut stale) = self.handoff.take(first, visibility);
        if table_due || leased.len() < max {
            // Released first, so that this lease from the table can take them.
            self.release_stale(std::mem::take(&mut stale)).await;
            let requested = max - leased.len();
            match self.lease_table(requested, visibility).await {
                Ok(rows) => {
                    self.handoff.table_leased(requested, rows.len());
                    leased.extend(rows);
                }
                Err(error) if leased.is_empty() => return Err(error),
                Err(error) => tracing::warn!(
                    %error,
                    handed_off = leased.len(),
                    "Leasing due tasks from the queue table failed; receiving only the handed-off tasks"
                ),
            }
            let (more, more_stale) = self.handoff.take(max - leased.len(), visibility);
            leased.extend(more);
            stale = more_stale;
        }
        self.release_stale(stale).await;
        Ok(leased)
    }

    /// Makes handed-off tasks whose lease ran short visible again, for a
    /// later lease from the table. A failure only leaves them to their
    /// lease expiry.
    async fn release_stale(&self, stale: Stale) {
        if stale.is_empty() {
            return;
        }
        let released = async {
            let rows = json_rows(&stale)?;
            let query = sqlx::query(RELEASE_SCRIPT.as_str()).bind(rows);
            self.scripts.run(&self.writer, query).await
        };
        match released.await {
            Ok(_) => {
                tracing::info!(
                    tasks = stale.len(),
                    "Released handed-off tasks that waited too long for a receiver"
                );
                self.wake.notify_waiters();
            }
            Err(error) => tracing::warn!(
                %error,
                tasks = stale.len(),
                "Failed to release handed-off tasks that waited too long; they are received again when their lease expires"
            ),
        }
    }

    /// Leases due rows under one fresh random token and reads their tasks,
    /// in one script. A lease token is handed out as the `u64` with the same
    /// bits as the stored `i64`.
    async fn lease_table(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Leased>, sqlx::Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let token: i64 = rand::random();
        let now = now_millis();
        let visible_at = now.saturating_add(duration_millis(visibility));
        let query = sqlx::query(LEASE_SCRIPT.as_str())
            .bind(now)
            .bind(visible_at)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(token);
        let rows = self.scripts.run(&self.writer, query).await?;
        rows.iter()
            .map(|row| {
                let attempts_made = to_u32("attempts made", row.try_get("attempts_made")?)?;
                Ok(Leased {
                    task: task_from_row(row, attempts_made)?,
                    lease: token as u64,
                })
            })
            .collect()
    }

    /// Returns how long until the earliest row becomes visible, at least
    /// 1 ms, or `None` when the queue is empty.
    async fn next_visible_in(&self) -> Result<Option<Duration>, sqlx::Error> {
        let earliest: Option<i64> = sqlx::query_scalar("SELECT MIN(visible_at) FROM queue")
            .fetch_one(&self.reader)
            .await?;
        Ok(earliest.map(|visible_at| {
            let delay = visible_at.saturating_sub(now_millis()).max(1);
            Duration::from_millis(delay.unsigned_abs())
        }))
    }
}
