//! Receiving: takes deliveries from the buffer that the consumer fills,
//! drops those of a closed connection (the broker requeued them), decodes
//! the rest and moves bodies that do not decode to the dead-letter queue.

use crate::consumer::Buffered;
use crate::lease;
use crate::message::{publish_confirmed, Outgoing};
use crate::queue::{first_error, AmqpQueue};
use crate::session::Session;
use hookline_core::queue::{DeliveryTask, Leased, QueueMessage};
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// Pause after a failed attempt to dead-letter an undecodable message, so
/// that a broken dead-letter queue does not turn its redelivery into a busy
/// loop.
const DEAD_LETTER_RETRY_PAUSE: Duration = Duration::from_secs(1);

impl AmqpQueue {
    /// Returns up to `max` leased tasks, waiting until `wait` has passed for
    /// the first one. Returns an empty list when none arrived in time or
    /// while the connection is being reopened.
    pub(crate) async fn receive_leased(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Leased>, hookline_core::queue::QueueError> {
        let mut leased = Vec::new();
        if max == 0 {
            return Ok(leased);
        }
        let deadline = Instant::now() + wait;
        let Ok(mut buffer) = timeout_at(deadline, self.buffer.lock()).await else {
            return Ok(leased);
        };
        while leased.len() < max {
            let next = if leased.is_empty() {
                match timeout_at(deadline, buffer.recv()).await {
                    Ok(Some(next)) => next,
                    Ok(None) | Err(_) => break,
                }
            } else {
                match buffer.try_recv() {
                    Ok(next) => next,
                    Err(_) => break,
                }
            };
            if let Some(lease) = self.accept(next).await {
                leased.push(lease);
            }
        }
        Ok(leased)
    }

    /// Turns a buffered delivery into a lease, or returns `None` when it
    /// belongs to a closed connection or does not decode.
    async fn accept(&self, buffered: Buffered) -> Option<Leased> {
        let session = self
            .shared
            .current_session()
            .filter(|session| session.generation == buffered.generation);
        let Some(session) = session else {
            tracing::debug!(
                generation = buffered.generation,
                delivery_tag = buffered.delivery_tag,
                "Dropped a buffered delivery of a closed connection; the broker requeued it"
            );
            return None;
        };
        match decode(&buffered.data) {
            Ok(task) => Some(Leased {
                task,
                lease: lease::encode(buffered.generation, buffered.delivery_tag),
            }),
            Err(error) => {
                let reason = format!("undecodable queue message: {error}");
                self.dead_letter_undecodable(&session, buffered, reason)
                    .await;
                None
            }
        }
    }

    /// Publishes the original body and properties to the dead-letter queue
    /// with `reason`, then acknowledges the delivery. When the publish fails,
    /// the delivery goes back to the main queue.
    async fn dead_letter_undecodable(&self, session: &Session, buffered: Buffered, reason: String) {
        let Some(acker) = session.leases.take(buffered.delivery_tag) else {
            return;
        };
        let message_id = buffered.properties.message_id().clone();
        let message = Outgoing {
            routing_key: self.shared.topology.dead_letter().to_owned(),
            body: buffered.data,
            properties: buffered.properties,
        }
        .with_reason(&reason);
        let timeout = self.shared.settings.confirm_timeout;
        let results = publish_confirmed(session.publisher(), &[message], timeout).await;
        match first_error(results, "dead-letter") {
            Ok(()) => {
                tracing::warn!(?message_id, %reason, "Moved an undecodable message to the dead-letter queue");
                if let Err(error) = acker.ack(BasicAckOptions::default()).await {
                    tracing::warn!(?message_id, %error, "Acknowledging a dead-lettered message failed; it will be delivered and dead-lettered again");
                }
            }
            Err(error) => {
                tracing::error!(?message_id, %reason, %error, "Dead-lettering an undecodable message failed; returning it to the queue");
                let requeue = BasicRejectOptions { requeue: true };
                if let Err(error) = acker.reject(requeue).await {
                    tracing::warn!(?message_id, %error, "Returning an undecodable message to the queue failed; the broker requeues it when the channel closes");
                }
                tokio::time::sleep(DEAD_LETTER_RETRY_PAUSE).await;
            }
        }
    }
}

fn decode(body: &[u8]) -> Result<DeliveryTask, serde_json::Error> {
    match serde_json::from_slice::<QueueMessage>(body)? {
        QueueMessage::V1(task) => Ok(task),
    }
}
