//! Starts the components of one Hookline process. `hookline serve` runs all
//! of them; `creator`, `dispatcher` and `api` run one part each against the
//! distributed backends.

use crate::backends::{self, Backends};
use crate::config::{Config, OnRedisFailure};
use anyhow::{bail, Context};
use hookline_api::{ApiState, OpsState};
use hookline_core::portal::PortalStore;
use hookline_core::webhook_url::AddressPolicy;
use hookline_creator::{Creator, CreatorSettings, DedupFailure, IngestBatcher, SchemaRegistry};
use hookline_delivery::{
    build_client, ClientSettings, Dispatcher, DispatcherSettings, SharedRetryPolicy,
};
use hookline_kafka::{KafkaSettings, KafkaSource};
use rand::RngCore;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Events stored longer ago than this without confirmed enqueueing are
/// enqueued again by the recovery sweep.
const RECOVERY_AGE: Duration = Duration::from_secs(30);

/// The part a process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process (`hookline serve`).
    All,
    /// Kafka consumption, recovery and housekeeping (`hookline creator`).
    Creator,
    /// Delivery (`hookline dispatcher`).
    Dispatcher,
    /// Admin and ingest API (`hookline api`).
    Api,
    /// The egress gateway (`hookline gateway`), in either mode.
    Gateway,
}

impl Role {
    /// Returns the subcommand that runs this role.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "serve",
            Self::Creator => "creator",
            Self::Dispatcher => "dispatcher",
            Self::Api => "api",
            Self::Gateway => "gateway",
        }
    }

    fn consumes_kafka(self) -> bool {
        matches!(self, Self::All | Self::Creator)
    }

    fn dispatches(self) -> bool {
        matches!(self, Self::All | Self::Dispatcher)
    }

    fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }

    fn keeps_house(self) -> bool {
        matches!(self, Self::All | Self::Creator)
    }
}

