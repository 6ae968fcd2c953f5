//! Writes attempt outcomes, usage and queue settlements in batches. With a
//! shared database they are one transaction. Otherwise the attempts,
//! delivery states and usage totals are one transaction and the queue
//! settlements come after it, so a crash in between repeats a delivery
//! (at-least-once) and never loses one.

use hookline_core::queue::{DeliveryQueue, Settlement};
use hookline_core::shared_database::SharedDatabase;
use hookline_core::store::{AttemptOutcome, Store};
use hookline_core::usage::{UsageBatch, UsageEvent};
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
    /// The notification to meter; `None` when nothing was sent or throttled.
    pub usage: Option<UsageEvent>,
}

/// Runs until every sender is dropped and the channel is drained.
pub async fn run(
    store: Arc<dyn Store>,
    queue: Arc<dyn DeliveryQueue>,
    shared: Option<Arc<dyn SharedDatabase>>,
    mut receiver: mpsc::Receiver<Finished>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut settlements = Vec::with_capacity(batch.len());
        let mut usage = Vec::with_capacity(batch.len());
        for finished in batch.drain(..) {
            outcomes.extend(finished.outcome);
            settlements.push(finished.settlement);
            usage.extend(finished.usage);
        }
        let usage = UsageBatch::from_events(&usage);
        match &shared {
            Some(shared) => write_shared(shared.as_ref(), &outcomes, &usage, &settlements).await,
            None => write(store.as_ref(), queue.as_ref(), outcomes, usage, settlements).await,
        }
    }
    tracing::debug!("Outcome recorder stopped");
}

/// Writes one batch in one transaction, retrying with backoff until it
/// succeeds.
async fn write_shared(
    shared: &dyn SharedDatabase,
    outcomes: &[AttemptOutcome],
    usage: &UsageBatch,
    settlements: &[Settlement],
) {
    let mut backoff = Duration::from_millis(50);
    while let Err(error) = shared.record_and_settle(outcomes, usage, settlements).await {
        tracing::warn!(%error, tasks = settlements.len(), retry_in = ?backoff, "Recording finished tasks failed");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Writes one batch, retrying with backoff until every write succeeds:
/// the attempts, delivery states and usage in one transaction, then the
/// queue settlements. Tasks whose lease expires meanwhile are delivered
/// again, which the at-least-once contract allows.
async fn write(
    store: &dyn Store,
    queue: &dyn DeliveryQueue,
    outcomes: Vec<AttemptOutcome>,
    usage: UsageBatch,
    settlements: Vec<Settlement>,
) {
    let mut backoff = Duration::from_millis(50);
    if !outcomes.is_empty() || !usage.is_empty() {
        while let Err(error) = store.record_finished(&outcomes, &usage).await {
            tracing::warn!(%error, attempts = outcomes.len(), hours = usage.hours.len(), retry_in = ?backoff, "Recording attempts and usage failed");
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
