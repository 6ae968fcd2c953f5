//! Builds the subscription directory that `directory.kind` names.

use crate::backends::DIRECTORY_TTL;
use crate::config::{Config, DirectoryConfig, DirectoryKind};
use anyhow::Context;
use hookline_core::directory::{Directory, StoreDirectory};
use hookline_core::portal::PortalStore;
use hookline_core::store::Store;
use hookline_threescale::{ThreescaleDirectory, ThreescaleSettings};
use std::sync::Arc;

/// Opens the built-in directory over `store`, which also signs with the
/// previous secret of a rotated application (read from `portal`), or the
/// 3scale directory, which writes the applications it reads into `store`.
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
            tracing::info!(services, "Reading applications from 3scale");
            Ok(Arc::new(directory))
        }
    }
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
