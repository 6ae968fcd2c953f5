//! The subscription directory: which applications receive a product's
//! events, and where and with which secrets to send them.

use crate::portal::{PortalStore, PreviousSecret};
use crate::{ApplicationId, ApplicationState, AvroFormat, PlanLimit, SigningSecret};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Delivery target of one application: URL, plan and secrets, looked up at
/// send time so that secrets never travel in queue messages.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub application_id: ApplicationId,
    pub url: String,
    pub plan: String,
    /// The plan's rate limit; `None` when the plan is unlimited.
    pub limit: Option<PlanLimit>,
    /// Active secrets, newest first; all of them sign each delivery.
    pub secrets: Vec<SigningSecret>,
    pub active: bool,
}

/// Failure to reach the directory; retry later.
#[derive(Debug, thiserror::Error)]
#[error("subscription directory failed: {message}")]
pub struct DirectoryError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Applications subscribed to `product` whose events are kept for them.
    async fn subscribers(&self, product: &str) -> Result<Arc<[ApplicationId]>, DirectoryError>;
    /// Looks up the endpoint of one application; `None` when it no longer exists.
    async fn endpoint(
        &self,
        application: &ApplicationId,
    ) -> Result<Option<Arc<Endpoint>>, DirectoryError>;
    /// Returns how the application receives the events of Avro products.
    /// The default, for directories that keep no such setting, is `binary`.
    async fn avro_format(&self, application: &ApplicationId) -> Result<AvroFormat, DirectoryError> {
        let _ = application;
        Ok(AvroFormat::Binary)
    }
    /// Drops cached entries after a change to applications.
    fn invalidate(&self);
}

/// The built-in directory: applications from the state store, cached for a
/// short time and dropped on [`Directory::invalidate`].
pub struct StoreDirectory {
    store: Arc<dyn crate::store::Store>,
    /// Source of the previous secret of a rotated application; without it,
    /// only the current secret signs.
    portal: Option<Arc<dyn PortalStore>>,
    ttl: Duration,
    /// Never held across an await.
    cache: RwLock<Cache>,
}

#[derive(Default)]
struct Cache {
    subscribers: HashMap<String, (Arc<[ApplicationId]>, Instant)>,
    /// Each endpoint with the time it was read and how long it may be
    /// served from the cache.
    endpoints: HashMap<ApplicationId, (Arc<Endpoint>, Instant, Duration)>,
    /// Avro formats with the time they were read.
    avro_formats: HashMap<ApplicationId, (AvroFormat, Instant)>,
}

impl StoreDirectory {
    pub fn new(store: Arc<dyn crate::store::Store>, ttl: Duration) -> Self {
        Self {
            store,
            portal: None,
            ttl,
            cache: RwLock::new(Cache::default()),
        }
    }

    /// Signs with an application's previous secret too, next to the current
    /// one, until the previous secret expires.
    pub fn with_portal(mut self, portal: Arc<dyn PortalStore>) -> Self {
        self.portal = Some(portal);
        self
    }
}

impl StoreDirectory {
    /// Reads the rate limit of the plan `name`. A name with no stored plan,
    /// which only a writer other than the admin API can leave, means no limit.
    async fn plan_limit(&self, name: &str) -> Result<Option<PlanLimit>, DirectoryError> {
        match self.store.plan(name).await.map_err(store_failure)? {
            Some(plan) => Ok(plan.rate_limit()),
            None => {
                tracing::warn!(
                    plan = name,
                    "Application has a plan that does not exist; sending without a rate limit"
                );
                Ok(None)
            }
        }
    }

    /// Reads the application's previous secret while it has not expired.
    async fn previous_secret(
        &self,
        id: &ApplicationId,
    ) -> Result<Option<PreviousSecret>, DirectoryError> {
        let Some(portal) = &self.portal else {
            return Ok(None);
        };
        portal
            .previous_secret(id, OffsetDateTime::now_utc())
            .await
            .map_err(store_failure)
    }
}

