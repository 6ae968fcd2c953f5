//! The optional rate-limit step of `POST /v1/attempts`.
//!
//! By default a dispatcher counts each notification against its plan before
//! it posts the attempt, and the gateway counts nothing. With
//! `gateway.count_limits` the binary gives the gateway a [`RateLimiter`]
//! and dispatchers stop counting, so each notification counts once. The
//! gateway then responds with 429 and `Retry-After` (the end of the full
//! window, rounded up to whole seconds) when the plan's window is full.

use crate::GatewayError;
use hookline_core::directory::Endpoint;
use hookline_core::limit::{unix_millis, Acquisition, RateLimit, RateLimiter};
use hookline_core::queue::DeliveryTask;
use std::time::Duration;
use time::OffsetDateTime;

/// Counts one notification to `endpoint` when its plan has a limit, in
/// windows of `period_override` when it is set.
pub(crate) async fn admit(
    limiter: &dyn RateLimiter,
    task: &DeliveryTask,
    endpoint: &Endpoint,
    period_override: Option<Duration>,
) -> Result<(), GatewayError> {
    let Some(plan_limit) = endpoint.limit else {
        return Ok(());
    };
    let limit = RateLimit {
        limit: plan_limit.limit,
        window: period_override.unwrap_or(plan_limit.period.duration()),
    };
    match limiter.acquire(&endpoint.application_id, limit).await {
        Ok(Acquisition::Allowed) => Ok(()),
        Ok(Acquisition::Throttled { window }) => {
            let now = unix_millis(OffsetDateTime::now_utc());
            let wait_ms = (unix_millis(window.end) - now).max(0);
            let retry_after = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
            metrics::counter!("hookline_gateway_throttled_total").increment(1);
            tracing::debug!(delivery_id = %task.delivery_id, application_id = %endpoint.application_id, ?retry_after, "Gateway attempt rate-limited");
            Err(GatewayError::RateLimited {
                retry_after,
                reason: format!(
                    "plan {} allows {} notifications per {}",
                    endpoint.plan,
                    plan_limit.limit,
                    plan_limit.period.as_str()
                ),
            })
        }
        Err(error) => {
            tracing::warn!(%error, delivery_id = %task.delivery_id, "Gateway rate limit check failed; nothing sent");
            Err(GatewayError::LimiterUnavailable(error.to_string()))
        }
    }
}
