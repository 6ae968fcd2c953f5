//! `InvalidationBus` and `SharedDirectory` between two clients, as two
//! replicas would use them.

mod common;

use async_trait::async_trait;
use hookline_core::directory::{Directory, DirectoryError, Endpoint};
use hookline_core::ApplicationId;
use hookline_redis::{InvalidationBus, SharedDirectory};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DELIVERY_LIMIT: Duration = Duration::from_secs(1);

/// Stands in for the store-backed directory and counts `invalidate` calls.
#[derive(Default)]
struct CountingDirectory {
    invalidations: AtomicUsize,
}

impl CountingDirectory {
    fn invalidations(&self) -> usize {
        self.invalidations.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Directory for CountingDirectory {
    async fn subscribers(&self, _product: &str) -> Result<Arc<[ApplicationId]>, DirectoryError> {
        Ok(Arc::from(Vec::new()))
    }

    async fn endpoint(
        &self,
        _application: &ApplicationId,
    ) -> Result<Option<Arc<Endpoint>>, DirectoryError> {
        Ok(None)
    }

    fn invalidate(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn publish_reaches_subscriber_on_other_client() {
    let prefix = common::random_prefix();
    let subscriber_bus = InvalidationBus::new(common::connect(&prefix).await);
    let publisher_bus = InvalidationBus::new(common::connect(&prefix).await);
    let calls = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let counter = calls.clone();
    let task = subscriber_bus.subscribe(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
        },
        shutdown.clone(),
    );

    // The first call marks the subscription as established.
    let subscribed =
        common::eventually(Duration::from_secs(5), || calls.load(Ordering::SeqCst) >= 1).await;
    assert!(subscribed, "no call after subscribing");
    let (published, elapsed) = common::timed(async {
        publisher_bus.publish().await.expect("publish");
        common::eventually(DELIVERY_LIMIT, || calls.load(Ordering::SeqCst) >= 2).await
    })
    .await;

    assert!(published, "message not delivered within {DELIVERY_LIMIT:?}");
    assert!(elapsed <= DELIVERY_LIMIT, "{elapsed:?}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("subscriber stops on shutdown")
        .expect("subscriber task does not panic");
    common::delete_keys(&prefix).await;
}

#[tokio::test]
async fn buses_with_other_prefixes_are_isolated() {
    let prefix = common::random_prefix();
    let other_prefix = common::random_prefix();
    let subscriber_bus = InvalidationBus::new(common::connect(&prefix).await);
    let other_bus = InvalidationBus::new(common::connect(&other_prefix).await);
    let calls = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let counter = calls.clone();
    let _task = subscriber_bus.subscribe(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
        },
        shutdown.clone(),
    );
    let subscribed =
        common::eventually(Duration::from_secs(5), || calls.load(Ordering::SeqCst) >= 1).await;
    assert!(subscribed, "no call after subscribing");

    other_bus.publish().await.expect("publish");
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "message crossed key prefixes"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn invalidate_clears_peer_cache_without_echo() {
    let prefix = common::random_prefix();
    let local_inner = Arc::new(CountingDirectory::default());
    let peer_inner = Arc::new(CountingDirectory::default());
    let local = SharedDirectory::new(
        local_inner.clone(),
        InvalidationBus::new(common::connect(&prefix).await),
    );
    let peer = SharedDirectory::new(
        peer_inner.clone(),
        InvalidationBus::new(common::connect(&prefix).await),
    );
    let shutdown = CancellationToken::new();
    let _local_task = local.subscribe(shutdown.clone());
    let _peer_task = peer.subscribe(shutdown.clone());
    let subscribed = common::eventually(Duration::from_secs(5), || {
        local_inner.invalidations() >= 1 && peer_inner.invalidations() >= 1
    })
    .await;
    assert!(subscribed, "no call after subscribing");

    local.invalidate();

    assert_eq!(
        local_inner.invalidations(),
        2,
        "local cache cleared at once"
    );
    let delivered = common::eventually(DELIVERY_LIMIT, || peer_inner.invalidations() >= 2).await;
    assert!(
        delivered,
        "peer cache not cleared within {DELIVERY_LIMIT:?}"
    );
    // The local replica also receives its own message once. A received
    // message must not publish again, so the counts then stay the same.
    let echoed = common::eventually(DELIVERY_LIMIT, || local_inner.invalidations() >= 3).await;
    assert!(echoed, "local replica did not receive its own message");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        local_inner.invalidations(),
        3,
        "messages loop between replicas"
    );
    assert_eq!(
        peer_inner.invalidations(),
        2,
        "messages loop between replicas"
    );
    shutdown.cancel();
    common::delete_keys(&prefix).await;
}
