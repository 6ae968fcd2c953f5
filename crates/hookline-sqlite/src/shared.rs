//! [`SharedDatabase`] on SQLite: the store and the queue live in one file
//! and share the writer connection, so their writes can be one script.

use crate::codec::{queue_failure, store_failure};
use crate::store::bookkeeping::Bookkeeping;
use crate::{SqliteQueue, SqliteStore};
use async_trait::async_trait;
use hookline_core::queue::{QueueError, Settlement};
use hookline_core::shared_database::SharedDatabase;
use hookline_core::store::{AttemptOutcome, InsertOutcome, NewEvent, StoreError};
use hookline_core::usage::UsageBatch;
use std::sync::Arc;

/// The store and the queue of one [`crate::SqliteBackend`].
pub struct SqliteShared {
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) queue: Arc<SqliteQueue>,
}

#[async_trait]
impl SharedDatabase for SqliteShared {
    async fn insert_and_enqueue(
        &self,
        batch: &[NewEvent],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        let tasks = batch
            .iter()
            .map(|new_event| new_event.deliveries.len())
            .sum();
        let lease = self.queue.handoff_lease(tasks);
        let outcomes = self
            .store
            .insert_event_batch(batch, true, lease.as_ref())
            .await
            .map_err(store_failure("insert and enqueue events"))?;
        match lease {
            Some(lease) => {
                let inserted = batch
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, outcome)| **outcome == InsertOutcome::Inserted)
                    .flat_map(|(new_event, _)| new_event.tasks());
                self.queue.hand_off(lease, inserted);
            }
            None if outcomes.contains(&InsertOutcome::Inserted) => self.queue.tasks_added(),
            None => {}
        }
        Ok(outcomes)
    }

    async fn record_and_settle(
        &self,
        outcomes: &[AttemptOutcome],
        usage: &UsageBatch,
        settlements: &[Settlement],
    ) -> Result<(), QueueError> {
        let (writer, scripts) = self.queue.script_writer();
        let applied = Bookkeeping::default()
            .outcomes(outcomes)
            .and_then(|parts| parts.usage(usage))
            .and_then(|parts| parts.settlements(settlements))
            .map_err(queue_failure("encode finished work"))?
            .write(writer, scripts)
            .await
            .map_err(queue_failure("record attempts and settle tasks"))?;
        self.queue.settled(settlements, &applied);
        Ok(())
    }
}
