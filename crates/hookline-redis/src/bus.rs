//! "Applications changed" notifications between replicas over Redis
//! pub/sub. Pub/sub keeps no history, so a subscriber also treats every
//! (re)subscribe as a change.

use crate::client::{RedisClient, RedisError};
use futures::StreamExt;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Channel name, after the client's key prefix.
const CHANNEL: &str = "applications-changed";
/// Delay before the first resubscribe. It doubles after each failure in a row.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);

/// Publishes and receives "applications changed" notifications on the
/// channel `<prefix>applications-changed`. Cheap to clone.
#[derive(Clone)]
pub struct InvalidationBus {
    client: RedisClient,
    channel: Arc<str>,
}

impl InvalidationBus {
    pub fn new(client: RedisClient) -> Self {
        let channel = client.prefixed(CHANNEL).into();
        Self { client, channel }
    }

    /// Returns the full channel name, prefix included.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Publishes an "applications changed" message to every subscribed replica.
    pub async fn publish(&self) -> Result<(), RedisError> {
        // The payload carries no meaning. It is non-empty because
        // Infinispan's RESP endpoint (class `SubscriberHandler`, in the
        // source revision checked) forwards only non-empty payloads.
        let payload = format!("{:016x}", rand::random::<u64>());
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&*self.channel).arg(payload);
        let mut connection = self.client.connection();
        let request = publish.query_async::<()>(&mut connection);
        self.client.bounded("PUBLISH", request).await
    }

    /// Spawns a task that subscribes and calls `on_message` for every
    /// message, reconnecting with backoff (logging each reconnect), and also
    /// calls it once after each (re)subscribe, because messages sent while
    /// disconnected are lost. The task ends when `shutdown` is cancelled.
    ///
    /// # Panics
    ///
    /// Panics when called outside a Tokio runtime.
    pub fn subscribe(
        &self,
        on_message: impl Fn() + Send + Sync + 'static,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move { bus.run_subscriber(on_message, shutdown).await })
    }

    async fn run_subscriber(
        self,
        on_message: impl Fn() + Send + Sync,
        shutdown: CancellationToken,
    ) {
        let mut failures: u32 = 0;
        loop {
            let error = tokio::select! {
                () = shutdown.cancelled() => break,
                error = self.listen(&on_message, &mut failures) => error,
            };
            failures = failures.saturating_add(1);
            let delay = reconnect_delay(failures);
            tracing::warn!(
                %error,
                channel = %self.channel,
                failures,
                retry_in = ?delay,
                "Directory invalidation subscription failed; resubscribing"
            );
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!(channel = %self.channel, "Stopped directory invalidation subscription");
    }

    /// Subscribes and delivers messages until the connection fails, then
    /// returns the error. Resets `failures` once subscribed.
    // NOTE: a connection that goes silent without closing (a half-open TCP
    // connection) is not detected, because Infinispan's handling of PING on a
    // subscribed connection is unverified. Until the socket errors, peers'
    // caches fall back to their own expiry.
    async fn listen(
        &self,
        on_message: &(impl Fn() + Send + Sync),
        failures: &mut u32,
    ) -> RedisError {
        let mut pubsub = match self.client.open_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => return error,
        };
        let request = pubsub.subscribe(&*self.channel);
        if let Err(error) = self.client.bounded("SUBSCRIBE", request).await {
            return error;
        }
        tracing::info!(
            channel = %self.channel,
            failures_before = *failures,
            "Subscribed to directory invalidations"
        );
        *failures = 0;
        on_message();
        let mut messages = pubsub.into_on_message();
        while messages.next().await.is_some() {
            on_message();
        }
        RedisError::SubscriptionClosed
    }
}

/// Computes an exponential backoff capped at [`MAX_RECONNECT_DELAY`], times a
/// random factor between 0.5 and 1 so that replicas do not reconnect in lockstep.
fn reconnect_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let ceiling = MIN_RECONNECT_DELAY
        .saturating_mul(1 << exponent)
        .min(MAX_RECONNECT_DELAY);
    rand::thread_rng().gen_range(ceiling / 2..=ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_grows_and_caps() {
        let first = reconnect_delay(1);
        assert!(first >= MIN_RECONNECT_DELAY / 2, "{first:?}");
        assert!(first <= MIN_RECONNECT_DELAY, "{first:?}");
        let fourth = reconnect_delay(4);
        assert!(fourth >= MIN_RECONNECT_DELAY * 4, "{fourth:?}");
        let capped = reconnect_delay(u32::MAX);
        assert!(capped <= MAX_RECONNECT_DELAY, "{capped:?}");
        assert!(capped >= MAX_RECONNECT_DELAY / 2, "{capped:?}");
    }
}
