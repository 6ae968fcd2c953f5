//! The second cache tier: each service's application list in Redis, shared
//! by the replicas of a distributed deployment, so that they do not all
//! read 3scale and a replica that starts during a 3scale outage has a list.
//!
//! - Key `<redis.key_prefix>threescale:v1:<service>:<digest>`. The digest
//!   covers the settings that shape the parsed list (admin URL, field
//!   names, plan mapping, usage metric), so replicas configured differently
//!   never read each other's lists.
//! - Value: the list and the time it was read from 3scale, as JSON,
//!   encrypted as a whole with the newest key of `secrets.keys`
//!   (AES-256-GCM, bound to the key name). So Redis never contains a
//!   `user_key` in clear text, and a value that was not written with the
//!   key (such as a webhook URL changed in Redis) is rejected.
//! - Expiry: `directory.stale_for`, after which no replica may serve it.
//! - Key `<list key>:refresh`: a claim, written with `SET NX PX`, by the
//!   replica that reads 3scale when the list is older than
//!   `directory.cache_ttl`. The others serve the older list meanwhile.
//!
//! A list is written only after its applications' rows are in the state
//! store, which all replicas of a deployment share, so a replica that uses
//! a list from Redis does not write the rows again. It does read the
//! current limit of each Hookline plan in the list from the store, because
//! a plan may have changed since the list was written.
//!
//! A Redis failure does not fail a lookup that 3scale can serve. Each
//! failure is logged with the service id and counted in
//! `hookline_directory_redis_cache_total{result="error"}`, and the load
//! continues without Redis. A Redis that does not respond delays a load by
//! up to one command timeout, because the load skips Redis after a failed
//! command.

