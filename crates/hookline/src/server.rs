//! `hookline serve`: ingest, creator, dispatcher and API in one process on
//! the embedded SQLite backend.

use crate::config::Config;
use anyhow::Context;
use hookline_api::ApiState;
use hookline_core::directory::{Directory, StoreDirectory};
use hookline_core::queue::DeliveryQueue;
use hookline_core::store::Store;
use hookline_core::webhook_url::AddressPolicy;
use hookline_creator::{Creator, CreatorSettings, IngestBatcher};
use hookline_delivery::{build_client, ClientSettings, Dispatcher, DispatcherSettings, HttpEgress};
use hookline_kafka::{KafkaSettings, KafkaSource};
use hookline_sqlite::SqliteBackend;
use rand::RngCore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long cached applications and products are used before a re-read.
const DIRECTORY_TTL: Duration = Duration::from_secs(5);
/// Events stored longer ago than this without confirmed enqueueing are
/// enqueued again by the recovery sweep.
const RECOVERY_AGE: Duration = Duration::from_secs(30);

/// A started server.
pub struct Running {
    /// Address the API listens on (useful when the port was 0).
    pub api_address: SocketAddr,
    pub admin_token: String,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops taking work, lets in-flight deliveries finish, and waits.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "A component ended abnormally");
            }
        }
        tracing::info!("Hookline stopped");
    }
}

/// Opens the backend, starts every component and returns once the API listens.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let backend = SqliteBackend::open_exclusive(&config.storage.data_dir)
        .await
        .with_context(|| {
            format!(
                "cannot open the state store in storage.data_dir {}",
                config.storage.data_dir.display()
            )
        })?;
    let store: Arc<dyn Store> = backend.store();
    let queue: Arc<dyn DeliveryQueue> = backend.queue();
    let directory: Arc<dyn Directory> = Arc::new(StoreDirectory::new(store.clone(), DIRECTORY_TTL));
    let admin_token = admin_token(&config)?;

    let creator_settings = CreatorSettings {
        max_payload_size: config.ingest.max_payload_size,
        ..CreatorSettings::default()
    };
    let creator = Arc::new(Creator::new(
        store.clone(),
        queue.clone(),
        directory.clone(),
        creator_settings,
    ));
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

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let policy = address_policy(&config);
    let dispatcher = build_dispatcher(
        &config,
        &policy,
        store.clone(),
        queue.clone(),
        directory.clone(),
    )?;
    tasks.spawn(dispatcher.run(shutdown.clone()));
    tasks.spawn(maintenance(
        creator.clone(),
        config.dedup.retention,
        shutdown.clone(),
    ));
    if !config.kafka.brokers.trim().is_empty() {
        let source = KafkaSource::new(kafka_settings(&config), creator.clone())
            .context("invalid kafka configuration")?;
        let token = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = source.run(token).await {
                tracing::error!(%error, "Kafka source stopped with an error");
            }
        });
    }

    let state = ApiState {
        store,
        queue,
        directory,
        ingest: IngestBatcher::spawn(creator.clone()),
        creator,
        address_policy: policy,
        admin_token: admin_token.clone().into(),
        max_payload_size: config.ingest.max_payload_size,
    };
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on api.listen {}", config.api.listen))?;
    let api_address = listener.local_addr()?;
    let token = shutdown.clone();
    tasks.spawn(async move {
        let app = hookline_api::router(state);
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "API server failed");
        }
    });
    tracing::info!(%api_address, data_dir = %config.storage.data_dir.display(), "Hookline started");
    Ok(Running {
        api_address,
        admin_token,
        shutdown,
        tasks,
    })
}

fn build_dispatcher(
    config: &Config,
    policy: &AddressPolicy,
    store: Arc<dyn Store>,
    queue: Arc<dyn DeliveryQueue>,
    directory: Arc<dyn Directory>,
) -> anyhow::Result<Arc<Dispatcher>> {
    let client_settings = ClientSettings {
        timeout: config.delivery.timeout,
        connect_timeout: config.delivery.connect_timeout,
        policy: policy.clone(),
        ca_file: config.delivery.ca_file.clone(),
        max_idle_per_host: config.delivery.per_endpoint_concurrency,
    };
    let client = build_client(&client_settings)?;
    let egress = Arc::new(HttpEgress::new(client, policy.clone()));
    let settings = DispatcherSettings {
        concurrency: config.delivery.concurrency,
        per_endpoint_concurrency: config.delivery.per_endpoint_concurrency,
        visibility_timeout: config.visibility_timeout(),
        retry: config.retry,
        ..DispatcherSettings::default()
    };
    Ok(Dispatcher::new(store, queue, directory, egress, settings))
}

fn address_policy(config: &Config) -> AddressPolicy {
    AddressPolicy {
        allow_http: config.delivery.allow_http,
        allow_private: config.delivery.allow_private_addresses,
        allowed_networks: Vec::new(),
    }
}

fn kafka_settings(config: &Config) -> KafkaSettings {
    KafkaSettings {
        brokers: config.kafka.brokers.clone(),
        group_id: config.kafka.group_id.clone(),
        idempotency_header: config.kafka.idempotency_header.clone(),
        ..KafkaSettings::default()
    }
}

/// The configured token, or one generated and kept in `<data_dir>/admin-token`.
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if !config.api.admin_token.is_empty() {
        return Ok(config.api.admin_token.clone());
    }
    let path = config.storage.data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
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

/// Periodic housekeeping: expire idempotency keys and enqueue events whose
/// enqueueing was interrupted.
async fn maintenance(creator: Arc<Creator>, retention: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = OffsetDateTime::now_utc();
        match creator
            .store()
            .expire_idempotency_keys(now - retention)
            .await
        {
            Ok(0) => {}
            Ok(expired) => tracing::debug!(expired, "Expired idempotency keys"),
            Err(error) => tracing::warn!(%error, "Expiring idempotency keys failed"),
        }
        match creator.recover(now - RECOVERY_AGE).await {
            Ok(0) => {}
            Ok(tasks) => tracing::info!(
                tasks,
                "Enqueued tasks of events whose enqueueing was interrupted"
            ),
            Err(error) => tracing::warn!(%error, "Recovery sweep failed"),
        }
    }
}
