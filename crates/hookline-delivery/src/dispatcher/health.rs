//! Endpoint health: an endpoint that responds with 410 Gone, or fails every
//! attempt for longer than `disable_after`, gets its application disabled.
//! Its deliveries are then kept, not attempted and not dead-lettered, until
//! the application is enabled again.

use super::outcome::metered;
use super::Dispatcher;
use crate::egress::AttemptReport;
use crate::recorder::Finished;
use hookline_core::directory::Endpoint;
use hookline_core::endpoint_health::{DisableCause, Disablement};
use hookline_core::queue::{Leased, Settlement};
use hookline_core::store::{AttemptOutcome, DeliveryUpdate};
use hookline_core::usage::UsageKind;
use hookline_core::{ApplicationId, Attempt, AttemptResult};
use std::collections::HashMap;
use std::sync::Mutex;
use time::OffsetDateTime;

/// Status that disables an endpoint at once.
const GONE: u16 = 410;

/// The failure streak of one endpoint as this process last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streak {
    /// The last attempt succeeded and the store has no streak.
    Healthy,
    /// Every attempt since this time failed.
    FailingSince(OffsetDateTime),
}

/// Failure streaks by application. The store keeps the streak that counts;
/// this copy saves a write per attempt, so the store is written only when a
/// streak starts or ends, or when this process has not seen the endpoint yet.
#[derive(Debug, Default)]
pub(super) struct HealthBook {
    /// Never held across an await.
    streaks: Mutex<HashMap<ApplicationId, Streak>>,
}

impl HealthBook {
    fn get(&self, application: &ApplicationId) -> Option<Streak> {
        self.streaks
            .lock()
            .expect("health book lock")
            .get(application)
            .copied()
    }

    fn set(&self, application: &ApplicationId, streak: Streak) {
        self.streaks
            .lock()
            .expect("health book lock")
            .insert(application.clone(), streak);
    }

    fn forget(&self, application: &ApplicationId) {
        self.streaks
            .lock()
            .expect("health book lock")
            .remove(application);
    }
}

impl Dispatcher {
    /// Updates the endpoint's failure streak with one attempt and returns
    /// the cause when the endpoint must be disabled. A store failure is
    /// logged and leaves the endpoint enabled.
    pub(super) async fn check_health(
        &self,
        endpoint: &Endpoint,
        report: &AttemptReport,
    ) -> Option<DisableCause> {
        let application = &endpoint.application_id;
        if report.result.is_success() {
            if self.health.get(application) != Some(Streak::Healthy) {
                match self.store.record_endpoint_success(application).await {
                    Ok(()) => self.health.set(application, Streak::Healthy),
                    Err(error) => {
                        tracing::warn!(%error, application_id = %application, "Recording a recovered endpoint failed")
                    }
                }
            }
            return None;
        }
        if report.result == (AttemptResult::Response { status: GONE }) {
            return Some(DisableCause::Gone);
        }

        let limit = self.settings.disable_after?;
        let since = match self.health.get(application) {
            Some(Streak::FailingSince(since)) => since,
            _ => self.streak_start(application, report.started_at).await?,
        };
        if OffsetDateTime::now_utc() - since < limit {
            return None;
        }
        // Another dispatcher may have seen a success since this process
        // cached the streak, so the store decides.
        let since = self.streak_start(application, report.started_at).await?;
        (OffsetDateTime::now_utc() - since >= limit)
            .then_some(DisableCause::FailingSince { since, limit })
    }

    /// Records a failure in the store and returns the start of the streak.
    async fn streak_start(
        &self,
        application: &ApplicationId,
        failed_at: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        match self
            .store
            .record_endpoint_failure(application, failed_at)
            .await
        {
            Ok(Some(since)) => {
                self.health.set(application, Streak::FailingSince(since));
                Some(since)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, application_id = %application, "Recording a failing endpoint failed");
                None
            }
        }
    }

    /// Disables the endpoint's application and emits the `endpoint.disabled`
    /// operational event: a warning log line and the
    /// `hookline_endpoints_disabled_total` counter. The stored reason and
    /// time are shown by `GET /api/v1/applications/{id}`.
    pub(super) async fn disable(&self, endpoint: &Endpoint, cause: DisableCause) {
        let application = &endpoint.application_id;
        let disablement = Disablement {
            reason: cause.reason(),
            disabled_at: OffsetDateTime::now_utc(),
        };
        match self
            .store
            .disable_application(application, &disablement)
            .await
        {
            Ok(true) => {
                metrics::counter!("hookline_endpoints_disabled_total", "cause" => cause.as_str())
                    .increment(1);
                tracing::warn!(
                    event = "endpoint.disabled",
                    application_id = %application,
                    url = %endpoint.url,
                    cause = cause.as_str(),
                    reason = %disablement.reason,
                    disabled_at = %disablement.disabled_at,
                    "Endpoint disabled; its deliveries are kept until the application is enabled"
                );
            }
            Ok(false) => {
                tracing::debug!(application_id = %application, "Endpoint already disabled");
            }
            Err(error) => {
                tracing::warn!(%error, application_id = %application, cause = cause.as_str(), "Disabling an endpoint failed");
            }
        }
        self.health.forget(application);
        self.directory.invalidate();
    }

    /// Records the attempt that disabled the endpoint and keeps its delivery
    /// pending, due again after `disabled_recheck` like every delivery of a
    /// disabled application, whatever the retry schedule would decide.
    pub(super) fn keep_for_disabled(
        &self,
        lease: Leased,
        endpoint: &Endpoint,
        report: AttemptReport,
    ) -> Finished {
        let task = &lease.task;
        let number = task.attempts_made + 1;
        let latency = report.duration;
        let due_at = OffsetDateTime::now_utc() + self.settings.disabled_recheck;
        let attempt = Attempt {
            delivery_id: task.delivery_id.clone(),
            number,
            started_at: report.started_at,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            result: report.result,
            response_excerpt: report.response_excerpt,
            response_truncated: report.response_truncated,
        };
        let outcome = AttemptOutcome {
            attempt,
            update: DeliveryUpdate::Retrying {
                next_attempt_at: due_at,
            },
        };
        Finished {
            outcome: Some(outcome),
            settlement: Settlement::Retry {
                lease,
                due_at,
                attempts_made: number,
            },
            usage: Some(metered(
                endpoint,
                UsageKind::Failed {
                    latency,
                    dead: false,
                },
            )),
        }
    }
}
