//! [`ThreescaleDirectory`]: the [`Directory`] of `directory.kind =
//! "threescale"`.

use crate::api::{AdminApi, FetchError};
use crate::cache::{CachePolicy, Failed, Loaded, StaleCache};
use crate::parse::{parse_application, parse_application_id, Missing, ParsedApplication};
use crate::shared::SharedCache;
use crate::snapshot::{ApplicationList, Snapshot};
use crate::ThreescaleSettings;
use async_trait::async_trait;
use hookline_core::cipher::SecretCipher;
use hookline_core::directory::{Directory, DirectoryError, Endpoint};
use hookline_core::store::{Store, StoreError};
use hookline_core::{Application, ApplicationId, PlanLimit, SigningSecret};
use hookline_redis::RedisClient;
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Maximum wait between loads while 3scale fails.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A failed load of one service.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("storing the applications read from 3scale failed: {0}")]
    Store(#[from] StoreError),
}

/// The subscription directory backed by 3scale.
///
/// Each application becomes a row in the state store, because deliveries
/// refer to applications there. The row's secret is a random placeholder,
/// because the signing key comes from 3scale and is never written to the
/// state store. The Redis tier, when set, stores it encrypted.
pub struct ThreescaleDirectory {
    api: AdminApi,
    settings: ThreescaleSettings,
    store: Arc<dyn Store>,
    cache: StaleCache<Snapshot>,
    /// The Redis tier, set by [`ThreescaleDirectory::with_redis`].
    shared: Option<SharedCache>,
    /// Fingerprint of each row written since the start, so unchanged rows
    /// are not written again.
    written: Mutex<HashMap<ApplicationId, u64>>,
    /// Applications and products already warned about, so each warning is
    /// logged once per process.
    warned: Mutex<HashSet<String>>,
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ThreescaleError {
    #[error("invalid 3scale directory configuration: {0}")]
    Invalid(String),
    #[error("cannot build the 3scale client: {0}")]
    Client(#[source] reqwest::Error),
}

impl ThreescaleDirectory {
    pub fn new(
        settings: ThreescaleSettings,
        store: Arc<dyn Store>,
    ) -> Result<Self, ThreescaleError> {
        settings.validate().map_err(ThreescaleError::Invalid)?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(settings.request_timeout)
            .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ThreescaleError::Client)?;
        let api = AdminApi::new(
            client,
            settings.admin_url.clone(),
            settings.access_token.clone(),
        );
        let policy = CachePolicy {
            ttl: settings.cache_ttl,
            stale_for: settings.stale_for,
            backoff: backoff(&settings),
        };
        Ok(Self {
            api,
            settings,
            store,
            cache: StaleCache::new(policy),
            shared: None,
            written: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// Adds the Redis tier, which shares each service's list through
    /// `client`. Lists are encrypted with the newest key of `cipher`, so
    /// every replica needs that key too. Lookups then try this process's
    /// cache, then Redis, then 3scale.
    pub fn with_redis(mut self, client: RedisClient, cipher: SecretCipher) -> Self {
        // A claim lasts at least one request timeout, so a slow refresh is
        // rarely duplicated. It also lasts at least the backoff, so while
        // 3scale fails the replicas together retry about as often as one
        // process would.
        let claim_for = backoff(&self.settings).max(self.settings.request_timeout);
        self.shared = Some(SharedCache::new(
            client,
            cipher,
            &self.settings,
            self.store.clone(),
            claim_for,
        ));
        self
    }

    async fn snapshot(&self, service: u64) -> Result<Arc<Snapshot>, DirectoryError> {
        self.cache
            .get(service, || self.load(service))
            .await
            .map_err(|message| DirectoryError {
                message: format!("3scale service {service}: {message}"),
                source: None,
            })
    }

    /// Loads the service's list through the Redis tier when there is one,
    /// else from 3scale.
    async fn load(&self, service: u64) -> Result<Loaded<Snapshot>, Failed<Snapshot>> {
        let Some(shared) = &self.shared else {
            return match self.fetch(service).await {
                Ok(list) => Ok(Loaded::fresh(list.into_snapshot())),
                Err(error) => Err(Failed::new(error)),
            };
        };
        shared.load(service, || self.fetch(service)).await
    }

    /// Reads the service's applications and plans from 3scale and writes
    /// their rows to the state store.
    async fn fetch(&self, service: u64) -> Result<ApplicationList, LoadError> {
        let product = self
            .settings
            .product_of(service)
            .expect("services are looked up by product")
            .to_owned();
        let plan_names = self.api.plan_names(service).await?;
        let raw = self.api.applications(service).await?;
        let mut parsed = Vec::new();
        for application in &raw {
            match parse_application(application, service, &self.settings, &plan_names) {
                Ok(application) => parsed.push(application),
                Err((id, reason)) => self.warn_skipped(service, id, reason),
            }
        }
        let limits = self.plan_limits(service, &parsed).await?;
        for application in &parsed {
            self.write_row(application, &product).await?;
        }
        tracing::debug!(
            service,
            read = raw.len(),
            usable = parsed.len(),
            "Read applications from 3scale"
        );
        Ok(ApplicationList {
            applications: parsed,
            limits,
        })
    }

    /// Reads the rate limit of each plan the applications use. A plan that
    /// Hookline has gets the Hookline plan's limit. Any other plan gets the
    /// limit that 3scale sets on `directory.usage_metric` in the application
    /// plan.
    async fn plan_limits(
        &self,
        service: u64,
        applications: &[ParsedApplication],
    ) -> Result<HashMap<String, Option<PlanLimit>>, LoadError> {
        let mut limits = HashMap::new();
        // Read once per load, and only when some plan needs it.
        let mut metric_id: Option<Option<u64>> = None;
        for application in applications {
            if limits.contains_key(&application.plan) {
                continue;
            }
            let limit = match self.store.plan(&application.plan).await? {
                Some(plan) => plan.rate_limit(),
                None => {
                    let metric_id = match metric_id {
                        Some(known) => known,
                        None => {
                            let metric = &self.settings.usage_metric;
                            let found = self.api.metric_id(service, metric).await?;
                            *metric_id.insert(found)
                        }
                    };
                    self.threescale_limit(service, application, metric_id)
                        .await?
                }
            };
            limits.insert(application.plan.clone(), limit);
        }
        Ok(limits)
    }

    /// Reads the limit of `application`'s 3scale plan on the usage metric
    /// `metric_id`, warning once per plan when there is none.
    async fn threescale_limit(
        &self,
        service: u64,
        application: &ParsedApplication,
        metric_id: Option<u64>,
    ) -> Result<Option<PlanLimit>, FetchError> {
        let plan = &application.plan;
        let metric = &self.settings.usage_metric;
        let (Some(metric_id), Some(plan_id)) = (metric_id, application.plan_id) else {
            if self.first_warning(&format!("plan:{plan}")) {
                tracing::warn!(service, %plan, %metric, "A 3scale application plan maps to no Hookline plan, and the service has no metric named directory.usage_metric or the application has no plan id, so its webhooks are sent without a rate limit. Map the plan in directory.plans");
            }
            return Ok(None);
        };
        let limits = self.api.plan_limits(plan_id).await?;
        let limit = crate::limits::plan_limit(&limits, metric_id);
        match limit {
            Some(limit) => {
                tracing::debug!(service, %plan, plan_id, limit = limit.limit, period = limit.period.as_str(), "Rate limit read from the 3scale application plan")
            }
            None => {
                if self.first_warning(&format!("plan:{plan}")) {
                    tracing::warn!(service, %plan, plan_id, %metric, "A 3scale application plan maps to no Hookline plan and has no minute, hour, day, week, month or year limit on the usage metric, so its webhooks are sent without a rate limit. Map the plan in directory.plans or set a limit in 3scale");
                }
            }
        }
        Ok(limit)
    }

    /// Inserts or updates the application's row unless it is unchanged.
    async fn write_row(
        &self,
        application: &ParsedApplication,
        product: &str,
    ) -> Result<(), StoreError> {
        let fingerprint = fingerprint(application, product);
        let written = self
            .written
            .lock()
            .expect("written lock")
            .get(&application.id)
            == Some(&fingerprint);
        if written {
            return Ok(());
        }
        let row = Application {
            id: application.id.clone(),
            name: application.name.clone(),
            product: product.to_owned(),
            plan: application.plan.clone(),
            webhook_url: application.webhook_url.clone(),
            secret: SigningSecret::generate(),
            state: application.state,
            created_at: OffsetDateTime::now_utc(),
        };
        self.store.upsert_application(&row).await?;
        self.written
            .lock()
            .expect("written lock")
            .insert(application.id.clone(), fingerprint);
        Ok(())
    }

    fn warn_skipped(&self, service: u64, id: Option<u64>, reason: Missing) {
        let key = format!("app:{service}:{id:?}:{reason:?}");
        if !self.first_warning(&key) {
            return;
        }
        let reason = match reason {
            Missing::Id => "it has no id".to_owned(),
            Missing::WebhookUrl => {
                format!("field {} is missing", self.settings.webhook_url_field)
            }
            Missing::Secret => format!("field {} is missing", self.settings.secret_field),
        };
        tracing::warn!(service, application = ?id, %reason, "A 3scale application receives no webhooks");
    }

    fn first_warning(&self, key: &str) -> bool {
        self.warned
            .lock()
            .expect("warned lock")
            .insert(key.to_owned())
    }
}

/// Returns the wait after a failed load before the next one.
fn backoff(settings: &ThreescaleSettings) -> Duration {
    settings.cache_ttl.min(MAX_BACKOFF)
}

/// Hash of the stored columns of an application's row.
fn fingerprint(application: &ParsedApplication, product: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    application.name.hash(&mut hasher);
    product.hash(&mut hasher);
    application.plan.hash(&mut hasher);
    application.webhook_url.hash(&mut hasher);
    application.state.as_str().hash(&mut hasher);
    hasher.finish()
}

#[async_trait]
impl Directory for ThreescaleDirectory {
    async fn subscribers(&self, product: &str) -> Result<Arc<[ApplicationId]>, DirectoryError> {
        let Some(&service) = self.settings.services.get(product) else {
            if self.first_warning(&format!("product:{product}")) {
                tracing::warn!(product, "Product has no 3scale service in directory.services; its events go to no application");
            }
            return Ok(Arc::from([]));
        };
        Ok(self.snapshot(service).await?.subscribers.clone())
    }

    async fn endpoint(&self, id: &ApplicationId) -> Result<Option<Arc<Endpoint>>, DirectoryError> {
        let Some((service, _)) = parse_application_id(id) else {
            return Ok(None);
        };
        if self.settings.product_of(service).is_none() {
            return Ok(None);
        }
        Ok(self.snapshot(service).await?.endpoints.get(id).cloned())
    }

    /// Expires each service's list in this process, so the next lookup
    /// reloads it. With the Redis tier, that reload reuses a list in Redis
    /// younger than the TTL but applies the current limits of the Hookline
    /// plans, which are what a change in Hookline can affect. Changes made
    /// in 3scale still take up to the TTL to arrive, as without Redis.
    fn invalidate(&self) {
        self.cache.expire();
    }
}
