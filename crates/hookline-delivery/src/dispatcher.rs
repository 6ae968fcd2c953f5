//! The dispatcher loop: lease due tasks, check each application's rate
//! limit, attempt them concurrently, decide retry or dead letter, and pass
//! outcomes to the recorder.

mod attempt_span;
mod avro_json;
mod endpoint_gate;
mod health;
mod outcome;
mod recovery;
mod resume;
mod throttle;

use crate::egress::{Egress, EgressOutcome};
use crate::recorder::{self, Finished};
use crate::retry_policy::SharedRetryPolicy;
use endpoint_gate::EndpointGate;
use hookline_core::directory::{Directory, Endpoint};
use hookline_core::formats::avro_json::AvroJsonConverter;
use hookline_core::limit::{LocalRateLimiter, RateLimiter};
use hookline_core::queue::{DeliveryQueue, Leased, Settlement};
use hookline_core::shared_database::SharedDatabase;
use hookline_core::store::Store;
use hookline_core::AttemptResult;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use throttle::Admission;
use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Settings of the dispatcher (`dispatcher.*` and `retry.*`).
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Attempts in flight at once across all endpoints.
    pub concurrency: usize,
    /// Attempts in flight at once to one endpoint (scheme, host and port).
    pub per_endpoint_concurrency: usize,
    /// How long a leased task stays invisible to other dispatchers. Must
    /// outlast the request timeout so a slow endpoint is not sent a second
    /// concurrent copy.
    pub visibility_timeout: Duration,
    /// Read after every failed attempt, so a reload applies to the next one.
    pub retry: SharedRetryPolicy,
    /// How long in-flight attempts may take to finish after shutdown starts.
    pub shutdown_grace: Duration,
    /// How long a task waits for a slot of its busy endpoint before it is
    /// put back in the queue without counting an attempt. A wait that times
    /// out marks the endpoint as congested (module `endpoint_gate`).
    pub busy_endpoint_delay: Duration,
    /// Maximum time one attempt may take (`delivery.timeout`), which paces
    /// the tasks of a congested endpoint.
    pub attempt_timeout: Duration,
    /// Replaces the window length of every plan, so tests can use short
    /// windows; `None` uses each plan's own period.
    pub limit_period_override: Option<Duration>,
    /// How long an endpoint may fail every attempt before its application
    /// is disabled (`delivery.disable_after`); `None` never disables for
    /// failures alone. A 410 Gone disables at once either way.
    pub disable_after: Option<Duration>,
    /// How long a delivery of a disabled application waits before the
    /// dispatcher looks at it again. Enabling the application makes its
    /// deliveries due within about `resume_poll`.
    pub disabled_recheck: Duration,
    /// How often the store is polled for applications that were enabled
    /// again, whose kept deliveries are then made due or enqueued again.
    pub resume_poll: Duration,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            concurrency: 256,
            per_endpoint_concurrency: 32,
            visibility_timeout: Duration::from_secs(60),
            retry: SharedRetryPolicy::default(),
            shutdown_grace: Duration::from_secs(20),
            busy_endpoint_delay: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(15),
            limit_period_override: None,
            disable_after: Some(Duration::from_secs(5 * 24 * 60 * 60)),
            disabled_recheck: Duration::from_secs(15 * 60),
            resume_poll: Duration::from_secs(1),
        }
    }
}

/// Takes due tasks and delivers them.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    queue: Arc<dyn DeliveryQueue>,
    directory: Arc<dyn Directory>,
    egress: Arc<dyn Egress>,
    limiter: Arc<dyn RateLimiter>,
    settings: DispatcherSettings,
    /// One semaphore per endpoint authority; the lock is never held across an await.
    endpoints: Mutex<HashMap<String, Arc<EndpointGate>>>,
    /// Failure streaks of endpoints as this process last saw them.
    health: health::HealthBook,
    /// Converts Avro payloads for applications that receive JSON.
    avro_json: std::sync::OnceLock<Arc<dyn AvroJsonConverter>>,
    /// Records finished work in one transaction when the store and the
    /// queue share a database.
    shared: std::sync::OnceLock<Arc<dyn SharedDatabase>>,
}

