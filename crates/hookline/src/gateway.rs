//! `hookline gateway`, and the egress of a dispatcher that sends through it.
//!
//! The gateway process opens the state store (SQLite shared with a running
//! `hookline serve`, or PostgreSQL) only to read applications through the
//! configured directory. It serves the gateway on `gateway.listen` and
//! `/healthz`, `/readyz` and `/metrics` on `api.listen`.

use crate::config::{Config, DirectoryKind};
use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use hookline_core::directory::Directory;
use hookline_core::limit::{LocalRateLimiter, RateLimiter};
use hookline_core::portal::PortalStore;
use hookline_core::store::Store;
use hookline_core::webhook_url::AddressPolicy;
use hookline_delivery::{
    build_client, ClientSettings, Egress, GatewayEgress, GatewaySettings, HttpEgress,
};
use hookline_gateway::{BodyHmacSettings, Gateway};
use hookline_redis::{
    InvalidationBus, RedisClient, RedisRateLimiter, RedisSettings, SharedDirectory,
};
use hookline_threescale::{ReportCredentials, ReportSettings, ReportingEgress};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Time a dispatcher gives the gateway beyond the gateway's own attempt deadline.
const GATEWAY_MARGIN: Duration = Duration::from_secs(5);

/// Returns the egress of a dispatcher: through the gateway when
/// `dispatcher.gateway_url` is set, else signing and sending in process,
/// and reporting to 3scale when `directory.report_url` is set.
pub fn dispatcher_egress(
    config: &Config,
    client: reqwest::Client,
    policy: &AddressPolicy,
) -> anyhow::Result<Arc<dyn Egress>> {
    let egress = base_egress(config, client, policy)?;
    let directory = &config.directory;
    let Some(report_url) = &directory.report_url else {
        return Ok(egress);
    };
    if directory.kind != DirectoryKind::Threescale {
        return Ok(egress);
    }
    let credentials = if directory.provider_key.is_empty() {
        let tokens = directory
            .services
            .iter()
            .filter_map(|(product, service)| {
                let token = directory.service_tokens.get(product)?;
                Some((*service, token.clone()))
            })
            .collect();
        ReportCredentials::ServiceTokens(tokens)
    } else {
        ReportCredentials::ProviderKey(directory.provider_key.clone())
    };
    let settings = ReportSettings {
        url: report_url.parse().context("invalid directory.report_url")?,
        credentials,
        metric: directory.usage_metric.clone(),
        timeout: directory.request_timeout,
    };
    // NOTE: the reporting task is not awaited at shutdown, so hits of the
    // last second before a stop may go unreported.
    let (reporting, _task) = ReportingEgress::spawn(egress, settings)?;
    tracing::info!(report_url = %report_url, metric = %directory.usage_metric, "Delivered notifications are reported to 3scale");
    Ok(Arc::new(reporting))
}

/// Returns the egress that sends: through the gateway when
/// `dispatcher.gateway_url` is set, else signing and sending in process.
fn base_egress(
    config: &Config,
    client: reqwest::Client,
    policy: &AddressPolicy,
) -> anyhow::Result<Arc<dyn Egress>> {
    let Some(url) = &config.dispatcher.gateway_url else {
        let egress = HttpEgress::new(client, policy.clone()).with_deadline(config.delivery.timeout);
        return Ok(Arc::new(egress));
    };
    let settings = GatewaySettings {
        url: url.parse().context("invalid dispatcher.gateway_url")?,
        token: config.gateway.token.clone(),
        timeout: config.delivery.timeout + GATEWAY_MARGIN,
        counts_limits: config.gateway.count_limits,
    };
    let counts_limits = config.gateway.count_limits;
    tracing::info!(gateway_url = %url, gateway_counts_limits = counts_limits, "Attempts are sent through the egress gateway");
    Ok(Arc::new(GatewayEgress::new(settings)?))
}

/// Starts the gateway and its operational endpoints; returns the address of
/// the latter.
pub async fn start(
    config: &Config,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    if config.gateway.token.is_empty() {
        bail!("gateway.token must be set: without it the gateway would relay anyone's requests");
    }
    let (store, portal, keep_open) = open_store(config).await?;
    let directory = crate::directories::open(config, store.clone(), portal)?;
    let directory = follow_invalidations(config, directory, tasks, shutdown.clone())?;
    let policy = crate::server::address_policy(config);
    let client = build_client(&client_settings(config, &policy))?;
    let egress = HttpEgress::new(client.clone(), policy.clone());
    let egress = Arc::new(egress.with_deadline(config.delivery.timeout));
    let settings = hookline_gateway::GatewaySettings {
        token: config.gateway.token.clone(),
        hmac: BodyHmacSettings {
            header: config.gateway.hmac_header.parse()?,
            encoding: config.gateway.hmac_encoding.into(),
            prefix: config.gateway.hmac_prefix.clone(),
        },
        max_body_size: config.ingest.max_payload_size,
    };
    let mut gateway = Gateway::new(directory, egress, client, policy, settings);
    if config.gateway.count_limits {
        gateway = gateway
            .with_limiter(gateway_limiter(config)?)
            .with_period_override(config.limits.period_override);
    }
    let router = hookline_gateway::router(Arc::new(gateway));

    let listen = config.gateway.listen;
    let address = serve(listen, "gateway.listen", router, tasks, shutdown.clone()).await?;
    tracing::info!(%address, "Egress gateway listening");
    let ops = ops_router(store, keep_open);
    serve(config.api.listen, "api.listen", ops, tasks, shutdown).await
}

