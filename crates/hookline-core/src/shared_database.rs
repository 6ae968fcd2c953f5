//! Writes that span the state store and the delivery queue, for a backend
//! that keeps both in one database and can make them one transaction.
//!
//! The embedded SQLite backend is one. The creator and the dispatcher's
//! outcome recorder use it when it is given, and otherwise write to the
//! store and the queue in turn.

use crate::queue::{QueueError, Settlement};
use crate::store::{AttemptOutcome, InsertOutcome, NewEvent, StoreError};
use crate::usage::UsageBatch;
use async_trait::async_trait;

#[async_trait]
pub trait SharedDatabase: Send + Sync {
    /// Inserts like [`crate::store::Store::insert_events`] and, in the same
    /// transaction, enqueues the tasks of every event whose outcome is
    /// [`InsertOutcome::Inserted`] and marks it enqueued. Duplicates are
    /// left as `insert_events` leaves them.
    async fn insert_and_enqueue(
        &self,
        batch: &[NewEvent],
    ) -> Result<Vec<InsertOutcome>, StoreError>;

    /// Records attempts like [`crate::store::Store::record_outcomes`], adds
    /// usage like [`crate::store::Store::record_usage`] and settles tasks
    /// like [`crate::queue::DeliveryQueue::settle`], in one transaction.
    async fn record_and_settle(
        &self,
        outcomes: &[AttemptOutcome],
        usage: &UsageBatch,
        settlements: &[Settlement],
    ) -> Result<(), QueueError>;
}
