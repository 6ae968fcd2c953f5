//! Writes attempt outcomes and queue settlements in batches: first the
//! attempts and delivery states, then the queue settlements, so a crash in
//! between repeats a delivery (at-least-once) and never loses one.

use hookline_core::queue::{DeliveryQueue, Settlement};
use hookline_core::store::{AttemptOutcome, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const MAX_BATCH: usize = 1024;

/// One finished unit of dispatcher work.
#[derive(Debug)]
pub struct Finished {
    /// `None` when no attempt was made (the endpoint was busy, say).
    pub outcome: Option<AttemptOutcome>,
    pub settlement: Settlement,
}

/// Runs until every sender is dropped and the channel is drained.
pub async fn run(
    store: Arc<dyn Store>,
    queue: Arc<dyn DeliveryQueue>,
    mut receiver: mpsc::Receiver<Finished>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut settlements = Vec::with_capacity(batch.len());
        for finished in batch.drain(..) {
            outcomes.extend(finished.outcome);
            settlements.push(finished.settlement);
        }
        write(store.as_ref(), queue.as_ref(), outcomes, settlements).await;
    }
    tracing::debug!("Outcome recorder stopped");
}

/// Writes one batch, retrying with backoff until both writes succeed. Tasks
/// whose lease expires meanwhile are delivered again, which the
/// at-least-once contract allows.
async fn write(
    store: &dyn Store,
    queue: &dyn DeliveryQueue,
    outcomes: Vec<AttemptOutcome>,
    settlements: Vec<Settlement>,
) {
    let mut backoff = Duration::from_millis(50);
    if !outcomes.is_empty() {
        while let Err(error) = store.record_outcomes(&outcomes).await {
            tracing::warn!(%error, attempts = outcomes.len(), retry_in = ?backoff, "Recording attempts failed");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    while let Err(error) = queue.settle(settlements.clone()).await {
        tracing::warn!(%error, tasks = settlements.len(), retry_in = ?backoff, "Settling tasks failed");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
