//! A per-service cache that keeps serving the last good value while loads
//! fail, for a bounded time.
//!
//! A value younger than the TTL is served as is. An older one is reloaded by
//! one caller at a time. When the load fails, the old value is served as
//! long as it is younger than `stale_for`, and the next load waits for the
//! backoff, so an outage of 3scale costs one timeout per backoff, not one
//! per lookup. Callers that find a load under way serve the old value
//! instead of waiting for it.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Timing of a [`StaleCache`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CachePolicy {
    pub(crate) ttl: Duration,
    pub(crate) stale_for: Duration,
    /// Wait after a failed load before the next one.
    pub(crate) backoff: Duration,
}

struct Slot<T> {
    value: Option<(Arc<T>, Instant)>,
    /// Set by [`StaleCache::expire`]: reload on next use even within the TTL.
    expired: bool,
    /// After a failed load, no new load starts before this instant.
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            value: None,
            expired: false,
            retry_at: None,
            last_error: None,
        }
    }
}

/// Values keyed by service id. The slot map's lock is never held across an
/// await; the per-key async locks serialize loads.
pub(crate) struct StaleCache<T> {
    policy: CachePolicy,
    slots: Mutex<HashMap<u64, Slot<T>>>,
    loads: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

impl<T> StaleCache<T> {
    pub(crate) fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            slots: Mutex::new(HashMap::new()),
            loads: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the value of `key`, loading it with `load` when it is older
    /// than the TTL. Fails with the load's message only when no value young
    /// enough to serve stale exists.
    pub(crate) async fn get<F, Fut, E>(&self, key: u64, load: F) -> Result<Arc<T>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        if let Some(fresh) = self.fresh(key) {
            return Ok(fresh);
        }
        if let Some(waiting) = self.backing_off(key) {
            return waiting;
        }
        let lock = self.load_lock(key);
        let _guard = match lock.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => match self.servable(key) {
                Some(stale) => return Ok(stale),
                None => lock.lock_owned().await,
            },
        };
        // Another caller may have loaded while this one waited.
        if let Some(fresh) = self.fresh(key) {
            return Ok(fresh);
        }
        if let Some(waiting) = self.backing_off(key) {
            return waiting;
        }
        match load().await {
            Ok(value) => Ok(self.store(key, value)),
            Err(error) => self.fail(key, error.to_string()),
        }
    }

    /// Makes every value reload on its next use. Values stay servable while
    /// that reload fails.
    pub(crate) fn expire(&self) {
        let mut slots = self.slots.lock().expect("cache lock");
        for slot in slots.values_mut() {
            slot.expired = true;
        }
    }

    fn fresh(&self, key: u64) -> Option<Arc<T>> {
        let slots = self.slots.lock().expect("cache lock");
        let slot = slots.get(&key)?;
        let (value, loaded_at) = slot.value.as_ref()?;
        (!slot.expired && loaded_at.elapsed() < self.policy.ttl).then(|| value.clone())
    }

    /// Returns the value to serve while the last failure's backoff runs, or
    /// the failure itself when no value can be served.
    fn backing_off(&self, key: u64) -> Option<Result<Arc<T>, String>> {
        let retry_at = self.slots.lock().expect("cache lock").get(&key)?.retry_at?;
        if Instant::now() >= retry_at {
            return None;
        }
        Some(self.serve_stale(key))
    }

    fn servable(&self, key: u64) -> Option<Arc<T>> {
        let slots = self.slots.lock().expect("cache lock");
        let (value, loaded_at) = slots.get(&key)?.value.as_ref()?;
        (loaded_at.elapsed() < self.policy.stale_for).then(|| value.clone())
    }

    fn serve_stale(&self, key: u64) -> Result<Arc<T>, String> {
        match self.servable(key) {
            Some(stale) => {
                metrics::counter!("hookline_threescale_stale_served_total").increment(1);
                Ok(stale)
            }
            None => {
                let slots = self.slots.lock().expect("cache lock");
                let error = slots.get(&key).and_then(|slot| slot.last_error.clone());
                Err(error.unwrap_or_else(|| "3scale has not answered yet".to_owned()))
            }
        }
    }

    fn store(&self, key: u64, value: T) -> Arc<T> {
        let value = Arc::new(value);
        let mut slots = self.slots.lock().expect("cache lock");
        let slot = slots.entry(key).or_default();
        if slot.retry_at.is_some() {
            tracing::info!(
                service = key,
                "3scale answers again; applications refreshed"
            );
        }
        *slot = Slot {
            value: Some((value.clone(), Instant::now())),
            ..Slot::default()
        };
        metrics::counter!("hookline_threescale_refresh_total", "result" => "ok").increment(1);
        value
    }

    fn fail(&self, key: u64, error: String) -> Result<Arc<T>, String> {
        metrics::counter!("hookline_threescale_refresh_total", "result" => "error").increment(1);
        let age = {
            let mut slots = self.slots.lock().expect("cache lock");
            let slot = slots.entry(key).or_default();
            slot.retry_at = Some(Instant::now() + self.policy.backoff);
            slot.last_error = Some(error.clone());
            slot.value
                .as_ref()
                .map(|(_, loaded_at)| loaded_at.elapsed())
        };
        let serving = matches!(age, Some(age) if age < self.policy.stale_for);
        tracing::warn!(
            service = key,
            %error,
            stale_age = ?age,
            serving_stale = serving,
            retry_in = ?self.policy.backoff,
            "Reading applications from 3scale failed"
        );
        self.serve_stale(key)
    }

    fn load_lock(&self, key: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut loads = self.loads.lock().expect("load lock map");
        loads.entry(key).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl_ms: u64, stale_ms: u64, backoff_ms: u64) -> StaleCache<u32> {
        StaleCache::new(CachePolicy {
            ttl: Duration::from_millis(ttl_ms),
            stale_for: Duration::from_millis(stale_ms),
            backoff: Duration::from_millis(backoff_ms),
        })
    }

    async fn ok(value: u32) -> Result<u32, String> {
        Ok(value)
    }

    async fn failing() -> Result<u32, String> {
        Err("HTTP 500".to_owned())
    }

    #[tokio::test]
    async fn fresh_value_is_not_reloaded() {
        let cache = cache(60_000, 60_000, 10);
        assert_eq!(*cache.get(1, || ok(1)).await.unwrap(), 1);
        assert_eq!(*cache.get(1, || ok(2)).await.unwrap(), 1);
        cache.expire();
        assert_eq!(*cache.get(1, || ok(3)).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn failure_serves_stale_then_backs_off() {
        let cache = cache(0, 60_000, 60_000);
        cache.get(1, || ok(1)).await.unwrap();
        assert_eq!(*cache.get(1, failing).await.unwrap(), 1);
        // Within the backoff the loader is not called at all.
        let value = cache.get(1, || async {
            panic!("no load during backoff") as Result<u32, String>
        });
        assert_eq!(*value.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn failure_without_value_is_an_error() {
        let cache = cache(0, 60_000, 0);
        assert_eq!(cache.get(1, failing).await.unwrap_err(), "HTTP 500");
    }

    #[tokio::test]
    async fn stale_value_expires_after_stale_for() {
        let cache = cache(0, 20, 0);
        cache.get(1, || ok(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(cache.get(1, failing).await.is_err());
    }
}