use crate::cache::{Failed, Loaded};
use crate::parse::ParsedApplication;
use crate::snapshot::{ApplicationList, Snapshot};
use crate::ThreescaleSettings;
use hookline_core::cipher::{CipherError, SecretCipher};
use hookline_core::store::Store;
use hookline_core::{LimitPeriod, OverLimit, PlanLimit};
use hookline_redis::{RedisClient, RedisError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Counter of lookups in Redis, by result. `hit` means a list younger than
/// the TTL was served without a request to 3scale. `miss` means 3scale was
/// requested. `stale` means an older list was offered as the fallback
/// while 3scale fails, or served while another replica refreshes it. `error` counts each failed Redis command
/// and each list that cannot be read.
const METRIC: &str = "hookline_directory_redis_cache_total";

/// Prefix of every encrypted value written by `SecretCipher::encrypt`.
/// `SecretCipher::decrypt` returns values without it unchanged, so
/// `SharedCache::read` rejects such values before decrypting.
const ENCRYPTED_PREFIX: &str = "enc1:";

/// Maximum wait before a replica that found another replica's claim reads
/// Redis again.
const MAX_DEFER: Duration = Duration::from_secs(1);

/// Reason a list cannot be read from Redis.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("the list value in Redis is not encrypted, so Hookline did not write it")]
    Unencrypted,
    #[error("decrypting the list in Redis failed: {0}. Every replica needs the same secrets.keys")]
    Cipher(#[from] CipherError),
    #[error("the list in Redis is not valid JSON for this Hookline version: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the list in Redis is for another service, {found}")]
    OtherService { found: u64 },
}

/// Rate limit of one plan, as serialized in a [`StoredList`].
#[derive(Serialize, Deserialize)]
struct StoredLimit {
    limit: u64,
    period: LimitPeriod,
    over_limit: OverLimit,
}

/// Contents of a list value in Redis, serialized as JSON and then encrypted.
#[derive(Serialize, Deserialize)]
struct StoredList {
    service: u64,
    /// Unix time in milliseconds at which the list was read from 3scale.
    fetched_at_ms: i64,
    applications: Vec<ParsedApplication>,
    /// Rate limit of each plan, by Hookline plan name.
    limits: Vec<(String, Option<StoredLimit>)>,
}

/// List read from Redis, with its age. The age compares the clock of the
/// replica that wrote the list with the clock of this one.
struct SharedCopy {
    list: ApplicationList,
    age: Duration,
}

/// The Redis tier of the 3scale directory's cache.
pub(crate) struct SharedCache {
    client: RedisClient,
    cipher: SecretCipher,
    /// State store, read for the current limits of Hookline plans.
    store: Arc<dyn Store>,
    /// Key namespace `threescale:v1:<settings digest>`, which precedes the
    /// service id.
    namespace: String,
    ttl: Duration,
    stale_for: Duration,
    /// Expiry of a refresh claim.
    claim_for: Duration,
}

impl SharedCache {
    pub(crate) fn new(
        client: RedisClient,
        cipher: SecretCipher,
        settings: &ThreescaleSettings,
        store: Arc<dyn Store>,
        claim_for: Duration,
    ) -> Self {
        Self {
            client,
            cipher,
            store,
            namespace: format!("threescale:v1:{}", settings_digest(settings)),
            ttl: settings.cache_ttl,
            stale_for: settings.stale_for,
            claim_for,
        }
    }

    /// Loads the list of `service` from Redis when the copy there is younger
    /// than the TTL. Otherwise it reads 3scale with `fetch` and writes the
    /// result to Redis. While another replica holds the refresh claim, the
    /// older copy is served instead. When `fetch` fails, a copy younger than
    /// `stale_for` is offered as the fallback.
    pub(crate) async fn load<F, Fut, E>(
        &self,
        service: u64,
        fetch: F,
    ) -> Result<Loaded<Snapshot>, Failed<Snapshot>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ApplicationList, E>>,
        E: Display,
    {
        let mut redis_up = true;
        let copy = match self.read(service).await {
            Ok(copy) => copy.filter(|copy| copy.age < self.stale_for),
            Err(error) => {
                redis_up = !matches!(error, ReadError::Redis(_));
                self.count_error(service, "read", &error);
                None
            }
        };
        let copy = match copy {
            Some(copy) if copy.age < self.ttl => {
                metrics::counter!(METRIC, "result" => "hit").increment(1);
                return Ok(Loaded::Value {
                    value: self.adopt(service, copy.list).await,
                    age: copy.age,
                });
            }
            other => other,
        };
        let copy = match copy {
            Some(copy) if redis_up => match self.claim(service).await {
                Ok(true) => Some(copy),
                Ok(false) => return Ok(self.defer(service, copy).await),
                Err(error) => {
                    redis_up = false;
                    self.count_error(service, "claim", &error);
                    Some(copy)
                }
            },
            other => other,
        };
        metrics::counter!(METRIC, "result" => "miss").increment(1);
        match fetch().await {
            Ok(list) => {
                if redis_up {
                    self.write(service, &list).await;
                }
                Ok(Loaded::fresh(list.into_snapshot()))
            }
            Err(error) => Err(self.fallback(service, error, copy).await),
        }
    }

    /// Serves the copy from Redis while another replica refreshes it from
    /// 3scale.
    async fn defer(&self, service: u64, copy: SharedCopy) -> Loaded<Snapshot> {
        metrics::counter!(METRIC, "result" => "stale").increment(1);
        tracing::debug!(service, age = ?copy.age, "Serving the list in Redis while another replica reads the applications from 3scale");
        Loaded::Deferred {
            value: self.adopt(service, copy.list).await,
            age: copy.age,
            retry_in: self.claim_for.min(MAX_DEFER),
        }
    }

    async fn fallback(
        &self,
        service: u64,
        error: impl Display,
        copy: Option<SharedCopy>,
    ) -> Failed<Snapshot> {
        let Some(copy) = copy else {
            return Failed::new(error);
        };
        metrics::counter!(METRIC, "result" => "stale").increment(1);
        tracing::info!(service, age = ?copy.age, "Reading 3scale failed, so offering the list in Redis as the fallback");
        Failed {
            error: error.to_string(),
            fallback: Some((self.adopt(service, copy.list).await, copy.age)),
        }
    }

    /// Builds the snapshot of a list from Redis with each plan's current
    /// limit from the state store. Plans missing from the store keep the
    /// limit read from 3scale. When the store fails, the plans not yet read
    /// keep the limits stored with the list.
    async fn adopt(&self, service: u64, mut list: ApplicationList) -> Snapshot {
        for (plan, limit) in list.limits.iter_mut() {
            match self.store.plan(plan).await {
                Ok(Some(current)) => *limit = current.rate_limit(),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(service, %plan, %error, "Reading a plan from the state store failed, so the remaining plans keep the limits stored with the list in Redis");
                    break;
                }
            }
        }
        list.into_snapshot()
    }

    fn key(&self, service: u64) -> String {
        format!("{}:{service}", self.namespace)
    }

    /// Returns the full key name, prefix included, that an encrypted value is
    /// bound to.
    fn owner(&self, key: &str) -> String {
        format!("{}{key}", self.client.key_prefix())
    }

    async fn read(&self, service: u64) -> Result<Option<SharedCopy>, ReadError> {
        let key = self.key(service);
        let Some(value) = self.client.get_value(&key).await? else {
            return Ok(None);
        };
        let sealed = std::str::from_utf8(&value).map_err(|_| ReadError::Unencrypted)?;
        if !sealed.starts_with(ENCRYPTED_PREFIX) {
            return Err(ReadError::Unencrypted);
        }
        let json = self.cipher.decrypt(sealed, &self.owner(&key))?;
        let stored: StoredList = serde_json::from_str(&json)?;
        if stored.service != service {
            return Err(ReadError::OtherService {
                found: stored.service,
            });
        }
        // NOTE: the age compares the clocks of two replicas. A writer whose
        // clock runs ahead of this one makes the list look younger than it
        // is, and a timestamp in the future gives an age of zero.
        let age_ms = unix_millis().saturating_sub(stored.fetched_at_ms).max(0);
        let age = Duration::from_millis(u64::try_from(age_ms).unwrap_or(u64::MAX));
        Ok(Some(SharedCopy {
            list: from_stored(stored),
            age,
        }))
    }

    /// Writes the list of `service`, read from 3scale just now.
    async fn write(&self, service: u64, list: &ApplicationList) {
        let key = self.key(service);
        let stored = to_stored(service, list);
        let json = serde_json::to_string(&stored).expect("the list serializes to JSON");
        let sealed = self.cipher.encrypt(&json, &self.owner(&key));
        let written = self
            .client
            .set_value(&key, sealed.as_bytes(), self.stale_for)
            .await;
        match written {
            Ok(()) => tracing::debug!(
                service,
                applications = list.applications.len(),
                "Stored the applications in Redis"
            ),
            Err(error) => self.count_error(service, "write", &error),
        }
    }

    /// Claims the refresh of `service`'s list. Returns false when another
    /// replica has the claim.
    async fn claim(&self, service: u64) -> Result<bool, RedisError> {
        let key = format!("{}:refresh", self.key(service));
        self.client
            .set_value_if_absent(&key, b"1", self.claim_for)
            .await
    }

    fn count_error(&self, service: u64, operation: &str, error: &dyn Display) {
        metrics::counter!(METRIC, "result" => "error").increment(1);
        tracing::warn!(
            service,
            operation,
            %error,
            "The Redis cache of 3scale applications failed, so the load continues with 3scale and this process's cache. Check that Redis is reachable"
        );
    }
}

