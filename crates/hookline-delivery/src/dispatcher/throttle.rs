//! The rate-limit step of the policy chain: before each attempt, including
//! retries, one notification is counted against the application's plan.

use super::outcome::metered;
use super::Dispatcher;
use crate::recorder::Finished;
use hookline_core::directory::Endpoint;
use hookline_core::limit::{Acquisition, LimitWindow, RateLimit, RATE_LIMITED};
use hookline_core::queue::{Leased, Settlement};
use hookline_core::store::{AttemptOutcome, DeliveryUpdate};
use hookline_core::usage::UsageKind;
use hookline_core::{Attempt, AttemptResult, OverLimit, PlanLimit};
use std::time::Duration;
use time::OffsetDateTime;

/// How long a task waits when the limiter fails. Nothing is sent without a
/// check, so a limiter outage delays deliveries instead of exceeding limits.
const LIMITER_RETRY: Duration = Duration::from_secs(5);

/// Whether an attempt may go ahead.
pub(super) enum Admission {
    Send(Leased),
    /// The task was throttled or postponed; this is its finished unit.
    Done(Box<Finished>),
}

impl Dispatcher {
    /// Counts one notification to `endpoint` against its plan's limit.
    pub(super) async fn admit(&self, lease: Leased, endpoint: &Endpoint) -> Admission {
        let Some(plan_limit) = endpoint.limit else {
            return Admission::Send(lease);
        };
        let limit = RateLimit {
            limit: plan_limit.limit,
            window: self
                .settings
                .limit_period_override
                .unwrap_or(plan_limit.period.duration()),
        };
        match self.limiter.acquire(&endpoint.application_id, limit).await {
            Ok(Acquisition::Allowed) => Admission::Send(lease),
            Ok(Acquisition::Throttled { window }) => Admission::Done(Box::new(
                self.throttled(lease, endpoint, plan_limit, window),
            )),
            Err(error) => {
                tracing::warn!(%error, delivery_id = %lease.task.delivery_id, application_id = %endpoint.application_id, retry_in = ?LIMITER_RETRY, "Rate limit check failed; delivery postponed");
                Admission::Done(Box::new(self.postpone(lease, LIMITER_RETRY)))
            }
        }
    }

    /// Defers the task to the end of the full window, without counting an
    /// attempt, or dead-letters it, as the plan's `over_limit` requires.
    fn throttled(
        &self,
        lease: Leased,
        endpoint: &Endpoint,
        plan_limit: PlanLimit,
        window: LimitWindow,
    ) -> Finished {
        let dead = plan_limit.over_limit == OverLimit::DeadLetter;
        let usage = metered(
            endpoint,
            UsageKind::Throttled {
                window,
                limit: plan_limit.limit,
                dead,
            },
        );
        if !dead {
            tracing::debug!(delivery_id = %lease.task.delivery_id, application_id = %endpoint.application_id, plan = %endpoint.plan, retry_at = %window.end, "Rate limit reached; delivery deferred to the next window");
            let attempts_made = lease.task.attempts_made;
            return Finished {
                outcome: None,
                settlement: Settlement::Retry {
                    lease,
                    due_at: window.end,
                    attempts_made,
                },
                usage: Some(usage),
            };
        }

        tracing::warn!(delivery_id = %lease.task.delivery_id, application_id = %endpoint.application_id, plan = %endpoint.plan, "Rate limit reached; delivery dead-lettered");
        let message = format!(
            "application {} reached the limit of its plan {:?}: {} notifications per {}",
            endpoint.application_id,
            endpoint.plan,
            plan_limit.limit,
            plan_limit.period.as_str()
        );
        Finished {
            outcome: Some(rate_limited_outcome(&lease, message)),
            settlement: Settlement::DeadLetter {
                lease,
                reason: RATE_LIMITED.to_owned(),
            },
            usage: Some(usage),
        }
    }
}

/// Builds the record of a delivery dead-lettered by its rate limit: an attempt
/// that sent nothing, with the error class `rate_limited`, and the delivery
/// dead with the reason `rate_limited`.
fn rate_limited_outcome(lease: &Leased, message: String) -> AttemptOutcome {
    let task = &lease.task;
    let attempt = Attempt {
        delivery_id: task.delivery_id.clone(),
        number: task.attempts_made + 1,
        started_at: OffsetDateTime::now_utc(),
        duration_ms: 0,
        result: AttemptResult::Error {
            class: RATE_LIMITED.to_owned(),
            message,
        },
        response_excerpt: None,
        response_truncated: false,
    };
    AttemptOutcome {
        attempt,
        update: DeliveryUpdate::Dead {
            reason: RATE_LIMITED.to_owned(),
        },
    }
}
