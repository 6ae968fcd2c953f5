//! Opens the backends named by the configuration: SQLite for the embedded
//! mode, or PostgreSQL, RabbitMQ and Redis for the distributed mode.

use crate::config::Config;
use anyhow::Context;
use hookline_api::ReadinessProbe;
use hookline_core::dedup::{Deduplicator, StoreOnly};
use hookline_core::directory::Directory;
use hookline_core::limit::{LocalRateLimiter, RateLimiter};
use hookline_core::portal::{PortalStore, SignInLimiter};
use hookline_core::queue::DeliveryQueue;
use hookline_core::shared_database::SharedDatabase;
use hookline_core::store::Store;
use hookline_sqlite::SqliteBackend;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long cached applications are used before a re-read.
pub const DIRECTORY_TTL: Duration = Duration::from_secs(5);

/// Background work a backend needs, started with the other components.
pub type BackgroundTask = Box<dyn FnOnce(&mut JoinSet<()>, CancellationToken) + Send>;

/// The opened backends, shared by all components of one process.
pub struct Backends {
    pub store: Arc<dyn Store>,
    /// Portal accounts and sessions, application owners and secret rotation,
    /// in the same database as `store`.
    pub portal: Arc<dyn PortalStore>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub directory: Arc<dyn Directory>,
    pub dedup: Arc<dyn Deduplicator>,
    /// Counts notifications against each application's plan limit.
    pub limiter: Arc<dyn RateLimiter>,
    /// Counts portal password checks per email across replicas; `None`
    /// counts them in each process.
    pub sign_in_limiter: Option<Arc<dyn SignInLimiter>>,
    /// Backends besides store and queue that `/readyz` checks.
    pub probes: Vec<Arc<dyn ReadinessProbe>>,
    /// Deletes old delivery history; `None` where retention is not supported.
    pub history: Option<Arc<dyn HistoryPurge>>,
    /// Background work of the backends themselves, such as cache invalidation.
    pub background: Vec<BackgroundTask>,
    /// Writes spanning `store` and `queue` in one transaction, where both
    /// live in one database.
    pub shared: Option<Arc<dyn SharedDatabase>>,
    /// Keeps the embedded database (and its directory lock) open.
    _sqlite: Option<SqliteBackend>,
}

/// Deletion of delivery history older than a cut-off, in batches.
#[async_trait::async_trait]
pub trait HistoryPurge: Send + Sync + 'static {
    async fn purge(&self, older_than: time::OffsetDateTime) -> anyhow::Result<u64>;
}

/// Returns whether the configuration names the distributed backends.
pub fn is_distributed(config: &Config) -> bool {
    config.storage.url.is_some()
}

/// Opens the backends named by the configuration; `dispatches` tells whether
/// this process takes deliveries from the queue.
pub async fn open(config: &Config, dispatches: bool) -> anyhow::Result<Backends> {
    if is_distributed(config) {
        return crate::distributed::open(config, dispatches).await;
    }
    open_embedded(config).await
}

async fn open_embedded(config: &Config) -> anyhow::Result<Backends> {
    let data_dir = &config.storage.data_dir;
    let keys = config.secrets.cipher()?;
    let backend = SqliteBackend::open_exclusive_with_keys(data_dir, keys)
        .await
        .with_context(|| {
            format!(
                "cannot open the state store in storage.data_dir {}",
                data_dir.display()
            )
        })?;
    let store: Arc<dyn Store> = backend.store();
    let portal: Arc<dyn PortalStore> = backend.store();
    let queue: Arc<dyn DeliveryQueue> = backend.queue();
    let shared: Arc<dyn SharedDatabase> = backend.shared();
    let directory = crate::directories::open(config, store.clone(), portal.clone())?;
    Ok(Backends {
        store,
        portal,
        queue,
        directory,
        dedup: Arc::new(StoreOnly),
        limiter: Arc::new(LocalRateLimiter::new()),
        sign_in_limiter: None,
        probes: Vec::new(),
        history: None,
        background: Vec::new(),
        shared: Some(shared),
        _sqlite: Some(backend),
    })
}

impl Backends {
    /// Assembles distributed backends, with a rate limiter that counts in
    /// this process until the caller replaces it.
    pub fn distributed(
        store: Arc<dyn Store>,
        portal: Arc<dyn PortalStore>,
        queue: Arc<dyn DeliveryQueue>,
        directory: Arc<dyn Directory>,
        dedup: Arc<dyn Deduplicator>,
    ) -> Self {
        Self {
            store,
            portal,
            queue,
            directory,
            dedup,
            limiter: Arc::new(LocalRateLimiter::new()),
            sign_in_limiter: None,
            probes: Vec::new(),
            history: None,
            background: Vec::new(),
            shared: None,
            _sqlite: None,
        }
    }
}