/// Counts a cache lookup of [`StoreDirectory`]; an expired entry is a miss.
fn count_cache_lookup(result: &'static str) {
    metrics::counter!("hookline_directory_cache_total", "result" => result).increment(1);
}

fn store_failure(error: crate::store::StoreError) -> DirectoryError {
    DirectoryError {
        message: error.to_string(),
        source: Some(Box::new(error)),
    }
}

#[async_trait]
impl Directory for StoreDirectory {
    async fn subscribers(&self, product: &str) -> Result<Arc<[ApplicationId]>, DirectoryError> {
        if let Some((ids, read_at)) = self
            .cache
            .read()
            .expect("cache lock")
            .subscribers
            .get(product)
        {
            if read_at.elapsed() < self.ttl {
                count_cache_lookup("hit");
                return Ok(ids.clone());
            }
        }
        count_cache_lookup("miss");
        let applications = self
            .store
            .applications(Some(product))
            .await
            .map_err(store_failure)?;
        // Disabled applications stay subscribed: their deliveries are kept
        // until the application is enabled again, and the dispatcher holds
        // them back meanwhile.
        let ids: Arc<[ApplicationId]> = applications
            .into_iter()
            .map(|application| application.id)
            .collect();
        let entry = (ids.clone(), Instant::now());
        self.cache
            .write()
            .expect("cache lock")
            .subscribers
            .insert(product.to_owned(), entry);
        Ok(ids)
    }

    async fn endpoint(&self, id: &ApplicationId) -> Result<Option<Arc<Endpoint>>, DirectoryError> {
        if let Some((endpoint, read_at, fresh_for)) =
            self.cache.read().expect("cache lock").endpoints.get(id)
        {
            if read_at.elapsed() < *fresh_for {
                count_cache_lookup("hit");
                return Ok(Some(endpoint.clone()));
            }
        }
        count_cache_lookup("miss");
        let Some(application) = self.store.application(id).await.map_err(store_failure)? else {
            return Ok(None);
        };
        let limit = self.plan_limit(&application.plan).await?;
        let read_at = Instant::now();
        let mut fresh_for = self.ttl;
        let mut secrets = vec![application.secret];
        if let Some(previous) = self.previous_secret(id).await? {
            // A rotation between the two reads can return the old secret
            // from both; it is sent once.
            if previous.secret != secrets[0] {
                secrets.push(previous.secret);
            }
            // The entry must not outlive the previous secret, or it would
            // keep signing with it after it expired.
            let left = previous.expires_at - OffsetDateTime::now_utc();
            let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
            fresh_for = fresh_for.min(left);
        }
        let endpoint = Arc::new(Endpoint {
            application_id: application.id,
            url: application.webhook_url,
            plan: application.plan,
            limit,
            secrets,
            active: application.state == ApplicationState::Active,
        });
        let entry = (endpoint.clone(), read_at, fresh_for);
        self.cache
            .write()
            .expect("cache lock")
            .endpoints
            .insert(id.clone(), entry);
        Ok(Some(endpoint))
    }

    async fn avro_format(&self, id: &ApplicationId) -> Result<AvroFormat, DirectoryError> {
        if let Some((format, read_at)) = self.cache.read().expect("cache lock").avro_formats.get(id)
        {
            if read_at.elapsed() < self.ttl {
                count_cache_lookup("hit");
                return Ok(*format);
            }
        }
        count_cache_lookup("miss");
        let formats = self
            .store
            .avro_formats(std::slice::from_ref(id))
            .await
            .map_err(store_failure)?;
        let format = formats.get(id).copied().unwrap_or_default();
        self.cache
            .write()
            .expect("cache lock")
            .avro_formats
            .insert(id.clone(), (format, Instant::now()));
        Ok(format)
    }

    fn invalidate(&self) {
        let mut cache = self.cache.write().expect("cache lock");
        cache.subscribers.clear();
        cache.endpoints.clear();
        cache.avro_formats.clear();
    }
}
