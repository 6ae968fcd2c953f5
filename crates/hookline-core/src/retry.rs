//! The retry schedule: the first attempt is immediate, and retry `n`
//! (1-based) waits `interval + n^4 × backoff_unit`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Retry settings (`retry.*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Fixed part of every wait.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Multiplied by `n^4` for retry `n`.
    #[serde(with = "humantime_serde")]
    pub backoff_unit: Duration,
    /// Retries after the first attempt; the task is dead-lettered after the last.
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            backoff_unit: Duration::from_secs(1),
            max_retries: 5,
        }
    }
}

/// Next step after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Retry after this wait.
    RetryAfter(Duration),
    /// No retries left.
    GiveUp,
}

impl RetryPolicy {
    /// Wait before retry `n` (1-based), saturating instead of overflowing.
    pub fn wait(&self, retry: u32) -> Duration {
        let factor = u64::from(retry).saturating_pow(4);
        let factor = u32::try_from(factor).unwrap_or(u32::MAX);
        self.interval
            .saturating_add(self.backoff_unit.saturating_mul(factor))
    }

    /// Decides the next step after `attempts_made` failed attempts. A
    /// `Retry-After` from the endpoint wins when it is longer than the
    /// scheduled wait.
    pub fn after_failure(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
    ) -> RetryDecision {
        let next_retry = attempts_made;
        if next_retry == 0 || next_retry > self.max_retries {
            return RetryDecision::GiveUp;
        }
        let scheduled = self.wait(next_retry);
        let wait = retry_after.map_or(scheduled, |hint| hint.max(scheduled));
        RetryDecision::RetryAfter(wait)
    }

    /// Sum of all waits: the time from the first attempt to the last.
    pub fn total_span(&self) -> Duration {
        (1..=self.max_retries).map(|n| self.wait(n)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_matches_published_waits() {
        let policy = RetryPolicy::default();
        let waits: Vec<u64> = (1..=5).map(|n| policy.wait(n).as_secs()).collect();
        assert_eq!(waits, [61, 76, 141, 316, 685]);

        let totals: Vec<u64> = waits
            .iter()
            .scan(0, |sum, wait| {
                *sum += wait;
                Some(*sum)
            })
            .collect();
        assert_eq!(totals, [61, 137, 278, 594, 1279]);
        assert_eq!(policy.total_span().as_secs(), 1279);
    }

    #[test]
    fn gives_up_after_max_retries() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.after_failure(1, None),
            RetryDecision::RetryAfter(Duration::from_secs(61))
        );
        assert_eq!(
            policy.after_failure(5, None),
            RetryDecision::RetryAfter(Duration::from_secs(685))
        );
        assert_eq!(policy.after_failure(6, None), RetryDecision::GiveUp);
    }

    #[test]
    fn retry_after_only_extends_wait() {
        let policy = RetryPolicy::default();
        let longer = Duration::from_secs(600);
        let shorter = Duration::from_secs(5);
        assert_eq!(
            policy.after_failure(1, Some(longer)),
            RetryDecision::RetryAfter(longer)
        );
        assert_eq!(
            policy.after_failure(1, Some(shorter)),
            RetryDecision::RetryAfter(Duration::from_secs(61))
        );
    }

    #[test]
    fn huge_retry_counts_saturate() {
        let policy = RetryPolicy {
            max_retries: u32::MAX,
            ..RetryPolicy::default()
        };
        assert!(policy.wait(u32::MAX) >= Duration::from_secs(60));
    }

    #[test]
    fn zero_retries_dead_letters_first_failure() {
        let policy = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.after_failure(1, None), RetryDecision::GiveUp);
    }
}
