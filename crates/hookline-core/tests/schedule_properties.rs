//! Property tests of the retry schedule and of the in-process rate limiter,
//! against plain models of what each promises.

use hookline_core::limit::{
    from_unix_millis, Acquisition, LimitWindow, LocalRateLimiter, RateLimit,
};
use hookline_core::retry::RetryDecision;
use hookline_core::{ApplicationId, RetryPolicy};
use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

/// `interval + min(n^4, u32::MAX) × backoff_unit`, saturating at
/// `Duration::MAX`, computed in nanoseconds with 128-bit integers.
fn model_wait(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = u128::from(retry).pow(4).min(u128::from(u32::MAX));
    let nanos = policy.interval.as_nanos() + policy.backoff_unit.as_nanos() * factor;
    let seconds = nanos / 1_000_000_000;
    match u64::try_from(seconds) {
        Ok(seconds) => Duration::new(seconds, (nanos % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
    }
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (0u64..86_400_000, 0u64..86_400_000, 0u32..20).prop_map(|(interval, unit, max_retries)| {
        RetryPolicy {
            interval: Duration::from_millis(interval),
            backoff_unit: Duration::from_millis(unit),
            max_retries,
        }
    })
}

proptest! {
    #[test]
    fn wait_matches_formula(policy in policy(), retry in any::<u32>()) {
        prop_assert_eq!(policy.wait(retry), model_wait(&policy, retry));
    }

    #[test]
    fn waits_never_shrink(policy in policy(), retry in 0u32..u32::MAX) {
        prop_assert!(policy.wait(retry + 1) >= policy.wait(retry));
        prop_assert!(policy.wait(retry) >= policy.interval);
    }

    #[test]
    fn retries_until_max_then_gives_up(
        policy in policy(),
        attempts in 0u32..40,
        hint_ms in proptest::option::of(0u64..10_000_000),
    ) {
        let hint = hint_ms.map(Duration::from_millis);
        let decision = policy.after_failure(attempts, hint);
        if attempts == 0 || attempts > policy.max_retries {
            prop_assert_eq!(decision, RetryDecision::GiveUp);
        } else {
            let scheduled = policy.wait(attempts);
            let expected = hint.map_or(scheduled, |hint| hint.max(scheduled));
            prop_assert_eq!(decision, RetryDecision::RetryAfter(expected));
        }
    }

    #[test]
    fn total_span_sums_every_wait(policy in policy()) {
        let sum: Duration = (1..=policy.max_retries).map(|n| policy.wait(n)).sum();
        prop_assert_eq!(policy.total_span(), sum);
    }

    #[test]
    fn windows_contain_their_instant(at in any::<i64>(), length in 1i64..100_000_000_000) {
        let window = LimitWindow::containing(at, length);
        let start = at - at.rem_euclid(length);
        prop_assert_eq!(window.start, from_unix_millis(start));
        prop_assert_eq!(window.end, from_unix_millis(start.saturating_add(length)));
    }

    #[test]
    fn limiter_allows_exactly_the_limit_per_window(
        limit in 1u64..6,
        window_ms in 1u64..1_000,
        steps in proptest::collection::vec((0usize..3, 0i64..400), 1..200),
    ) {
        let limiter = LocalRateLimiter::new();
        let applications: Vec<ApplicationId> = (0..3).map(|_| ApplicationId::generate()).collect();
        let rate = RateLimit { limit, window: Duration::from_millis(window_ms) };
        let window_ms = i64::try_from(window_ms).unwrap();
        let mut counts: HashMap<(usize, i64), u64> = HashMap::new();
        let mut now = 1_700_000_000_000i64;
        for (application, advance) in steps {
            now += advance;
            let start = now - now.rem_euclid(window_ms);
            let count = counts.entry((application, start)).or_default();
            *count += 1;
            let answer = limiter.acquire_at(&applications[application], rate, from_unix_millis(now));
            if *count <= limit {
                prop_assert_eq!(answer, Acquisition::Allowed);
            } else {
                let window = LimitWindow::containing(now, window_ms);
                prop_assert_eq!(answer, Acquisition::Throttled { window });
            }
        }
    }
}
