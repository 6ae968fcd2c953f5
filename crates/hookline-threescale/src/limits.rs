//! Turns the usage limits of a 3scale application plan into a Hookline
//! rate limit, for plans that map to no Hookline plan.
//!
//! 3scale limits a metric per `minute`, `hour`, `day`, `week`, `month`,
//! `year` or `eternity`, in calendar periods. Hookline windows are fixed
//! lengths of a second, minute, hour or day, so:
//!
//! - `minute`, `hour` and `day` keep their value and period.
//! - `week`, `month` and `year` become a daily limit of the value divided
//!   by the most days the period can have (7, 31, 366), rounded down and at
//!   least 1. This never sends more than 3scale's limit in one period
//!   unless the value is smaller than that number of days.
//! - `eternity` has no window and is left out.
//!
//! Hookline applies one limit per plan, so of several limits on the metric
//! the one with the lowest average rate applies.

use crate::api::PlanLimitFields;
use hookline_core::{LimitPeriod, OverLimit, PlanLimit};

/// Seconds in a Hookline period, for comparing limits of different periods.
fn period_seconds(period: LimitPeriod) -> u64 {
    match period {
        LimitPeriod::Second => 1,
        LimitPeriod::Minute => 60,
        LimitPeriod::Hour => 3600,
        LimitPeriod::Day => 86_400,
    }
}

/// Converts one 3scale limit, or returns `None` for an `eternity` limit or
/// an unknown period.
///
/// NOTE: a value of 0, which disables the metric in 3scale, stays 0, so the
/// plan's deliveries are deferred window after window and never sent.
fn convert(limit: &PlanLimitFields) -> Option<PlanLimit> {
    let per_day = |days: u64| match limit.value {
        0 => 0,
        value => (value / days).max(1),
    };
    let (value, period) = match limit.period.as_str() {
        "minute" => (limit.value, LimitPeriod::Minute),
        "hour" => (limit.value, LimitPeriod::Hour),
        "day" => (limit.value, LimitPeriod::Day),
        "week" => (per_day(7), LimitPeriod::Day),
        "month" => (per_day(31), LimitPeriod::Day),
        "year" => (per_day(366), LimitPeriod::Day),
        _ => return None,
    };
    Some(PlanLimit {
        limit: value,
        period,
        over_limit: OverLimit::Defer,
    })
}

/// Returns the rate limit of a plan from its 3scale `limits` on metric
/// `metric_id`, or `None` when it has no limit on that metric that a
/// Hookline window can express. Limits of other metrics are ignored.
pub(crate) fn plan_limit(limits: &[PlanLimitFields], metric_id: u64) -> Option<PlanLimit> {
    limits
        .iter()
        .filter(|limit| limit.metric_id == metric_id)
        .filter_map(convert)
        .min_by(|a, b| {
            // a.limit / a.seconds < b.limit / b.seconds, without division.
            let left = u128::from(a.limit) * u128::from(period_seconds(b.period));
            let right = u128::from(b.limit) * u128::from(period_seconds(a.period));
            left.cmp(&right)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(metric_id: u64, period: &str, value: u64) -> PlanLimitFields {
        PlanLimitFields {
            metric_id,
            period: period.to_owned(),
            value,
        }
    }

    #[test]
    fn periods_map_to_windows() {
        let cases = [
            ("minute", 10, 10, LimitPeriod::Minute),
            ("hour", 100, 100, LimitPeriod::Hour),
            ("day", 1000, 1000, LimitPeriod::Day),
            ("week", 700, 100, LimitPeriod::Day),
            ("month", 3100, 100, LimitPeriod::Day),
            ("year", 36_600, 100, LimitPeriod::Day),
            ("week", 3, 1, LimitPeriod::Day),
            ("month", 0, 0, LimitPeriod::Day),
            ("hour", 0, 0, LimitPeriod::Hour),
        ];
        for (period, value, expected, window) in cases {
            let converted = plan_limit(&[limit(1, period, value)], 1).unwrap();
            assert_eq!(converted.limit, expected, "{value} per {period}");
            assert_eq!(converted.period, window, "{value} per {period}");
            assert_eq!(converted.over_limit, OverLimit::Defer);
        }
    }

    #[test]
    fn eternity_and_unknown_periods_are_left_out() {
        assert_eq!(plan_limit(&[limit(1, "eternity", 5)], 1), None);
        assert_eq!(plan_limit(&[limit(1, "fortnight", 5)], 1), None);
    }

    #[test]
    fn other_metrics_are_ignored() {
        assert_eq!(plan_limit(&[limit(2, "hour", 5)], 1), None);
        let chosen = plan_limit(&[limit(2, "minute", 1), limit(1, "hour", 50)], 1).unwrap();
        assert_eq!(chosen.limit, 50);
        assert_eq!(chosen.period, LimitPeriod::Hour);
    }

    #[test]
    fn lowest_average_rate_applies() {
        // 10 per minute is 14,400 per day, so 1,000 per day is lower.
        let limits = [limit(1, "minute", 10), limit(1, "day", 1000)];
        let chosen = plan_limit(&limits, 1).unwrap();
        assert_eq!(chosen.limit, 1000);
        assert_eq!(chosen.period, LimitPeriod::Day);
    }
}
