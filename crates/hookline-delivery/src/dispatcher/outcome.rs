//! What follows an attempt: the attempt record, the delivery's next state,
//! the queue settlement and the usage it meters.

use super::Dispatcher;
use crate::egress::AttemptReport;
use crate::recorder::Finished;
use hookline_core::directory::Endpoint;
use hookline_core::queue::{Leased, Settlement};
use hookline_core::retry::RetryDecision;
use hookline_core::store::{AttemptOutcome, DeliveryUpdate};
use hookline_core::usage::{UsageEvent, UsageKind};
use hookline_core::{Attempt, AttemptResult};
use time::OffsetDateTime;

impl Dispatcher {
    /// Turns an attempt report into the attempt record and the next step.
    pub(super) fn conclude(
        &self,
        lease: Leased,
        endpoint: &Endpoint,
        report: AttemptReport,
    ) -> Finished {
        let task = &lease.task;
        let latency = report.duration;
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
                usage: Some(metered(endpoint, UsageKind::Delivered { latency })),
            };
        }

        let error = describe(&report.result);
        match self
            .settings
            .retry
            .current()
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
                let dead = false;
                Finished {
                    outcome: Some(outcome),
                    settlement,
                    usage: Some(metered(endpoint, UsageKind::Failed { latency, dead })),
                }
            }
            RetryDecision::GiveUp => {
                metrics::counter!("hookline_deliveries_total", "outcome" => "dead").increment(1);
                tracing::warn!(delivery_id = %task.delivery_id, attempts = number, %error, "Delivery dead-lettered");
                let update = DeliveryUpdate::Dead {
                    reason: error.clone(),
                };
                let outcome = AttemptOutcome { attempt, update };
                let dead = true;
                Finished {
                    outcome: Some(outcome),
                    settlement: Settlement::DeadLetter {
                        lease,
                        reason: error,
                    },
                    usage: Some(metered(endpoint, UsageKind::Failed { latency, dead })),
                }
            }
        }
    }

    /// Dead-letters a delivery whose application was deleted, with that
    /// reason, so it stays visible and can be replayed.
    pub(super) fn application_missing(&self, lease: Leased) -> Finished {
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
            usage: None,
        }
    }
}

/// Builds the usage event of one notification to `endpoint` and counts it
/// in the metrics, which are labelled by plan and never by application.
pub(super) fn metered(endpoint: &Endpoint, kind: UsageKind) -> UsageEvent {
    let plan = endpoint.plan.clone();
    let outcome = match &kind {
        UsageKind::Delivered { .. } => "delivered",
        UsageKind::Failed { .. } => "failed",
        UsageKind::Throttled { dead, .. } => {
            let action = if *dead { "dead_letter" } else { "defer" };
            metrics::counter!("hookline_throttled_total", "plan" => plan.clone(), "over_limit" => action)
                .increment(1);
            "throttled"
        }
    };
    metrics::counter!("hookline_notifications_total", "plan" => plan.clone(), "outcome" => outcome)
        .increment(1);
    UsageEvent {
        application_id: endpoint.application_id.clone(),
        plan,
        at: OffsetDateTime::now_utc(),
        kind,
    }
}

fn describe(result: &AttemptResult) -> String {
    match result {
        AttemptResult::Response { status } => format!("endpoint answered HTTP {status}"),
        AttemptResult::Error { class, message } => format!("{class}: {message}"),
    }
}
