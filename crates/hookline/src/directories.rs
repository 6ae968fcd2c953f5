//! Builds the subscription directory that `directory.kind` names.

use crate::backends::{is_distributed, DIRECTORY_TTL};
use crate::config::{Config, DirectoryConfig, DirectoryKind};
use anyhow::Context;
use hookline_core::directory::{Directory, StoreDirectory};
use hookline_core::portal::PortalStore;
use hookline_core::store::Store;
use hookline_redis::{RedisClient, RedisSettings};
use hookline_threescale::{ThreescaleDirectory, ThreescaleSettings};
use std::sync::Arc;

/// Opens the built-in directory over `store`, which also signs with the
/// previous secret of a rotated application (read from `portal`), or the
/// 3scale directory, which writes the applications it reads into `store`
/// and, in the distributed mode with `redis.url`, shares them through Redis.
///
/// # Panics
///
/// Panics when called outside a Tokio runtime with the 3scale directory and
/// `redis.url` set.
pub fn open(
    config: &Config,
    store: Arc<dyn Store>,
    portal: Arc<dyn PortalStore>,
) -> anyhow::Result<Arc<dyn Directory>> {
    match config.directory.kind {
        DirectoryKind::Builtin => {
            let directory = StoreDirectory::new(store, DIRECTORY_TTL).with_portal(portal);
            Ok(Arc::new(directory))
        }
        DirectoryKind::Threescale => {
            let settings = threescale_settings(&config.directory)?;
            let services = settings.services.len();
            let directory = ThreescaleDirectory::new(settings, store)
                .context("cannot set up the 3scale directory")?;
            let directory = share_through_redis(config, directory)?;
            tracing::info!(services, "Reading applications from 3scale");
            Ok(Arc::new(directory))
        }
    }
}

/// Adds the Redis tier to the 3scale directory in the distributed mode with
/// `redis.url`. The shared lists contain the signing keys, so they are
/// encrypted with `secrets.keys`, and without keys nothing is shared. The
/// distributed mode requires keys, so that case is a safeguard.
fn share_through_redis(
    config: &Config,
    directory: ThreescaleDirectory,
) -> anyhow::Result<ThreescaleDirectory> {
    let Some(url) = config.redis.url.as_ref().filter(|_| is_distributed(config)) else {
        return Ok(directory);
    };
    let Some(cipher) = config.secrets.cipher()? else {
        tracing::warn!("secrets.keys is not set, so the 3scale applications are not shared through Redis: each process reads 3scale itself");
        return Ok(directory);
    };
    let settings = RedisSettings {
        url: url.clone(),
        key_prefix: config.redis.key_prefix.clone(),
        command_timeout: config.redis.command_timeout,
    };
    let client = RedisClient::connect_lazy(settings).context("invalid redis.url")?;
    tracing::info!("The 3scale applications are shared through Redis");
    Ok(directory.with_redis(client, cipher))
}

fn threescale_settings(config: &DirectoryConfig) -> anyhow::Result<ThreescaleSettings> {
    let admin_url = config
        .admin_url
        .as_deref()
        .context("directory.admin_url is not set")?
        .parse()
        .context("directory.admin_url is not a valid URL")?;
    let mut settings = ThreescaleSettings::new(
        admin_url,
        config.access_token.clone(),
        config.services.clone(),
    );
    settings.cache_ttl = config.cache_ttl;
    settings.stale_for = config.stale_for;
    settings.request_timeout = config.request_timeout;
    settings.webhook_url_field = config.webhook_url_field.clone();
    settings.secret_field = config.secret_field.clone();
    settings.plans = config.plans.clone();
    settings.usage_metric = config.usage_metric.clone();
    Ok(settings)
}
