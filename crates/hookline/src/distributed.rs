//! The distributed backends: PostgreSQL for state, RabbitMQ for the
//! delivery queue, and Redis (optional) for idempotency keys and cache
//! invalidation shared by all processes.

use crate::backends::{Backends, HistoryPurge};
use crate::config::{Config, OnRedisFailure};
use anyhow::Context;
use async_trait::async_trait;
use hookline_api::ReadinessProbe;
use hookline_core::dedup::{Deduplicator, StoreOnly};
use hookline_core::directory::Directory;
use hookline_core::portal::PortalStore;
use hookline_core::queue::DeliveryQueue;
use hookline_core::store::Store;
use hookline_postgres::PgBackend;
use hookline_rabbitmq::{AmqpQueue, AmqpSettings};
use hookline_redis::{
    InvalidationBus, RedisClient, RedisDeduplicator, RedisRateLimiter, RedisSettings,
    RedisSignInLimiter, SharedDirectory,
};
use std::sync::Arc;
use std::time::Duration;

/// Rows deleted per transaction by the retention job.
const PURGE_BATCH: u32 = 1000;

/// Opens PostgreSQL, RabbitMQ and, when configured, Redis. Only a process
/// that dispatches (`consume`) takes deliveries from the queue.
pub async fn open(config: &Config, consume: bool) -> anyhow::Result<Backends> {
    let keys = crate::secrets::required_keys(config)?;
    let pg = connect_postgres(config).await?.with_secret_keys(keys);
    if config.storage.migrate_on_start {
        pg.migrate()
            .await
            .context("cannot apply database migrations")?;
    }
    pg.store()
        .verify_secret_key()
        .await
        .context("cannot read the stored signing secrets with secrets.keys")?;
    let store: Arc<dyn Store> = pg.store();
    let portal: Arc<dyn PortalStore> = pg.store();
    let queue: Arc<dyn DeliveryQueue> = connect_queue(config, consume).await?;
    let local = crate::directories::open(config, store.clone(), portal.clone())?;

    let mut backends = match &config.redis.url {
        Some(url) => with_redis(config, url, store, portal, queue, local).await?,
        None => {
            tracing::warn!("redis.url is not set: idempotency keys are checked by PostgreSQL alone and cached applications refresh only after their TTL");
            Backends::distributed(store, portal, queue, local, Arc::new(StoreOnly))
        }
    };
    backends.history = Some(Arc::new(PgHistory(pg)));
    if consume && !(config.redis.url.is_some() && config.limits.use_redis) {
        warn_limits_per_process();
    }
    Ok(backends)
}

/// Applies the PostgreSQL migrations (`hookline migrate`).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    if config.storage.url.is_none() {
        anyhow::bail!("hookline migrate needs storage.url (PostgreSQL); the embedded SQLite store migrates itself when it opens");
    }
    let pg = connect_postgres(config).await?;
    pg.migrate()
        .await
        .context("cannot apply database migrations")?;
    tracing::info!("Database migrations applied");
    Ok(())
}

async fn connect_postgres(config: &Config) -> anyhow::Result<PgBackend> {
    let url = config.storage.url.as_deref().unwrap_or_default();
    PgBackend::connect(
        url,
        config.storage.schema.as_deref(),
        config.storage.max_connections,
    )
    .await
    .context("cannot connect to PostgreSQL at storage.url")
}

async fn connect_queue(config: &Config, consume: bool) -> anyhow::Result<Arc<dyn DeliveryQueue>> {
    let settings = AmqpSettings {
        url: config.queue.url.clone().unwrap_or_default(),
        queue_name: config.queue.name.clone(),
        prefetch: u16::try_from(config.delivery.concurrency).unwrap_or(u16::MAX),
        retry: config.retry,
        confirm_timeout: Duration::from_secs(10),
        reconnect_max_backoff: Duration::from_secs(10),
        consume,
    };
    let queue = AmqpQueue::connect(settings)
        .await
        .context("cannot connect to RabbitMQ at queue.url")?;
    Ok(queue)
}

async fn with_redis(
    config: &Config,
    url: &str,
    store: Arc<dyn Store>,
    portal: Arc<dyn PortalStore>,
    queue: Arc<dyn DeliveryQueue>,
    local: Arc<dyn Directory>,
) -> anyhow::Result<Backends> {
    let settings = RedisSettings {
        url: url.to_owned(),
        key_prefix: config.redis.key_prefix.clone(),
        command_timeout: config.redis.command_timeout,
    };
    // A lazy client lets a replica start while Redis is down; deduplication
    // then degrades as dedup.on_redis_failure sets until Redis is back.
    let client = RedisClient::connect_lazy(settings).context("invalid redis.url")?;
    let dedup: Arc<dyn Deduplicator> = Arc::new(RedisDeduplicator::new(client.clone()));
    let shared = SharedDirectory::new(local, InvalidationBus::new(client.clone()));
    let directory: Arc<dyn Directory> = shared.clone();

    let mut backends = Backends::distributed(store, portal, queue, directory, dedup);
    if config.limits.use_redis {
        backends.limiter = Arc::new(RedisRateLimiter::new(client.clone()));
    }
    backends.sign_in_limiter = Some(Arc::new(RedisSignInLimiter::new(client.clone())));
    backends.background.push(Box::new(move |tasks, shutdown| {
        let handle = shared.subscribe(shutdown);
        tasks.spawn(async move {
            let _ = handle.await;
        });
    }));
    if config.dedup.on_redis_failure == OnRedisFailure::FailClosed {
        backends.probes.push(Arc::new(RedisProbe(client)));
    }
    Ok(backends)
}

/// Warns that plan limits hold per dispatcher process, so N dispatchers may
/// together send up to N times an application's limit.
fn warn_limits_per_process() {
    tracing::warn!(
        "Rate limits are counted in each process: every dispatcher allows a plan's full limit on its own, so several dispatchers together can exceed it; set redis.url (and limits.use_redis = true) to share the count"
    );
}

struct RedisProbe(RedisClient);

#[async_trait]
impl ReadinessProbe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|error| error.to_string())
    }
}

struct PgHistory(PgBackend);

#[async_trait]
impl HistoryPurge for PgHistory {
    async fn purge(&self, older_than: time::OffsetDateTime) -> anyhow::Result<u64> {
        Ok(self.0.purge_history(older_than, PURGE_BATCH).await?)
    }
}
