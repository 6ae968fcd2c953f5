//! Group commit for HTTP ingest: concurrent requests are gathered into one
//! batch, so one transaction and one queue write serve many events.
//!
//! Several batches may be in flight at once. With one, a batch waits for
//! the previous one, which suits SQLite's single writer. PostgreSQL and
//! RabbitMQ spend most of a batch waiting on commits and publisher
//! confirms, so overlapping batches multiplies what one process accepts.

use crate::{Accepted, Creator, CreatorError, IncomingEvent, Rejected};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Largest number of events written in one batch.
const MAX_BATCH: usize = 512;

/// Why an ingest request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// A backend failed; the event was not accepted and may be sent again.
    #[error("event not accepted: {0}")]
    Unavailable(String),
}

type Reply = oneshot::Sender<Result<Accepted, IngestError>>;

/// Handle to the batching task; cheap to clone.
#[derive(Clone)]
pub struct IngestBatcher {
    sender: mpsc::Sender<(IncomingEvent, Reply)>,
}

impl IngestBatcher {
    /// Starts the batching task on the current runtime with one batch in
    /// flight at a time. It stops when every handle is dropped.
    pub fn spawn(creator: Arc<Creator>) -> Self {
        Self::spawn_overlapping(creator, 1)
    }

    /// Starts the batching task with up to `in_flight` batches (at least
    /// one) written at the same time. Deduplication stays exact because the
    /// store's unique key on (product, idempotency key) decides between
    /// concurrent batches.
    // NOTE: when one key arrives in two overlapping batches, the losing
    // batch can see the winner's tasks as not yet enqueued and enqueue them
    // again, so that delivery may be sent twice with one webhook-id.
    pub fn spawn_overlapping(creator: Arc<Creator>, in_flight: usize) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(creator, receiver, in_flight.max(1)));
        Self { sender }
    }

    /// Accepts one event; returns once it is durably enqueued or rejected.
    pub async fn submit(&self, event: IncomingEvent) -> Result<Accepted, IngestError> {
        let (reply, response) = oneshot::channel();
        self.sender
            .send((event, reply))
            .await
            .map_err(|_| IngestError::Unavailable("ingest is shutting down".into()))?;
        response
            .await
            .map_err(|_| IngestError::Unavailable("ingest is shutting down".into()))?
    }
}

async fn run(
    creator: Arc<Creator>,
    mut receiver: mpsc::Receiver<(IncomingEvent, Reply)>,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut pending = Vec::with_capacity(MAX_BATCH);
    loop {
        // Waiting for a slot first lets requests pile up into a larger batch.
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        if receiver.recv_many(&mut pending, MAX_BATCH).await == 0 {
            break;
        }
        let batch = std::mem::replace(&mut pending, Vec::with_capacity(MAX_BATCH));
        let creator = creator.clone();
        tokio::spawn(async move {
            write_batch(&creator, batch).await;
            drop(slot);
        });
    }
    // Waits for the batches still being written.
    let _ = slots.acquire_many(in_flight as u32).await;
    tracing::debug!("Ingest batcher stopped");
}

/// Writes one batch and replies to each of its requests.
async fn write_batch(creator: &Creator, batch: Vec<(IncomingEvent, Reply)>) {
    let (events, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    match creator.accept(events).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result.map_err(IngestError::from));
            }
        }
        Err(error) => {
            tracing::error!(%error, events = replies.len(), "Ingest batch failed");
            let message = unavailable_message(&error);
            for reply in replies {
                let _ = reply.send(Err(IngestError::Unavailable(message.clone())));
            }
        }
    }
}

fn unavailable_message(error: &CreatorError) -> String {
    format!("{error}; retry the request")
}
