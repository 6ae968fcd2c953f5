//! The consumer side of a session: the task that moves deliveries from the
//! lapin consumer into the receive buffer, the table of unsettled ackers and
//! the record of the first failure.

use crate::lease::MAX_DELIVERY_TAG;
use futures::StreamExt;
use lapin::{Acker, BasicProperties, Consumer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A delivery waiting in the receive buffer. Its acker stays in the
/// session's lease table under `delivery_tag`.
#[derive(Debug)]
pub(crate) struct Buffered {
    pub(crate) generation: u16,
    pub(crate) delivery_tag: u64,
    pub(crate) data: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

/// Ackers of the deliveries received on the consuming channel and not yet
/// settled, by delivery tag. Taking an acker out before using it is what
/// keeps a delivery from being acknowledged twice.
#[derive(Debug, Default)]
pub(crate) struct Leases(Mutex<HashMap<u64, Acker>>);

impl Leases {
    fn insert(&self, delivery_tag: u64, acker: Acker) {
        self.lock().insert(delivery_tag, acker);
    }

    pub(crate) fn take(&self, delivery_tag: u64) -> Option<Acker> {
        self.lock().remove(&delivery_tag)
    }

    /// Puts back an acker taken by [`Leases::take`] whose settlement failed.
    pub(crate) fn restore(&self, delivery_tag: u64, acker: Acker) {
        self.insert(delivery_tag, acker);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Acker>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The first failure seen by the consumer task.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failed: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn fail(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(reason);
        self.failed.cancel();
    }

    /// Waits until [`Health::fail`] was called.
    pub(crate) async fn failed(&self) {
        self.failed.cancelled().await;
    }

    pub(crate) fn reason(&self) -> String {
        let slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        slot.clone().unwrap_or_else(|| "unknown failure".into())
    }
}

/// Moves deliveries from the consumer into the receive buffer until the
/// consumer fails or is cancelled.
pub(crate) async fn pump(
    mut consumer: Consumer,
    generation: u16,
    leases: Arc<Leases>,
    buffer: mpsc::UnboundedSender<Buffered>,
    health: Arc<Health>,
) {
    let reason = loop {
        let delivery = match consumer.next().await {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => break format!("the consumer failed: {error}"),
            None => break "the broker cancelled the consumer".to_owned(),
        };
        if delivery.delivery_tag > MAX_DELIVERY_TAG {
            break "delivery tags outgrew the lease range; the channel must be reopened".to_owned();
        }
        leases.insert(delivery.delivery_tag, delivery.acker.clone());
        let buffered = Buffered {
            generation,
            delivery_tag: delivery.delivery_tag,
            data: delivery.data,
            properties: delivery.properties,
        };
        if buffer.send(buffered).is_err() {
            break "the receive buffer was dropped".to_owned();
        }
    };
    health.fail(reason);
}
