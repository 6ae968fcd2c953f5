//! The rate-limit step of the policy chain: before each attempt, including
//! retries, one notification is counted against the application's plan.

use super::outcome::metered;
use super::Dispatcher;
use crate::egress::{NotSent, NotSentCause};
use crate::recorder::Finished;
use hookline_core::directory::Endpoint;
use hookline_core::limit::{
    unix_millis, window_millis, Acquisition, LimitWindow, RateLimit, RATE_LIMITED,
};
use hookline_core::queue::{Leased, Settlement};
use hookline_core::store::{AttemptOutcome, DeliveryUpdate};
use hookline_core::usage::UsageKind;
use hookline_core::{Attempt, AttemptResult, OverLimit, PlanLimit};
use std::time::Duration;
use time::OffsetDateTime;

/// How long a task waits when the limiter fails. Nothing is sent without a
/// check, so a limiter outage delays deliveries instead of exceeding limits.
const LIMITER_RETRY: Duration = Duration::from_secs(5);

/// How long a task waits when the egress sent nothing and gave no
/// `Retry-After`, such as while the egress gateway is unreachable.
const EGRESS_RETRY: Duration = Duration::from_secs(2);

/// Maximum wait after an egress sent nothing for a cause other than a plan
/// limit that this dispatcher's directory shows, whatever its `Retry-After`.
const MAX_EGRESS_RETRY: Duration = Duration::from_secs(60);

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
                self.throttled(lease, endpoint, plan_limit, window, window.end),
            )),
            Err(error) => {
                tracing::warn!(%error, delivery_id = %lease.task.delivery_id, application_id = %endpoint.application_id, retry_in = ?LIMITER_RETRY, "Rate limit check failed; delivery postponed");
                Admission::Done(Box::new(self.postpone(lease, LIMITER_RETRY)))
            }
        }
    }

    /// Handles an attempt that the egress did not send. Over the limit, the
    /// task is throttled as if the dispatcher had counted it, and otherwise
    /// it is postponed. Neither records an attempt or uses up a retry.
    pub(super) fn not_sent(
        &self,
        lease: Leased,
        endpoint: &Endpoint,
        not_sent: NotSent,
    ) -> Finished {
        let delivery_id = &lease.task.delivery_id;
        let application_id = &endpoint.application_id;
        metrics::counter!("hookline_egress_not_sent_total", "class" => not_sent.class).increment(1);
        let rate_limited = not_sent.cause == NotSentCause::RateLimited;
        if let (true, Some(plan_limit)) = (rate_limited, endpoint.limit) {
            let wait = not_sent.retry_after.unwrap_or(EGRESS_RETRY);
            let due_at = OffsetDateTime::now_utc() + wait;
            let window = self.window_ending_by(plan_limit, due_at);
            return self.throttled(lease, endpoint, plan_limit, window, due_at);
        }
        // A 429 for a plan without a limit in this dispatcher's directory
        // means that the two directories differ for a moment, so the
        // delivery waits for the `Retry-After` without metering.
        let wait = not_sent
            .retry_after
            .unwrap_or(EGRESS_RETRY)
            .clamp(Duration::from_secs(1), MAX_EGRESS_RETRY);
        tracing::warn!(%delivery_id, %application_id, class = not_sent.class, error = %not_sent.message, retry_in = ?wait, "Egress sent nothing; delivery postponed without counting an attempt");
        self.postpone(lease, wait)
    }

    /// Estimates the window that the egress found full from when it has
    /// room again: the window of the plan's length that ends at or before
    /// `due_at`. `Retry-After` has whole seconds, so `due_at` may fall up to
    /// a second after the window's end.
    fn window_ending_by(&self, plan_limit: PlanLimit, due_at: OffsetDateTime) -> LimitWindow {
        let length = self
            .settings
            .limit_period_override
            .unwrap_or(plan_limit.period.duration());
        let length_ms = window_millis(length);
        LimitWindow::containing(unix_millis(due_at) - length_ms.min(1000), length_ms)
    }

    /// Defers the task to `due_at`, the end of the full window, without
    /// counting an attempt, or dead-letters it, as the plan's `over_limit`
    /// requires.
    fn throttled(
        &self,
        lease: Leased,
        endpoint: &Endpoint,
        plan_limit: PlanLimit,
        window: LimitWindow,
        due_at: OffsetDateTime,
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
            tracing::debug!(delivery_id = %lease.task.delivery_id, application_id = %endpoint.application_id, plan = %endpoint.plan, retry_at = %due_at, "Rate limit reached; delivery deferred to the next window");
            let attempts_made = lease.task.attempts_made;
            return Finished {
                outcome: None,
                settlement: Settlement::Retry {
                    lease,
                    due_at,
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