/// Returns the first 8 bytes, in hex, of a SHA-256 digest of the settings
/// that shape the parsed list. The access token is left out because it
/// changes who reads, not what is read.
fn settings_digest(settings: &ThreescaleSettings) -> String {
    let mut digest = Sha256::new();
    let mut add = |text: &str| {
        digest.update((text.len() as u64).to_be_bytes());
        digest.update(text.as_bytes());
    };
    add(settings.admin_url.as_str());
    add(&settings.webhook_url_field);
    add(&settings.secret_field);
    add(&settings.usage_metric);
    for (threescale_plan, hookline_plan) in &settings.plans {
        add(threescale_plan);
        add(hookline_plan);
    }
    hex::encode(&digest.finalize()[..8])
}

fn unix_millis() -> i64 {
    let millis = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).unwrap_or(i64::MAX)
}

fn to_stored(service: u64, list: &ApplicationList) -> StoredList {
    let limits = list
        .limits
        .iter()
        .map(|(plan, limit)| {
            let limit = limit.map(|limit| StoredLimit {
                limit: limit.limit,
                period: limit.period,
                over_limit: limit.over_limit,
            });
            (plan.clone(), limit)
        })
        .collect();
    StoredList {
        service,
        fetched_at_ms: unix_millis(),
        applications: list.applications.clone(),
        limits,
    }
}

fn from_stored(stored: StoredList) -> ApplicationList {
    let limits = stored
        .limits
        .into_iter()
        .map(|(plan, limit)| {
            let limit = limit.map(|limit| PlanLimit {
                limit: limit.limit,
                period: limit.period,
                over_limit: limit.over_limit,
            });
            (plan, limit)
        })
        .collect();
    ApplicationList {
        applications: stored.applications,
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::ApplicationState;

    fn settings() -> ThreescaleSettings {
        ThreescaleSettings::new(
            "https://admin.example".parse().unwrap(),
            "t".into(),
            [("order-created".to_owned(), 42)].into(),
        )
    }

    #[test]
    fn digest_follows_parsing_settings() {
        let base = settings_digest(&settings());
        assert_eq!(base.len(), 16);
        let mut token_changed = settings();
        token_changed.access_token = "other".into();
        assert_eq!(
            settings_digest(&token_changed),
            base,
            "the token is left out"
        );
        let mut field_changed = settings();
        field_changed.secret_field = "app_key".into();
        assert_ne!(settings_digest(&field_changed), base);
        let mut plans_changed = settings();
        plans_changed.plans.insert("basic".into(), "free".into());
        assert_ne!(settings_digest(&plans_changed), base);
    }

    #[test]
    fn stored_list_round_trips() {
        let list = ApplicationList {
            applications: vec![ParsedApplication {
                id: crate::application_id(42, 7001),
                name: "Acme".into(),
                state: ApplicationState::Active,
                webhook_url: "https://hooks.acme.example/".into(),
                secret_text: "k1".into(),
                plan: "basic".into(),
                plan_id: Some(601),
            }],
            limits: [(
                "basic".to_owned(),
                Some(PlanLimit {
                    limit: 3,
                    period: LimitPeriod::Hour,
                    over_limit: OverLimit::Defer,
                }),
            )]
            .into(),
        };
        let json = serde_json::to_string(&to_stored(42, &list)).unwrap();
        let stored: StoredList = serde_json::from_str(&json).unwrap();
        assert_eq!(stored.service, 42);
        assert_eq!(from_stored(stored), list);
    }
}