/// A started process.
pub struct Running {
    /// Address of the HTTP listener (useful when the port was 0).
    pub api_address: SocketAddr,
    pub admin_token: String,
    /// The dispatcher's retry policy, which a configuration reload replaces.
    pub retry_policy: SharedRetryPolicy,
    grace: Duration,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops taking work and waits for in-flight work within the grace
    /// period. Whatever still runs after that is aborted, and the queue
    /// delivers its leased or unacknowledged tasks again later.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let deadline = self.grace + Duration::from_secs(5);
        let joined = tokio::time::timeout(deadline, async {
            while let Some(result) = self.tasks.join_next().await {
                if let Err(error) = result {
                    tracing::error!(%error, "A component ended abnormally");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::warn!(
                ?deadline,
                "Components still running after the grace period; aborting them"
            );
            self.tasks.abort_all();
        }
        tracing::info!("Hookline stopped");
    }
}

/// Opens the backends, starts the components of `role`, and returns once
/// the HTTP listener is bound.
pub async fn start(config: Config, role: Role) -> anyhow::Result<Running> {
    if role == Role::Gateway {
        return start_gateway(config).await;
    }
    if role != Role::All && !backends::is_distributed(&config) {
        bail!(
            "hookline {} runs against the distributed backends; set storage.url and queue.url, or run `hookline serve` for the embedded mode",
            role.name()
        );
    }
    let started = std::time::Instant::now();
    let backends = backends::open(&config, role.dispatches()).await?;
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let admin_token = admin_token(&config)?;
    let creator = Arc::new(build_creator(&config, &backends)?);
    let retry_policy = SharedRetryPolicy::new(config.retry);
    let Backends {
        store,
        portal,
        queue,
        directory,
        limiter,
        sign_in_limiter,
        probes,
        history,
        background,
        shared,
        ..
    } = backends;
    for spawn in background {
        spawn(&mut tasks, shutdown.clone());
    }

    if role.keeps_house() {
        let recovered = creator
            .recover(OffsetDateTime::now_utc())
            .await
            .context("cannot enqueue stored events at startup")?;
        if recovered > 0 {
            tracing::info!(
                tasks = recovered,
                "Enqueued tasks of events whose enqueueing a stop interrupted"
            );
        }
        let housekeeping = Housekeeping {
            creator: creator.clone(),
            portal: portal.clone(),
            history,
            config: config.clone(),
        };
        tasks.spawn(housekeeping.run(shutdown.clone()));
    }
    if role.dispatches() {
        let policy = address_policy(&config);
        let dispatcher = build_dispatcher(
            &config,
            &policy,
            store.clone(),
            queue.clone(),
            directory.clone(),
            limiter,
            retry_policy.clone(),
        )?;
        dispatcher.set_avro_json_converter(creator.clone());
        if let Some(shared) = shared {
            dispatcher.set_shared_database(shared);
        }
        tasks.spawn(dispatcher.run(shutdown.clone()));
    }
    if role.consumes_kafka() && !config.kafka.brokers.trim().is_empty() {
        spawn_kafka(&config, creator.clone(), &mut tasks, shutdown.clone())?;
    }
    tasks.spawn(crate::metrics::sample_queue(
        queue.clone(),
        shutdown.clone(),
    ));

    let ops = OpsState {
        store: store.clone(),
        queue: queue.clone(),
        probes,
        metrics: crate::metrics::renderer(),
    };
    let portal_router = (role.serves_api() && config.portal.enabled).then(|| {
        let backends = hookline_portal::PortalBackends {
            store: store.clone(),
            portal: portal.clone(),
            queue: queue.clone(),
            directory: directory.clone(),
            sign_in_limiter: sign_in_limiter.clone(),
        };
        hookline_portal::router(backends, portal_settings(&config))
    });
    let router = if role.serves_api() {
        hookline_api::router(ApiState {
            store,
            portal,
            queue,
            directory,
            ingest: IngestBatcher::spawn_overlapping(
                creator.clone(),
                config.ingest.batches_in_flight(),
            ),
            creator,
            address_policy: address_policy(&config),
            admin_token: admin_token.clone().into(),
            ingest_token: config
                .api
                .ingest_token
                .as_deref()
                .filter(|token| !token.is_empty())
                .map(Into::into),
            max_payload_size: config.ingest.max_payload_size,
            ops,
        })
    } else {
        hookline_api::ops_router(ops)
    };
    let router = match portal_router {
        Some(portal_router) => router.merge(portal_router),
        None => router,
    };
    let api_address = serve_http(&config, router, &mut tasks, shutdown.clone()).await?;
    let ready_ms = started.elapsed().as_millis() as u64;
    tracing::info!(role = role.name(), %api_address, ready_ms, "Hookline started");
    Ok(Running {
        api_address,
        admin_token,
        retry_policy,
        grace: config.shutdown.grace,
        shutdown,
        tasks,
    })
}

/// Starts `hookline gateway`, which needs neither the queue nor the
/// exclusive lock of the embedded mode.
async fn start_gateway(config: Config) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let api_address = crate::gateway::start(&config, &mut tasks, shutdown.clone()).await?;
    tracing::info!(role = Role::Gateway.name(), %api_address, "Hookline started");
    Ok(Running {
        api_address,
        admin_token: String::new(),
        retry_policy: SharedRetryPolicy::new(config.retry),
        grace: config.shutdown.grace,
        shutdown,
        tasks,
    })
}

async fn serve_http(
    config: &Config,
    router: axum::Router,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on api.listen {}", config.api.listen))?;
    let address = listener.local_addr()?;
    tasks.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "HTTP server failed");
        }
    });
    Ok(address)
}

fn build_creator(config: &Config, backends: &Backends) -> anyhow::Result<Creator> {
    let settings = CreatorSettings {
        max_payload_size: config.ingest.max_payload_size,
        dedup_retention: config.dedup.retention,
        dedup_failure: match config.dedup.on_redis_failure {
            OnRedisFailure::FailClosed => DedupFailure::FailClosed,
            OnRedisFailure::StoreOnly => DedupFailure::StoreOnly,
        },
        ..CreatorSettings::default()
    };
    let creator = Creator::new(
        backends.store.clone(),
        backends.queue.clone(),
        backends.directory.clone(),
        settings,
    )
    .with_deduplicator(backends.dedup.clone());
    let creator = match &backends.shared {
        Some(shared) => creator.with_shared_database(shared.clone()),
        None => creator,
    };
    let Some(url) = &config.schema_registry.url else {
        return Ok(creator);
    };
    let registry = SchemaRegistry::new(url).context("invalid schema_registry.url")?;
    Ok(creator.with_schema_registry(registry))
}

