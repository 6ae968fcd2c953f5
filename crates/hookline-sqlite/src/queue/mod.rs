//! [`DeliveryQueue`] on SQLite. The `queue` table contains one row per queued
//! delivery with its due time, lease and attempt count. The payload is read
//! from the event when a task is received.
//!
//! Each `receive` writes a fresh random 64-bit lease token to the rows it
//! leases. Settling applies only while the row still has that token, so a
//! consumer whose lease expired and was taken over cannot settle the task.
//! An insert in this process can write the rows already leased and hand the
//! tasks over in memory (module `handoff`).

mod handoff;
mod receive;
mod settle;
mod wake;

use crate::codec::{invalid, json_rows, now_millis, queue_failure, to_millis};
use crate::durability::{relaxed_script, Scripts};
use async_trait::async_trait;
use handoff::Handoff;
pub(crate) use handoff::HandoffLease;
use hookline_core::queue::{
    DeliveryQueue, DeliveryTask, Leased, QueueDepth, QueueError, Settlement,
};
use hookline_core::ApplicationId;
use sqlx::{Row, SqlitePool};
use std::sync::LazyLock;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Notify;

/// Adds tasks due now. Ignoring rows that exist keeps enqueueing idempotent:
/// a task already queued keeps its schedule and lease. A task lost to a
/// power failure is enqueued again from its event, whose `enqueued` mark
/// was written after it, so the script may skip the disk sync.
static ENQUEUE: LazyLock<String> = LazyLock::new(|| {
    relaxed_script(
        "INSERT OR IGNORE INTO queue \
         (delivery_id, due_at, visible_at, lease_token, attempts_made) \
         SELECT value ->> 0, ?2, ?2, NULL, value ->> 1 FROM json_each(?1)",
    )
});

/// Counts tasks by visibility at `?1`. A task whose lease expired is ready.
/// The age of the oldest ready task is measured from its due time.
const DEPTH: &str = "SELECT \
       COALESCE(SUM(visible_at <= ?1), 0) AS ready, \
       COALESCE(SUM(lease_token IS NULL AND visible_at > ?1), 0) AS scheduled, \
       COALESCE(SUM(lease_token IS NOT NULL AND visible_at > ?1), 0) AS leased, \
       MIN(CASE WHEN visible_at <= ?1 THEN due_at END) AS oldest_ready_due_at, \
       (SELECT COUNT(*) FROM deliveries WHERE state = 'dead') AS dead \
     FROM queue";

/// The durable delivery queue of the embedded backend.
pub struct SqliteQueue {
    /// The only connection that writes (a pool of one).
    writer: SqlitePool,
    reader: SqlitePool,
    scripts: Scripts,
    /// Wakes waiting receivers when tasks are enqueued or rescheduled in this
    /// process. Receivers also wake at the earliest visibility time they read.
    wake: Notify,
    /// Tasks leased by the insert that enqueued them, for receivers of this
    /// process.
    handoff: Handoff,
}

impl SqliteQueue {
    pub(crate) fn new(writer: SqlitePool, reader: SqlitePool, scripts: Scripts) -> Self {
        Self {
            writer,
            reader,
            scripts,
            wake: Notify::new(),
            handoff: Handoff::default(),
        }
    }

    /// Returns the lease under which an insert should write `tasks` new
    /// queue rows and hand them to this process's receivers, or `None` when
    /// they should be written unleased.
    pub(crate) fn handoff_lease(&self, tasks: usize) -> Option<HandoffLease> {
        self.handoff.lease_for(tasks)
    }

    /// Hands the tasks an insert wrote under `lease` to the receivers and
    /// wakes them.
    pub(crate) fn hand_off(&self, lease: HandoffLease, tasks: impl Iterator<Item = DeliveryTask>) {
        self.handoff.push(lease, tasks);
        self.wake.notify_waiters();
    }

    /// Wakes waiting receivers after tasks were added outside `enqueue`.
    pub(crate) fn tasks_added(&self) {
        self.wake.notify_waiters();
    }

    /// Returns the writer pool and its script runner, for scripts that
    /// settle tasks together with other writes.
    pub(crate) fn script_writer(&self) -> (&SqlitePool, &Scripts) {
        (&self.writer, &self.scripts)
    }

    /// Makes every leased task visible again at its due time. Only safe when
    /// no other process can hold a lease, which
    /// [`crate::SqliteBackend::open_exclusive`] guarantees. Returns how many
    /// leases were released.
    pub(crate) async fn release_all_leases(&self) -> Result<u64, QueueError> {
        let released = sqlx::query(
            "UPDATE queue SET lease_token = NULL, visible_at = due_at WHERE lease_token IS NOT NULL",
        )
        .execute(&self.writer)
        .await
        .map_err(|error| QueueError::new("failed to release leases", error))?;
        Ok(released.rows_affected())
    }
}

#[async_trait]
impl DeliveryQueue for SqliteQueue {
    async fn enqueue(&self, tasks: Vec<DeliveryTask>) -> Result<(), QueueError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let rows: Vec<(&str, u32)> = tasks
            .iter()
            .map(|task| (task.delivery_id.as_str(), task.attempts_made))
            .collect();
        let rows = json_rows(&rows).map_err(queue_failure("encode tasks to enqueue"))?;
        let query = sqlx::query(ENQUEUE.as_str()).bind(rows).bind(now_millis());
        self.scripts
            .run(&self.writer, query)
            .await
            .map_err(queue_failure("enqueue tasks"))?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Leased>, QueueError> {
        self.receive_leased(max, visibility, wait).await
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), QueueError> {
        self.settle_leases(&settlements).await
    }

    async fn wake_application(&self, application: &ApplicationId) -> Result<u64, QueueError> {
        self.wake_tasks_of(application, i64::MAX).await
    }

    async fn wake_postponed(
        &self,
        application: &ApplicationId,
        until: OffsetDateTime,
    ) -> Result<u64, QueueError> {
        self.wake_tasks_of(application, to_millis(until)).await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let now = now_millis();
        let row = sqlx::query(DEPTH)
            .bind(now)
            .fetch_one(&self.reader)
            .await
            .map_err(queue_failure("read the queue depth"))?;
        let count = |column: &'static str| -> Result<u64, sqlx::Error> {
            let value: i64 = row.try_get(column)?;
            u64::try_from(value).map_err(|_| invalid(column, value.to_string()))
        };
        let depth = || -> Result<QueueDepth, sqlx::Error> {
            let oldest: Option<i64> = row.try_get("oldest_ready_due_at")?;
            Ok(QueueDepth {
                ready: count("ready")?,
                scheduled: count("scheduled")?,
                leased: count("leased")?,
                dead: count("dead")?,
                oldest_ready_age_secs: oldest.map(|due_at| (now - due_at).max(0) as f64 / 1000.0),
            })
        };
        depth().map_err(queue_failure("read the queue depth"))
    }
}
