//! A per-service cache that keeps serving the last good value while loads
//! fail, for a bounded time.
//!
//! A value younger than the TTL is served as is. An older one is reloaded by
//! one caller at a time. When the load fails, the old value is served as
//! long as it is younger than `stale_for`, and the next load waits for the
//! backoff, so an outage of 3scale costs one timeout per backoff, not one
//! per lookup. Callers that find a load under way serve the old value
//! instead of waiting for it.
//!
//! A load may also return a copy that another process read earlier, such
//! as the list in Redis. The copy keeps its age, so it counts as fresh, and
//! then as servable, only for what is left of the TTL and of `stale_for`.

use std::collections::HashMap;
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

/// The result of a load that produced a value.
pub(crate) enum Loaded<T> {
    /// A value that was `age` old when the load returned: zero when read
    /// from the source, more for a copy that another process read earlier.
    Value { value: T, age: Duration },
    /// Another process is reading the source. `value`, a copy `age` old, is
    /// served and no load starts before `retry_in` has passed.
    Deferred {
        value: T,
        age: Duration,
        retry_in: Duration,
    },
}

impl<T> Loaded<T> {
    /// Wraps a value read from the source just now.
    pub(crate) fn fresh(value: T) -> Self {
        Self::Value {
            value,
            age: Duration::ZERO,
        }
    }
}

/// A failed load, with an older copy to serve when one was found.
pub(crate) struct Failed<T> {
    pub(crate) error: String,
    /// A copy of the value and its age. It replaces the cached value when
    /// it is younger.
    pub(crate) fallback: Option<(T, Duration)>,
}

impl<T> Failed<T> {
    pub(crate) fn new(error: impl ToString) -> Self {
        Self {
            error: error.to_string(),
            fallback: None,
        }
    }
}

/// A cached value and how old it is.
struct Entry<T> {
    value: Arc<T>,
    stored_at: Instant,
    /// Age of the value when it was stored.
    age_at_store: Duration,
}

impl<T> Entry<T> {
    fn age(&self) -> Duration {
        self.age_at_store + self.stored_at.elapsed()
    }
}

struct Slot<T> {
    entry: Option<Entry<T>>,
    /// Set by [`StaleCache::expire`]: reload on next use even within the TTL.
    expired: bool,
    /// After a failed or deferred load, no new load starts before this instant.
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            entry: None,
            expired: false,
            retry_at: None,
            last_error: None,
        }
    }
}

