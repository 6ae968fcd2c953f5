//! Usage analytics: hourly usage per application, and the applications
//! that went over their plan's limit.

use crate::applications::find;
use crate::error::ApiError;
use crate::ApiState;
use axum::extract::{Query, State};
use axum::Json;
use hookline_core::limit::{unix_millis, LimitWindow};
use hookline_core::usage::{group_overages, HourlyUsage, Overage, UsageQuery};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};

/// Longest range one request may cover.
const MAX_RANGE: Duration = Duration::days(31);
/// Length of a usage bucket.
const HOUR_MS: i64 = 3_600_000;
/// Range covered when `from` is absent.
const DEFAULT_RANGE: Duration = Duration::hours(24);

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct UsageParams {
    /// Only this application (`app_…`); all applications when absent.
    application: Option<String>,
    /// RFC 3339 start, rounded down to the hour; default `to` minus 24 hours.
    from: Option<String>,
    /// RFC 3339 end, exclusive; default now.
    to: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct RangeParams {
    /// RFC 3339 start; default `to` minus 24 hours.
    from: Option<String>,
    /// RFC 3339 end, exclusive; default now.
    to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LatencyView {
    /// Sent attempts whose duration is counted.
    count: u64,
    /// Mean attempt duration in milliseconds; `null` without attempts.
    mean_ms: Option<f64>,
    max_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageBucketView {
    application_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    hour: OffsetDateTime,
    delivered: u64,
    failed_attempts: u64,
    throttled: u64,
    dead_lettered: u64,
    latency: LatencyView,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageReport {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    to: OffsetDateTime,
    /// Hours with usage, by application and then hour; hours without usage are left out.
    buckets: Vec<UsageBucketView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WindowView {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    end: OffsetDateTime,
    plan: String,
    limit: u64,
    /// Notifications over the limit in this window.
    over: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OverageView {
    application_id: String,
    /// `null` when the application no longer exists.
    application_name: Option<String>,
    /// Notifications over the limit in all windows together.
    over: u64,
    /// Oldest first.
    windows: Vec<WindowView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OverLimitReport {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    to: OffsetDateTime,
    /// Largest overage first.
    applications: Vec<OverageView>,
}

#[utoipa::path(get, path = "/api/v1/analytics/usage", tag = "analytics", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn usage(
    State(state): State<ApiState>,
    Query(params): Query<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let (from, to) = parse_range(params.from.as_deref(), params.to.as_deref())?;
    let from = LimitWindow::containing(unix_millis(from), HOUR_MS).start;
    let application = match &params.application {
        Some(id) => Some(find(&state, id).await?.id),
        None => None,
    };
    let query = UsageQuery {
        application,
        from,
        to,
    };
    let hours = state.store.usage(&query).await?;
    let buckets = hours.into_iter().map(bucket_view).collect();
    Ok(Json(UsageReport { from, to, buckets }))
}

#[utoipa::path(get, path = "/api/v1/analytics/over-limit", tag = "analytics", params(RangeParams),
    responses((status = 200, body = OverLimitReport), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn over_limit(
    State(state): State<ApiState>,
    Query(params): Query<RangeParams>,
) -> Result<Json<OverLimitReport>, ApiError> {
    let (from, to) = parse_range(params.from.as_deref(), params.to.as_deref())?;
    let windows = state.store.over_limit_windows(from, to).await?;
    let overages = group_overages(windows);
    let names: HashMap<String, String> = if overages.is_empty() {
        HashMap::new()
    } else {
        let applications = state.store.applications(None).await?;
        applications
            .into_iter()
            .map(|application| (application.id.to_string(), application.name))
            .collect()
    };
    let applications = overages
        .into_iter()
        .map(|overage| overage_view(overage, &names))
        .collect();
    Ok(Json(OverLimitReport {
        from,
        to,
        applications,
    }))
}

/// Parses `from` and `to`, with their defaults, and checks the range.
fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    let parse = |field: &str, text: &str| {
        OffsetDateTime::parse(text, &Rfc3339).map_err(|error| {
            ApiError::invalid(
                field,
                format!("{field} {text:?} is not an RFC 3339 time such as 2024-05-01T00:00:00Z: {error}"),
            )
        })
    };
    let to = match to {
        Some(text) => parse("to", text)?,
        None => OffsetDateTime::now_utc(),
    };
    let from = match from {
        Some(text) => parse("from", text)?,
        None => to - DEFAULT_RANGE,
    };
    if from >= to {
        return Err(ApiError::invalid("from", "from must be earlier than to"));
    }
    if to - from > MAX_RANGE {
        return Err(ApiError::invalid(
            "from",
            "the range from..to must not exceed 31 days; request longer periods in parts",
        ));
    }
    Ok((from, to))
}

fn bucket_view(hour: HourlyUsage) -> UsageBucketView {
    let counts = hour.counts;
    let mean_ms = (counts.latency_count > 0)
        .then(|| counts.latency_ms_sum as f64 / counts.latency_count as f64);
    UsageBucketView {
        application_id: hour.application_id.to_string(),
        hour: hour.hour,
        delivered: counts.delivered,
        failed_attempts: counts.failed_attempts,
        throttled: counts.throttled,
        dead_lettered: counts.dead_lettered,
        latency: LatencyView {
            count: counts.latency_count,
            mean_ms,
            max_ms: counts.latency_ms_max,
        },
    }
}

fn overage_view(overage: Overage, names: &HashMap<String, String>) -> OverageView {
    let application_id = overage.application_id.to_string();
    let windows = overage
        .windows
        .into_iter()
        .map(|window| WindowView {
            start: window.window.start,
            end: window.window.end,
            plan: window.plan,
            limit: window.limit,
            over: window.throttled,
        })
        .collect();
    OverageView {
        application_name: names.get(&application_id).cloned(),
        application_id,
        over: overage.total,
        windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_defaults_to_the_last_day() {
        let (from, to) = parse_range(None, Some("2024-05-02T00:00:00Z")).unwrap();
        assert_eq!(to - from, DEFAULT_RANGE);
    }

    #[test]
    fn range_rejects_bad_input() {
        assert!(parse_range(Some("yesterday"), None).is_err());
        let reversed = parse_range(Some("2024-05-02T00:00:00Z"), Some("2024-05-01T00:00:00Z"));
        assert!(reversed.is_err());
        let too_long = parse_range(Some("2024-01-01T00:00:00Z"), Some("2024-03-01T00:00:00Z"));
        assert!(too_long.is_err());
    }
}