fn build_dispatcher(
    config: &Config,
    policy: &AddressPolicy,
    store: Arc<dyn hookline_core::store::Store>,
    queue: Arc<dyn hookline_core::queue::DeliveryQueue>,
    directory: Arc<dyn hookline_core::directory::Directory>,
    limiter: Arc<dyn hookline_core::limit::RateLimiter>,
    retry_policy: SharedRetryPolicy,
) -> anyhow::Result<Arc<Dispatcher>> {
    let client_settings = ClientSettings {
        timeout: config.delivery.timeout,
        connect_timeout: config.delivery.connect_timeout,
        policy: policy.clone(),
        ca_file: config.delivery.ca_file.clone(),
        max_idle_per_host: config.delivery.per_endpoint_concurrency,
    };
    let client = build_client(&client_settings)?;
    let egress = crate::gateway::dispatcher_egress(config, client, policy)?;
    let settings = DispatcherSettings {
        concurrency: config.delivery.concurrency,
        per_endpoint_concurrency: config.delivery.per_endpoint_concurrency,
        visibility_timeout: config.visibility_timeout(),
        retry: retry_policy,
        shutdown_grace: config.shutdown.grace,
        limit_period_override: config.limits.period_override,
        disable_after: Some(config.delivery.disable_after).filter(|after| !after.is_zero()),
        disabled_recheck: config.delivery.disabled_recheck,
        attempt_timeout: config.delivery.timeout,
        ..DispatcherSettings::default()
    };
    Ok(Dispatcher::with_limiter(
        store, queue, directory, egress, limiter, settings,
    ))
}

/// Builds the Kafka source's settings. The configured `kafka.properties`
/// come after the defaults, so they may replace the assignment strategy
/// and the prefetch limits, and `kafka.sasl_password` comes last. The
/// source rejects the properties it sets itself, with an error that names
/// them.
///
/// librdkafka prefetches up to 64 MiB of records by default. 16 MiB kept
/// the same throughput in `hookline-bench load --source kafka` and lowered
/// the peak RSS by about 17 MiB (BENCHMARKS.md, "Kafka prefetch"). A full
/// prefetch queue pauses fetching for `fetch.queue.backoff.ms`, 1 s by
/// default, longer than the queue took to drain there, so that pause is
/// shortened as well.
fn kafka_settings(config: &Config) -> KafkaSettings {
    let mut client = BTreeMap::from([
        (
            "partition.assignment.strategy".to_owned(),
            "cooperative-sticky".to_owned(),
        ),
        (
            "session.timeout.ms".to_owned(),
            config.kafka.session_timeout.as_millis().to_string(),
        ),
        ("queued.max.messages.kbytes".to_owned(), "16384".to_owned()),
        ("fetch.queue.backoff.ms".to_owned(), "50".to_owned()),
    ]);
    client.extend(config.kafka.properties.clone());
    let password = config.kafka.sasl_password.as_deref();
    if let Some(password) = password.filter(|password| !password.is_empty()) {
        client.insert("sasl.password".to_owned(), password.to_owned());
    }
    KafkaSettings {
        brokers: config.kafka.brokers.clone(),
        group_id: config.kafka.group_id.clone(),
        idempotency_header: config.kafka.idempotency_header.clone(),
        client,
        ..KafkaSettings::default()
    }
}

fn spawn_kafka(
    config: &Config,
    creator: Arc<Creator>,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = kafka_settings(config);
    let source = KafkaSource::new(settings, creator).context("invalid kafka configuration")?;
    tasks.spawn(async move {
        if let Err(error) = source.run(shutdown).await {
            tracing::error!(%error, "Kafka source stopped with an error");
        }
    });
    Ok(())
}

pub(crate) fn address_policy(config: &Config) -> AddressPolicy {
    AddressPolicy {
        allow_http: config.delivery.allow_http,
        allow_private: config.delivery.allow_private_addresses,
        allowed_networks: config.delivery.allowed_networks.clone(),
    }
}