impl<T> Slot<T> {
    /// Replaces the entry with `value` unless the entry is younger.
    fn offer(&mut self, value: T, age: Duration) {
        let younger = match &self.entry {
            Some(entry) => age < entry.age(),
            None => true,
        };
        if younger {
            self.entry = Some(Entry {
                value: Arc::new(value),
                stored_at: Instant::now(),
                age_at_store: age,
            });
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
    pub(crate) async fn get<F, Fut>(&self, key: u64, load: F) -> Result<Arc<T>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded<T>, Failed<T>>>,
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
            Ok(Loaded::Value { value, age }) => Ok(self.store(key, value, age)),
            Ok(Loaded::Deferred {
                value,
                age,
                retry_in,
            }) => self.defer(key, value, age, retry_in),
            Err(failure) => self.fail(key, failure),
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
        let entry = slot.entry.as_ref()?;
        (!slot.expired && entry.age() < self.policy.ttl).then(|| entry.value.clone())
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
        let entry = slots.get(&key)?.entry.as_ref()?;
        (entry.age() < self.policy.stale_for).then(|| entry.value.clone())
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

    fn store(&self, key: u64, value: T, age: Duration) -> Arc<T> {
        let value = Arc::new(value);
        let mut slots = self.slots.lock().expect("cache lock");
        let slot = slots.entry(key).or_default();
        if slot.last_error.is_some() {
            tracing::info!(
                service = key,
                "3scale answers again; applications refreshed"
            );
        }
        *slot = Slot {
            entry: Some(Entry {
                value: value.clone(),
                stored_at: Instant::now(),
                age_at_store: age,
            }),
            ..Slot::default()
        };
        metrics::counter!("hookline_threescale_refresh_total", "result" => "ok").increment(1);
        value
    }

    /// Keeps the younger of `value` and the cached value, and serves it
    /// without loading until `retry_in` has passed.
    fn defer(
        &self,
        key: u64,
        value: T,
        age: Duration,
        retry_in: Duration,
    ) -> Result<Arc<T>, String> {
        {
            let mut slots = self.slots.lock().expect("cache lock");
            let slot = slots.entry(key).or_default();
            slot.offer(value, age);
            slot.expired = false;
            slot.retry_at = Some(Instant::now() + retry_in);
        }
        self.serve_stale(key)
    }

    fn fail(&self, key: u64, failure: Failed<T>) -> Result<Arc<T>, String> {
        metrics::counter!("hookline_threescale_refresh_total", "result" => "error").increment(1);
        let Failed { error, fallback } = failure;
        let age = {
            let mut slots = self.slots.lock().expect("cache lock");
            let slot = slots.entry(key).or_default();
            if let Some((value, age)) = fallback {
                slot.offer(value, age);
            }
            slot.retry_at = Some(Instant::now() + self.policy.backoff);
            slot.last_error = Some(error.clone());
            slot.entry.as_ref().map(Entry::age)
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

    type Outcome = Result<Loaded<u32>, Failed<u32>>;

    async fn ok(value: u32) -> Outcome {
        Ok(Loaded::fresh(value))
    }

    async fn failing() -> Outcome {
        Err(Failed::new("HTTP 500"))
    }

    /// Fails and offers a copy `age_ms` old.
    async fn failing_with_copy(value: u32, age_ms: u64) -> Outcome {
        Err(Failed {
            error: "HTTP 500".to_owned(),
            fallback: Some((value, Duration::from_millis(age_ms))),
        })
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
        let value = cache.get(1, || async { panic!("no load during backoff") as Outcome });
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

    #[tokio::test]
    async fn failure_without_value_serves_younger_copy() {
        let cache = cache(0, 60_000, 0);
        assert_eq!(
            *cache.get(1, || failing_with_copy(7, 100)).await.unwrap(),
            7
        );
    }

    #[tokio::test]
    async fn older_copy_does_not_replace_value() {
        let cache = cache(0, 60_000, 0);
        cache.get(1, || ok(1)).await.unwrap();
        let served = cache.get(1, || failing_with_copy(7, 30_000)).await.unwrap();
        assert_eq!(*served, 1);
    }

    #[tokio::test]
    async fn copy_past_stale_for_is_not_served() {
        let cache = cache(0, 1_000, 0);
        assert!(cache.get(1, || failing_with_copy(7, 2_000)).await.is_err());
    }

    #[tokio::test]
    async fn copy_keeps_its_age() {
        // A copy 50 ms old with a TTL of 80 ms is fresh for 30 ms more.
        let cache = cache(80, 60_000, 0);
        let copy = || async {
            Ok(Loaded::Value {
                value: 7,
                age: Duration::from_millis(50),
            })
        };
        assert_eq!(*cache.get(1, copy).await.unwrap(), 7);
        assert_eq!(*cache.get(1, || ok(8)).await.unwrap(), 7);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(*cache.get(1, || ok(9)).await.unwrap(), 9);
    }

    #[tokio::test]
    async fn deferred_value_is_served_without_loading() {
        let cache = cache(0, 60_000, 0);
        let deferred = || async {
            Ok(Loaded::Deferred {
                value: 7,
                age: Duration::from_millis(10),
                retry_in: Duration::from_secs(60),
            })
        };
        assert_eq!(*cache.get(1, deferred).await.unwrap(), 7);
        let value = cache.get(1, || async {
            panic!("no load while another process reads") as Outcome
        });
        assert_eq!(*value.await.unwrap(), 7);
    }
}
