//! Settling leased tasks: removing finished ones and rescheduling retries,
//! each only while the row still has the settling consumer's lease token.

use super::SqliteQueue;
use crate::codec::queue_failure;
use crate::store::bookkeeping::Bookkeeping;
use hookline_core::queue::{QueueError, Settlement};
use std::collections::HashSet;

impl SqliteQueue {
    /// Applies all settlements in one transaction. A settlement whose lease
    /// token no longer matches is skipped with a warning and is no error.
    pub(super) async fn settle_leases(&self, settlements: &[Settlement]) -> Result<(), QueueError> {
        if settlements.is_empty() {
            return Ok(());
        }
        let applied = Bookkeeping::default()
            .settlements(settlements)
            .map_err(queue_failure("encode settlements"))?
            .write(&self.writer, &self.scripts)
            .await
            .map_err(queue_failure("settle leased tasks"))?;
        self.settled(settlements, &applied);
        Ok(())
    }

    /// Warns about settlements that did not apply and wakes receivers when
    /// tasks were rescheduled.
    pub(crate) fn settled(&self, settlements: &[Settlement], applied: &HashSet<String>) {
        warn_stale(settlements, applied);
        if settlements
            .iter()
            .any(|settlement| matches!(settlement, Settlement::Retry { .. }))
        {
            self.wake.notify_waiters();
        }
    }
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
