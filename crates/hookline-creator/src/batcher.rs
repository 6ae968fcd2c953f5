//! Group commit for HTTP ingest: concurrent requests are gathered into one
//! batch, so one transaction and one queue write serve many events.

use crate::{Accepted, Creator, CreatorError, IncomingEvent, Rejected};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

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
    /// Starts the batching task on the current runtime. It stops when every
    /// handle is dropped.
    pub fn spawn(creator: Arc<Creator>) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(creator, receiver));
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

async fn run(creator: Arc<Creator>, mut receiver: mpsc::Receiver<(IncomingEvent, Reply)>) {
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<_>, Vec<_>) = pending.drain(..).unzip();
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
    tracing::debug!("Ingest batcher stopped");
}

fn unavailable_message(error: &CreatorError) -> String {
    format!("{error}; retry the request")
}
