//! In-process limit on failed password checks per email: after
//! [`MAX_FAILURES`] failures within [`WINDOW`], further attempts for that
//! email are rejected until the oldest failure leaves the window.
//!
//! The counts live in this process only, so with several `hookline api`
//! replicas an attacker gets up to that many attempts per replica.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts allowed per email within [`WINDOW`].
pub(crate) const MAX_FAILURES: usize = 5;
/// The sliding window of [`MAX_FAILURES`].
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Emails tracked at most; past that, entries whose failures all left the
/// window are dropped.
const MAX_TRACKED: usize = 100_000;

/// Failure times per lowercased email.
#[derive(Debug, Default)]
pub(crate) struct SignInThrottle {
    /// Never held across an await.
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SignInThrottle {
    /// Returns how long `email` must wait before its next attempt, or
    /// `None` when it may try now.
    pub(crate) fn blocked_for(&self, email: &str, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = failures.get_mut(email)?;
        prune(times, now);
        if times.len() < MAX_FAILURES {
            return None;
        }
        let oldest = *times.front()?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    /// Records a failed password check for `email`.
    pub(crate) fn record_failure(&self, email: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, times| {
                prune(times, now);
                !times.is_empty()
            });
        }
        let times = failures.entry(email.to_owned()).or_default();
        prune(times, now);
        times.push_back(now);
    }

    /// Forgets the failures of `email` after a successful sign-in.
    pub(crate) fn clear(&self, email: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(email);
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|first| now.duration_since(*first) >= WINDOW)
    {
        times.pop_front();
    }
}

/// Formats a wait as whole minutes, rounded up, for messages.
pub(crate) fn minutes(wait: Duration) -> u64 {
    wait.as_secs().div_ceil(60).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixth_attempt_is_blocked() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(throttle.blocked_for("a@example.com", start), None);
            throttle.record_failure("a@example.com", start);
        }
        let wait = throttle.blocked_for("a@example.com", start);
        assert_eq!(wait, Some(WINDOW));
        assert_eq!(throttle.blocked_for("b@example.com", start), None);
    }

    #[test]
    fn failures_expire_after_window() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            throttle.record_failure("a@example.com", start);
        }
        let later = start + WINDOW;
        assert_eq!(throttle.blocked_for("a@example.com", later), None);
    }

    #[test]
    fn success_clears_failures() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            throttle.record_failure("a@example.com", start);
        }
        throttle.clear("a@example.com");
        assert_eq!(throttle.blocked_for("a@example.com", start), None);
    }

    #[test]
    fn minutes_round_up() {
        assert_eq!(minutes(Duration::from_secs(61)), 2);
        assert_eq!(minutes(Duration::from_secs(0)), 1);
    }
}
