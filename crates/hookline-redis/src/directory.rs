//! A subscription directory whose invalidations reach every replica.

use crate::bus::InvalidationBus;
use async_trait::async_trait;
use hookline_core::directory::{Directory, DirectoryError, Endpoint};
use hookline_core::{ApplicationId, AvroFormat};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Wraps any [`Directory`]: publishes on [`Directory::invalidate`], and
/// clears the wrapped directory's cache on every bus message once
/// [`SharedDirectory::subscribe`] (or [`InvalidationBus::subscribe`]) runs.
pub struct SharedDirectory {
    inner: Arc<dyn Directory>,
    bus: InvalidationBus,
}

impl SharedDirectory {
    pub fn new(inner: Arc<dyn Directory>, bus: InvalidationBus) -> Arc<Self> {
        Arc::new(Self { inner, bus })
    }

    /// Starts the subscription that clears the wrapped directory's cache.
    /// It calls the wrapped directory's `invalidate`, not this one's, so a
    /// received message never causes another publish.
    ///
    /// # Panics
    ///
    /// Panics when called outside a Tokio runtime.
    pub fn subscribe(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let inner = self.inner.clone();
        self.bus.subscribe(move || inner.invalidate(), shutdown)
    }
}

#[async_trait]
impl Directory for SharedDirectory {
    async fn subscribers(&self, product: &str) -> Result<Arc<[ApplicationId]>, DirectoryError> {
        self.inner.subscribers(product).await
    }

    async fn endpoint(
        &self,
        application: &ApplicationId,
    ) -> Result<Option<Arc<Endpoint>>, DirectoryError> {
        self.inner.endpoint(application).await
    }

    async fn avro_format(&self, application: &ApplicationId) -> Result<AvroFormat, DirectoryError> {
        self.inner.avro_format(application).await
    }

    /// Clears the local cache at once and publishes in a spawned task, so
    /// the caller does not wait for Redis. A failed publish is logged, and
    /// peers then serve cached entries until their own cache drops them
    /// (for `StoreDirectory`, after its TTL).
    fn invalidate(&self) {
        self.inner.invalidate();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                channel = self.bus.channel(),
                "No Tokio runtime to publish the directory invalidation; peers keep cached entries until they expire"
            );
            return;
        };
        let bus = self.bus.clone();
        runtime.spawn(async move {
            if let Err(error) = bus.publish().await {
                tracing::warn!(
                    %error,
                    channel = bus.channel(),
                    "Publishing directory invalidation failed; peers keep cached entries until they expire"
                );
            }
        });
    }
}