/// Settings of the developer portal from `portal.*` and the delivery rules.
fn portal_settings(config: &Config) -> hookline_portal::PortalSettings {
    let logo = config.portal.logo_url.trim();
    hookline_portal::PortalSettings {
        brand_name: config.portal.brand_name.clone(),
        logo_url: (!logo.is_empty()).then(|| logo.to_owned()),
        brand_colour: config.portal.brand_colour.clone(),
        provider_emails: config.portal.provider_emails(),
        secure_cookie: config.portal.secure_cookie,
        session_ttl: config.portal.session_ttl,
        rotation_overlap: config.portal.secret_rotation_overlap,
        address_policy: address_policy(config),
        retry: config.retry,
    }
}

/// Returns the configured token, or one generated and kept in `<data_dir>/admin-token`.
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if !config.api.admin_token.is_empty() {
        return Ok(config.api.admin_token.clone());
    }
    let path = config.storage.data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
        format!(
            "cannot create storage.data_dir {}",
            config.storage.data_dir.display()
        )
    })?;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    write_private(&path, &token).with_context(|| {
        format!(
            "cannot write the generated admin token to {}",
            path.display()
        )
    })?;
    tracing::warn!(path = %path.display(), "api.admin_token is not set; generated one and wrote it to this file");
    Ok(token)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

/// Periodic housekeeping: expire idempotency keys, enqueue events whose
/// enqueueing was interrupted, delete expired portal sessions and old
/// delivery history.
struct Housekeeping {
    creator: Arc<Creator>,
    portal: Arc<dyn PortalStore>,
    history: Option<Arc<dyn backends::HistoryPurge>>,
    config: Config,
}

impl Housekeeping {
    async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.tick().await;
        }
    }

    async fn tick(&self) {
        let now = OffsetDateTime::now_utc();
        match self
            .creator
            .store()
            .expire_idempotency_keys(now - self.config.dedup.retention)
            .await
        {
            Ok(0) => {}
            Ok(expired) => tracing::debug!(expired, "Expired idempotency keys"),
            Err(error) => tracing::warn!(%error, "Expiring idempotency keys failed"),
        }
        match self.creator.recover(now - RECOVERY_AGE).await {
            Ok(0) => {}
            Ok(tasks) => tracing::info!(
                tasks,
                "Enqueued tasks of events whose enqueueing was interrupted"
            ),
            Err(error) => tracing::warn!(%error, "Recovery sweep failed"),
        }
        match self.portal.delete_expired_sessions(now).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "Deleted expired portal sessions"),
            Err(error) => tracing::warn!(%error, "Deleting expired portal sessions failed"),
        }
        if let Some(history) = &self.history {
            match history.purge(now - self.config.storage.retention).await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(deleted, "Deleted delivery history past storage.retention")
                }
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "Deleting old delivery history failed"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_properties_reach_the_source_settings() {
        let mut config = Config::load(None).expect("the defaults load");
        config.kafka.brokers = "kafka-1:9093".to_owned();
        config.kafka.properties = BTreeMap::from([
            ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            (
                "partition.assignment.strategy".to_owned(),
                "range".to_owned(),
            ),
            ("queued.max.messages.kbytes".to_owned(), "4096".to_owned()),
        ]);

        let settings = kafka_settings(&config);

        assert_eq!(settings.brokers, "kafka-1:9093");
        assert_eq!(settings.client["security.protocol"], "SASL_SSL");
        assert_eq!(settings.client["partition.assignment.strategy"], "range");
        assert_eq!(settings.client["session.timeout.ms"], "45000");
        assert_eq!(settings.client["queued.max.messages.kbytes"], "4096");
        assert_eq!(settings.client["fetch.queue.backoff.ms"], "50");
        assert!(!settings.client.contains_key("sasl.password"));
    }

    #[test]
    fn kafka_prefetch_limits_by_default() {
        let config = Config::load(None).expect("the defaults load");

        let settings = kafka_settings(&config);

        assert_eq!(settings.client["queued.max.messages.kbytes"], "16384");
        assert_eq!(settings.client["fetch.queue.backoff.ms"], "50");
    }

    #[test]
    fn sasl_password_becomes_a_property() {
        let mut config = Config::load(None).expect("the defaults load");
        config.kafka.properties =
            BTreeMap::from([("sasl.password".to_owned(), "from-the-file".to_owned())]);
        config.kafka.sasl_password = Some("from-the-secret".to_owned());

        let settings = kafka_settings(&config);

        assert_eq!(settings.client["sasl.password"], "from-the-secret");
    }
}
