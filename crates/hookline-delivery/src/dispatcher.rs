//! The dispatcher loop: lease due tasks, attempt them concurrently, decide
//! retry or dead letter, and pass outcomes to the recorder.

use crate::egress::{AttemptReport, Egress};
use crate::recorder::{self, Finished};
use hookline_core::directory::{Directory, Endpoint};
use hookline_core::queue::{DeliveryQueue, Leased, Settlement};
use hookline_core::retry::RetryDecision;
use hookline_core::store::{AttemptOutcome, DeliveryUpdate, Store};
use hookline_core::{Attempt, AttemptResult, RetryPolicy};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

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
    pub retry: RetryPolicy,
    /// How long in-flight attempts may take to finish after shutdown starts.
    pub shutdown_grace: Duration,
    /// How long a task waits for a slot of its busy endpoint before it is
    /// put back in the queue for the same delay, without counting an attempt.
    pub busy_endpoint_delay: Duration,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            concurrency: 256,
            per_endpoint_concurrency: 32,
            visibility_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(20),
            busy_endpoint_delay: Duration::from_millis(200),
        }
    }
}

/// Takes due tasks and delivers them.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    queue: Arc<dyn DeliveryQueue>,
    directory: Arc<dyn Directory>,
    egress: Arc<dyn Egress>,
    settings: DispatcherSettings,
    /// One semaphore per endpoint authority; the lock is never held across an await.
    endpoints: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn DeliveryQueue>,
        directory: Arc<dyn Directory>,
        egress: Arc<dyn Egress>,
        settings: DispatcherSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            queue,
            directory,
            egress,
            settings,
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// Delivers until `shutdown` is cancelled, then lets in-flight attempts
    /// finish within the grace period and records their outcomes.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (sender, receiver) = mpsc::channel(self.settings.concurrency * 2);
        let recorder = tokio::spawn(recorder::run(
            self.store.clone(),
            self.queue.clone(),
            receiver,
        ));
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
        let endpoint = match self.directory.endpoint(&task.application_id).await {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => return self.application_missing(lease),
            Err(error) => {
                tracing::warn!(%error, delivery_id = %task.delivery_id, "Endpoint lookup failed; retrying later");
                return self.postpone(lease, Duration::from_secs(5));
            }
        };
        if !endpoint.active {
            // Deliveries of a disabled application are kept until it is enabled.
            return self.postpone(lease, Duration::from_secs(60));
        }

        // Waiting briefly for a busy endpoint keeps its pipeline full; waiting
        // longer would let one slow endpoint hold every global slot.
        let endpoint_slots = self.endpoint_slots(&endpoint);
        let wait = self.settings.busy_endpoint_delay;
        let _permit = match tokio::time::timeout(wait, endpoint_slots.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return self.postpone(lease, wait),
        };
        let report = self.egress.attempt(task, &endpoint).await;
        self.conclude(lease, report)
    }

    /// Turns an attempt report into the attempt record and the next step.
    fn conclude(&self, lease: Leased, report: AttemptReport) -> Finished {
        let task = &lease.task;
        metrics::histogram!("hookline_attempt_duration_seconds")
            .record(report.duration.as_secs_f64());
        let number = task.attempts_made + 1;
        let attempt = Attempt {
            delivery_id: task.delivery_id.clone(),
            number,
            started_at: report.started_at,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            result: report.result.clone(),
            response_excerpt: report.response_excerpt,
            response_truncated: report.response_truncated,
        };

        if report.result.is_success() {
            tracing::trace!(delivery_id = %task.delivery_id, attempt = number, "Delivered");
            metrics::counter!("hookline_deliveries_total", "outcome" => "delivered").increment(1);
            let outcome = AttemptOutcome {
                attempt,
                update: DeliveryUpdate::Delivered,
            };
            return Finished {
                outcome: Some(outcome),
                settlement: Settlement::Ack { lease },
            };
        }

        let error = describe(&report.result);
        match self
            .settings
            .retry
            .after_failure(number, report.retry_after)
        {
            RetryDecision::RetryAfter(wait) => {
                let due_at = OffsetDateTime::now_utc() + wait;
                metrics::counter!("hookline_deliveries_total", "outcome" => "retry").increment(1);
                tracing::debug!(delivery_id = %task.delivery_id, attempt = number, %error, ?wait, "Attempt failed; retry scheduled");
                let update = DeliveryUpdate::Retrying {
                    next_attempt_at: due_at,
                };
                let outcome = AttemptOutcome { attempt, update };
                let settlement = Settlement::Retry {
                    lease,
                    due_at,
                    attempts_made: number,
                };
                Finished {
                    outcome: Some(outcome),
                    settlement,
                }
            }
            RetryDecision::GiveUp => {
                metrics::counter!("hookline_deliveries_total", "outcome" => "dead").increment(1);
                tracing::warn!(delivery_id = %task.delivery_id, attempts = number, %error, "Delivery dead-lettered");
                let update = DeliveryUpdate::Dead {
                    reason: error.clone(),
                };
                let outcome = AttemptOutcome { attempt, update };
                Finished {
                    outcome: Some(outcome),
                    settlement: Settlement::DeadLetter {
                        lease,
                        reason: error,
                    },
                }
            }
        }
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
        }
    }

    /// Dead-letters a delivery whose application was deleted, with that
    /// reason, so it stays visible and can be replayed.
    fn application_missing(&self, lease: Leased) -> Finished {
        let task = &lease.task;
        let reason = format!("application {} does not exist", task.application_id);
        tracing::warn!(delivery_id = %task.delivery_id, application_id = %task.application_id, "Delivery dead-lettered: application not found");
        let attempt = Attempt {
            delivery_id: task.delivery_id.clone(),
            number: task.attempts_made + 1,
            started_at: OffsetDateTime::now_utc(),
            duration_ms: 0,
            result: AttemptResult::Error {
                class: "application_not_found".into(),
                message: reason.clone(),
            },
            response_excerpt: None,
            response_truncated: false,
        };
        let outcome = AttemptOutcome {
            attempt,
            update: DeliveryUpdate::Dead {
                reason: reason.clone(),
            },
        };
        Finished {
            outcome: Some(outcome),
            settlement: Settlement::DeadLetter { lease, reason },
        }
    }

    fn endpoint_slots(&self, endpoint: &Endpoint) -> Arc<Semaphore> {
        let key = authority(&endpoint.url);
        let mut endpoints = self.endpoints.lock().expect("endpoint map lock");
        endpoints
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_endpoint_concurrency)))
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

fn describe(result: &AttemptResult) -> String {
    match result {
        AttemptResult::Response { status } => format!("endpoint answered HTTP {status}"),
        AttemptResult::Error { class, message } => format!("{class}: {message}"),
    }
}
