//! Settling: a retry or dead letter is published to its queue with a
//! confirm first and the original is acknowledged after, so a crash in
//! between leaves a duplicate, never a loss.

use crate::lease;
use crate::message::{publish_confirmed, Outgoing};
use crate::queue::{first_error, AmqpQueue, RECONNECT_WAIT};
use crate::session::Session;
use hookline_core::queue::{Leased, QueueError, Settlement};
use lapin::options::BasicAckOptions;
use lapin::Acker;
use std::time::Duration;
use time::OffsetDateTime;

/// A settlement whose lease was taken from the lease table.
struct Claimed {
    delivery_tag: u64,
    acker: Acker,
    delivery_id: String,
    /// Whether a message was published for it and must be confirmed first.
    publishes: bool,
}

impl AmqpQueue {
    /// Settles a batch: skips leases of a closed connection or already
    /// settled ones with a warning, publishes the retries and dead letters
    /// together, then acknowledges each delivery whose publish the broker
    /// confirmed. A delivery whose publish failed stays leased, so the
    /// caller can settle it again.
    pub(crate) async fn settle_leases(
        &self,
        settlements: Vec<Settlement>,
    ) -> Result<(), QueueError> {
        if settlements.is_empty() {
            return Ok(());
        }
        let session = self.shared.session(RECONNECT_WAIT).await?;
        let mut errors = Vec::new();
        let mut claimed = Vec::with_capacity(settlements.len());
        let mut messages = Vec::new();
        for settlement in &settlements {
            match self.claim(&session, settlement).await {
                Ok(Some((claim, message))) => {
                    messages.extend(message);
                    claimed.push(claim);
                }
                Ok(None) => {}
                Err(error) => errors.push(Err(error)),
            }
        }

        let timeout = self.shared.settings.confirm_timeout;
        let mut published = publish_confirmed(session.publisher(), &messages, timeout)
            .await
            .into_iter();
        for claim in claimed {
            if claim.publishes {
                if let Some(Err(error)) = published.next() {
                    session.leases.restore(claim.delivery_tag, claim.acker);
                    errors.push(Err(error));
                    continue;
                }
            }
            acknowledge(claim).await;
        }
        first_error(errors, "settle")
    }

    /// Checks the lease of `settlement`, prepares its message and takes its
    /// acker. Returns `None` for a lease that must be skipped.
    async fn claim(
        &self,
        session: &Session,
        settlement: &Settlement,
    ) -> Result<Option<(Claimed, Option<Outgoing>)>, QueueError> {
        let leased = leased_of(settlement);
        let delivery_id = leased.task.delivery_id.as_str();
        let (generation, delivery_tag) = lease::decode(leased.lease);
        if generation != session.generation {
            tracing::warn!(
                delivery_id,
                lease_generation = generation,
                current_generation = session.generation,
                "Skipped settling a delivery received on a closed connection; the broker requeued it and delivers it again"
            );
            return Ok(None);
        }
        let message = self.message_for(session, settlement).await?;
        let Some(acker) = session.leases.take(delivery_tag) else {
            tracing::warn!(
                delivery_id,
                delivery_tag,
                "Skipped settling a delivery that is not leased or already settled"
            );
            return Ok(None);
        };
        let claim = Claimed {
            delivery_tag,
            acker,
            delivery_id: delivery_id.to_owned(),
            publishes: message.is_some(),
        };
        Ok(Some((claim, message)))
    }

    /// Builds the message a retry or dead letter publishes; `None` for an ack.
    async fn message_for(
        &self,
        session: &Session,
        settlement: &Settlement,
    ) -> Result<Option<Outgoing>, QueueError> {
        let topology = &self.shared.topology;
        match settlement {
            Settlement::Ack { .. } => Ok(None),
            Settlement::Retry {
                lease,
                due_at,
                attempts_made,
            } => {
                let mut task = lease.task.clone();
                task.attempts_made = *attempts_made;
                let delay = Duration::try_from(*due_at - OffsetDateTime::now_utc())
                    .unwrap_or(Duration::ZERO);
                let routing_key = match topology.delay_bucket(delay) {
                    Some(delay_ms) => {
                        session.ensure_delay_queue(topology, delay_ms).await?;
                        topology.delay_queue(delay_ms)
                    }
                    None => topology.main().to_owned(),
                };
                Outgoing::task(&task, &routing_key).map(Some)
            }
            Settlement::DeadLetter { lease, reason } => {
                let message = Outgoing::task(&lease.task, topology.dead_letter())?;
                Ok(Some(message.with_reason(reason)))
            }
        }
    }
}

/// Acknowledges a claimed delivery. A failure is logged, not returned: the
/// lease is spent, and the broker requeues the delivery when the channel
/// closes, so settling again cannot help.
async fn acknowledge(claim: Claimed) {
    let delivery_id = claim.delivery_id;
    match claim.acker.ack(BasicAckOptions::default()).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            %delivery_id,
            "Could not acknowledge a delivery because its channel closed; the broker delivers it again"
        ),
        Err(error) => tracing::warn!(
            %delivery_id,
            %error,
            "Acknowledging a delivery failed; the broker delivers it again"
        ),
    }
}

fn leased_of(settlement: &Settlement) -> &Leased {
    match settlement {
        Settlement::Ack { lease }
        | Settlement::Retry { lease, .. }
        | Settlement::DeadLetter { lease, .. } => lease,
    }
}