/// Returns the limiter of a gateway with `gateway.count_limits`: in Redis
/// when `redis.url` is set and `limits.use_redis` is true, else in this
/// process, which is exact only while a single gateway serves the plan.
fn gateway_limiter(config: &Config) -> anyhow::Result<Arc<dyn RateLimiter>> {
    let url = config
        .redis
        .url
        .as_ref()
        .filter(|_| config.limits.use_redis);
    let Some(url) = url else {
        tracing::info!("The gateway counts rate limits in this process");
        return Ok(Arc::new(LocalRateLimiter::new()));
    };
    let settings = RedisSettings {
        url: url.clone(),
        key_prefix: config.redis.key_prefix.clone(),
        command_timeout: config.redis.command_timeout,
    };
    let client = RedisClient::connect_lazy(settings).context("invalid redis.url")?;
    tracing::info!("The gateway counts rate limits in Redis");
    Ok(Arc::new(RedisRateLimiter::new(client)))
}

/// Clears the directory's cache when another process publishes a change to
/// applications on Redis, as the other processes do, so a disabled
/// application or a rotated secret takes effect here at once.
fn follow_invalidations(
    config: &Config,
    directory: Arc<dyn Directory>,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<dyn Directory>> {
    let Some(url) = &config.redis.url else {
        return Ok(directory);
    };
    let settings = RedisSettings {
        url: url.clone(),
        key_prefix: config.redis.key_prefix.clone(),
        command_timeout: config.redis.command_timeout,
    };
    let client = RedisClient::connect_lazy(settings).context("invalid redis.url")?;
    let shared = SharedDirectory::new(directory, InvalidationBus::new(client));
    let handle = shared.subscribe(shutdown);
    tasks.spawn(async move {
        let _ = handle.await;
    });
    Ok(shared)
}

fn client_settings(config: &Config, policy: &AddressPolicy) -> ClientSettings {
    ClientSettings {
        timeout: config.delivery.timeout,
        connect_timeout: config.delivery.connect_timeout,
        policy: policy.clone(),
        ca_file: config.delivery.ca_file.clone(),
        max_idle_per_host: config.delivery.per_endpoint_concurrency,
    }
}

/// Owner of the embedded store's connections, kept for the life of the process.
type KeepOpen = Option<Arc<hookline_sqlite::SqliteBackend>>;

/// The opened state store, as the directory reads it.
type OpenedStore = (Arc<dyn Store>, Arc<dyn PortalStore>, KeepOpen);

/// Opens the state store without the embedded mode's exclusive lock, so the
/// gateway can run next to `hookline serve` on the same data directory.
async fn open_store(config: &Config) -> anyhow::Result<OpenedStore> {
    if let Some(url) = &config.storage.url {
        let keys = crate::secrets::required_keys(config)?;
        let pg = hookline_postgres::PgBackend::connect(
            url,
            config.storage.schema.as_deref(),
            config.storage.max_connections,
        )
        .await
        .context("cannot connect to PostgreSQL at storage.url")?
        .with_secret_keys(keys);
        if config.storage.migrate_on_start {
            pg.migrate()
                .await
                .context("cannot apply database migrations")?;
        }
        pg.store()
            .verify_secret_key()
            .await
            .context("cannot read the stored signing secrets with secrets.keys")?;
        return Ok((pg.store(), pg.store(), None));
    }
    let data_dir = &config.storage.data_dir;
    let keys = config.secrets.cipher()?;
    let backend = hookline_sqlite::SqliteBackend::open_with_keys(data_dir, keys)
        .await
        .with_context(|| format!("cannot open the state store in {}", data_dir.display()))?;
    let store: Arc<dyn Store> = backend.store();
    let portal: Arc<dyn PortalStore> = backend.store();
    Ok((store, portal, Some(Arc::new(backend))))
}

#[derive(Clone)]
struct OpsState {
    store: Arc<dyn Store>,
    _keep_open: KeepOpen,
}

fn ops_router(store: Arc<dyn Store>, keep_open: KeepOpen) -> Router {
    let render = crate::metrics::renderer();
    let metrics = move || {
        let render = render.clone();
        async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], render()) }
    };
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState {
            store,
            _keep_open: keep_open,
        })
}

/// Reports ready while the state store responds, because every lookup may need it.
async fn readyz(State(ops): State<OpsState>) -> (StatusCode, Json<serde_json::Value>) {
    match ops.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(error) => {
            tracing::warn!(%error, "Readiness check failed");
            let body = json!({"status": "unavailable", "failures": {"store": error.to_string()}});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

async fn serve(
    listen: SocketAddr,
    key: &str,
    router: Router,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {key} {listen}"))?;
    let address = listener.local_addr()?;
    tasks.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, %address, "HTTP server failed");
        }
    });
    Ok(address)
}
