//! In-process limit on password checks per email, the [`SignInLimiter`] of
//! the embedded mode: after [`SIGN_IN_MAX_FAILURES`] counted checks within
//! [`SIGN_IN_WINDOW`], further attempts for that email are rejected until
//! the oldest one leaves the window.
//!
//! The counts live in this process only. The distributed mode counts in
//! Redis instead, so that all `hookline api` replicas share one limit.

use async_trait::async_trait;
use hookline_core::limit::LimitError;
use hookline_core::portal::{SignInLimiter, SIGN_IN_MAX_FAILURES, SIGN_IN_WINDOW};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Emails tracked at most; past that, entries whose attempts all left the
/// window are dropped.
const MAX_TRACKED: usize = 100_000;

/// Times of counted password checks per lowercased email.
#[derive(Debug, Default)]
pub(crate) struct SignInThrottle {
    /// Never held across an await.
    attempts: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SignInThrottle {
    /// Counts a password check of `email` at `now`, as
    /// [`SignInLimiter::begin_attempt`] describes.
    pub(crate) fn begin_attempt_at(&self, email: &str, now: Instant) -> Option<Duration> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if attempts.len() >= MAX_TRACKED {
            attempts.retain(|_, times| {
                prune(times, now);
                !times.is_empty()
            });
        }
        let times = attempts.entry(email.to_owned()).or_default();
        prune(times, now);
        if times.len() >= SIGN_IN_MAX_FAILURES as usize {
            let oldest = *times.front()?;
            return Some(SIGN_IN_WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        times.push_back(now);
        None
    }

    fn forget(&self, email: &str) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        attempts.remove(email);
    }
}

#[async_trait]
impl SignInLimiter for SignInThrottle {
    async fn begin_attempt(&self, email: &str) -> Result<Option<Duration>, LimitError> {
        Ok(self.begin_attempt_at(email, Instant::now()))
    }

    async fn clear(&self, email: &str) -> Result<(), LimitError> {
        self.forget(email);
        Ok(())
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|first| now.duration_since(*first) >= SIGN_IN_WINDOW)
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

    const MAX: usize = SIGN_IN_MAX_FAILURES as usize;

    #[test]
    fn sixth_attempt_is_blocked() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX {
            assert_eq!(throttle.begin_attempt_at("a@example.com", start), None);
        }
        let wait = throttle.begin_attempt_at("a@example.com", start);
        assert_eq!(wait, Some(SIGN_IN_WINDOW));
        assert_eq!(throttle.begin_attempt_at("b@example.com", start), None);
    }

    #[test]
    fn blocked_attempt_is_not_counted() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX {
            throttle.begin_attempt_at("a@example.com", start);
        }
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(throttle.begin_attempt_at("a@example.com", later).is_some());
        }
        let after_window = start + SIGN_IN_WINDOW;
        assert_eq!(
            throttle.begin_attempt_at("a@example.com", after_window),
            None
        );
    }

    #[test]
    fn attempts_expire_after_window() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX {
            throttle.begin_attempt_at("a@example.com", start);
        }
        let later = start + SIGN_IN_WINDOW;
        assert_eq!(throttle.begin_attempt_at("a@example.com", later), None);
    }

    #[tokio::test]
    async fn clear_forgets_attempts() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX {
            throttle.begin_attempt_at("a@example.com", start);
        }
        throttle.clear("a@example.com").await.unwrap();
        assert_eq!(throttle.begin_attempt_at("a@example.com", start), None);
    }

    #[test]
    fn minutes_round_up() {
        assert_eq!(minutes(Duration::from_secs(61)), 2);
        assert_eq!(minutes(Duration::from_secs(0)), 1);
    }
}