impl Dispatcher {
    /// Creates a dispatcher whose rate limits count in this process only.
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn DeliveryQueue>,
        directory: Arc<dyn Directory>,
        egress: Arc<dyn Egress>,
        settings: DispatcherSettings,
    ) -> Arc<Self> {
        let limiter = Arc::new(LocalRateLimiter::new());
        Self::with_limiter(store, queue, directory, egress, limiter, settings)
    }

    /// Creates a dispatcher that counts notifications with `limiter`, which
    /// may be shared with other processes.
    pub fn with_limiter(
        store: Arc<dyn Store>,
        queue: Arc<dyn DeliveryQueue>,
        directory: Arc<dyn Directory>,
        egress: Arc<dyn Egress>,
        limiter: Arc<dyn RateLimiter>,
        settings: DispatcherSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            queue,
            directory,
            egress,
            limiter,
            settings,
            endpoints: Mutex::new(HashMap::new()),
            health: health::HealthBook::default(),
            avro_json: std::sync::OnceLock::new(),
            shared: std::sync::OnceLock::new(),
        })
    }

    /// Records finished work through `shared`, which must hold this
    /// dispatcher's store and queue. Takes effect when [`Dispatcher::run`]
    /// starts; only the first call counts.
    pub fn set_shared_database(&self, shared: Arc<dyn SharedDatabase>) {
        let _ = self.shared.set(shared);
    }

    /// Delivers until `shutdown` is cancelled, then lets in-flight attempts
    /// finish within the grace period and records their outcomes.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (sender, receiver) = mpsc::channel(self.settings.concurrency * 2);
        let recorder = tokio::spawn(recorder::run(
            self.store.clone(),
            self.queue.clone(),
            self.shared.get().cloned(),
            receiver,
        ));
        let resumer = tokio::spawn(self.clone().resume_applications(shutdown.clone()));
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        tracing::info!(
            concurrency = self.settings.concurrency,
            "Dispatcher started"
        );

        while !shutdown.is_cancelled() {
            let free = match self.wait_for_slots(&slots, &shutdown).await {
                Some(free) => free,
                None => break,
            };
            let leased = tokio::select! {
                _ = shutdown.cancelled() => break,
                leased = self.queue.receive(free, self.settings.visibility_timeout, Duration::from_secs(1)) => leased,
            };
            let leased = match leased {
                Ok(leased) => leased,
                Err(error) => {
                    tracing::warn!(%error, "Receiving from the delivery queue failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let leased = self.drop_finished(leased, &sender).await;
            for lease in leased {
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let dispatcher = self.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let finished = dispatcher.process(lease).await;
                    let _ = sender.send(finished).await;
                    drop(permit);
                });
            }
        }

        self.drain(&slots).await;
        let _ = resumer.await;
        drop(sender);
        let _ = recorder.await;
        tracing::info!("Dispatcher stopped");
    }

    /// Waits until at least one slot is free; returns how many are.
    async fn wait_for_slots(
        &self,
        slots: &Arc<Semaphore>,
        shutdown: &CancellationToken,
    ) -> Option<usize> {
        if slots.available_permits() == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                permit = slots.acquire() => drop(permit),
            }
        }
        Some(slots.available_permits().max(1))
    }

    async fn drain(&self, slots: &Arc<Semaphore>) {
        let all = u32::try_from(self.settings.concurrency).unwrap_or(u32::MAX);
        let grace = self.settings.shutdown_grace;
        match tokio::time::timeout(grace, slots.acquire_many(all)).await {
            Ok(_) => tracing::info!("In-flight deliveries finished"),
            Err(_) => tracing::warn!(
                in_flight = self.settings.concurrency - slots.available_permits(),
                ?grace,
                "Shutdown grace period ended with deliveries in flight; their leases expire and they are retried"
            ),
        }
    }

    /// Attempts one leased task and decides what happens next.
    async fn process(&self, lease: Leased) -> Finished {
        let task = &lease.task;
        let mut endpoint = match self.directory.endpoint(&task.application_id).await {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => return self.application_missing(lease),
            Err(error) => {
                tracing::warn!(%error, delivery_id = %task.delivery_id, "Endpoint lookup failed; retrying later");
                return self.postpone(lease, Duration::from_secs(5));
            }
        };
        if !endpoint.active && self.enabled_since_cached(&task.application_id).await {
            endpoint = match self.directory.endpoint(&task.application_id).await {
                Ok(Some(endpoint)) => endpoint,
                Ok(None) => return self.application_missing(lease),
                Err(error) => {
                    tracing::warn!(%error, delivery_id = %task.delivery_id, "Endpoint lookup failed; retrying later");
                    return self.postpone(lease, Duration::from_secs(5));
                }
            };
        }
        if !endpoint.active {
            // Deliveries of a disabled application are kept until it is enabled.
            return self.postpone(lease, self.settings.disabled_recheck);
        }
        // A copy of the task with the payload as this application receives
        // it; the queue keeps the producer's bytes for later attempts.
        let converted = match self.convert_payload(&lease.task).await {
            avro_json::Payload::AsProduced => None,
            avro_json::Payload::Converted(task) => Some(task),
            avro_json::Payload::Postpone(delay) => return self.postpone(lease, delay),
            avro_json::Payload::Failed(error) => return self.conversion_failed(lease, error),
        };

        let gate = self.endpoint_gate(&endpoint);
        let _permit = match gate
            .enter(
                self.settings.busy_endpoint_delay,
                &lease.task.application_id,
            )
            .await
        {
            endpoint_gate::Entry::Send(permit) => permit,
            endpoint_gate::Entry::Postpone(delay) => return self.postpone(lease, delay),
        };
        // The limit is checked once the endpoint slot is taken, so a task
        // postponed for a busy endpoint does not use up its window. An
        // egress that counts limits itself reports a full window as not sent.
        let lease = if self.egress.counts_limits() {
            lease
        } else {
            match self.admit(lease, &endpoint).await {
                Admission::Send(lease) => lease,
                Admission::Done(finished) => return *finished,
            }
        };
        let span = attempt_span::open(&lease.task);
        let outcome = self
            .egress
            .try_attempt(converted.as_ref().unwrap_or(&lease.task), &endpoint)
            .instrument(span.clone())
            .await;
        attempt_span::record(&span, &outcome);
        let report = match outcome {
            EgressOutcome::Attempted(report) => report,
            EgressOutcome::NotSent(not_sent) => return self.not_sent(lease, &endpoint, not_sent),
        };
        let responded = matches!(report.result, AttemptResult::Response { .. });
        if let Some(recovery) = gate.attempt_ended(responded, report.duration, Instant::now()) {
            self.wake_postponed(&endpoint, recovery);
        }
        if let Some(cause) = self.check_health(&endpoint, &report).await {
            self.disable(&endpoint, cause).await;
            return self.keep_for_disabled(lease, &endpoint, report);
        }
        self.conclude(lease, &endpoint, report)
    }

    /// Offers the task again after `delay` without counting an attempt.
    fn postpone(&self, lease: Leased, delay: Duration) -> Finished {
        let attempts_made = lease.task.attempts_made;
        let due_at = OffsetDateTime::now_utc() + delay;
        Finished {
            outcome: None,
            settlement: Settlement::Retry {
                lease,
                due_at,
                attempts_made,
            },
            usage: None,
        }
    }

    fn endpoint_gate(&self, endpoint: &Endpoint) -> Arc<EndpointGate> {
        let key = authority(&endpoint.url);
        let mut endpoints = self.endpoints.lock().expect("endpoint map lock");
        endpoints
            .entry(key)
            .or_insert_with(|| {
                Arc::new(EndpointGate::new(
                    self.settings.per_endpoint_concurrency,
                    self.settings.attempt_timeout,
                ))
            })
            .clone()
    }
}

/// Scheme, host and port of a URL: the unit of per-endpoint concurrency.
fn authority(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or(""),
            parsed.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_owned(),
    }
}
