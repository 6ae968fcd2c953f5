//! Per-application rate limits in fixed windows.
//!
//! A window of length `w` covers `[k·w, (k+1)·w)` in Unix milliseconds, so
//! every process that agrees on the clock agrees on the windows. Each
//! acquisition counts one notification in the current window. The first
//! `limit` of a window are allowed, and the rest are throttled until the
//! window ends. Throttled acquisitions still count, so the count minus the
//! limit is how many notifications were over the limit in that window.

use crate::ApplicationId;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

/// Reason and error class of a delivery dead-lettered by its plan's limit.
pub const RATE_LIMITED: &str = "rate_limited";

/// At most `limit` notifications per window of length `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub window: Duration,
}

/// One fixed window, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitWindow {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl LimitWindow {
    /// Returns the window of length `window_ms` (at least 1) that contains
    /// `at_ms`, both in Unix milliseconds.
    pub fn containing(at_ms: i64, window_ms: i64) -> Self {
        let window_ms = window_ms.max(1);
        let start_ms = at_ms - at_ms.rem_euclid(window_ms);
        Self {
            start: from_unix_millis(start_ms),
            end: from_unix_millis(start_ms.saturating_add(window_ms)),
        }
    }
}

/// Result of counting one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquisition {
    Allowed,
    /// The window is full; it has room again at `window.end`.
    Throttled {
        window: LimitWindow,
    },
}

/// Failure of the limiter's backend. The caller must not send the
/// notification, because the limit could not be checked.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter failed: {message}")]
pub struct LimitError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Counts notifications per application and window.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one notification to `application` in the current window and
    /// returns whether it may be sent now.
    async fn acquire(
        &self,
        application: &ApplicationId,
        limit: RateLimit,
    ) -> Result<Acquisition, LimitError>;
}

/// Converts a duration to whole milliseconds for window arithmetic,
/// saturating at `i64::MAX` and raising zero to 1.
pub fn window_millis(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Returns the Unix milliseconds of `at`, saturating far outside `i64`.
pub fn unix_millis(at: OffsetDateTime) -> i64 {
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

/// Converts Unix milliseconds to a time, clamping to the range `time` supports.
pub fn from_unix_millis(millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).unwrap_or(
        if millis < 0 {
            OffsetDateTime::UNIX_EPOCH
        } else {
            time::PrimitiveDateTime::MAX.assume_utc()
        },
    )
}

/// Entries above which [`LocalRateLimiter`] drops the counts of ended windows.
const PRUNE_THRESHOLD: usize = 10_000;

/// Window start and count of one application and window length.
type Counts = HashMap<(ApplicationId, i64), (i64, u64)>;

/// The in-process limiter: exact within one process, and unaware of other
/// processes, which each count on their own.
#[derive(Default)]
pub struct LocalRateLimiter {
    /// Never held across an await.
    counts: Mutex<Counts>,
}

impl LocalRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one notification at `now`; [`RateLimiter::acquire`] passes the
    /// current time.
    pub fn acquire_at(
        &self,
        application: &ApplicationId,
        limit: RateLimit,
        now: OffsetDateTime,
    ) -> Acquisition {
        let window_ms = window_millis(limit.window);
        let now_ms = unix_millis(now);
        let window = LimitWindow::containing(now_ms, window_ms);
        let start_ms = unix_millis(window.start);

        let mut counts = self.counts.lock().expect("limiter lock");
        if counts.len() > PRUNE_THRESHOLD {
            counts.retain(|(_, length), (start, _)| start.saturating_add(*length) > now_ms);
        }
        let entry = counts
            .entry((application.clone(), window_ms))
            .or_insert((start_ms, 0));
        if entry.0 != start_ms {
            *entry = (start_ms, 0);
        }
        entry.1 += 1;
        if entry.1 <= limit.limit {
            Acquisition::Allowed
        } else {
            Acquisition::Throttled { window }
        }
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn acquire(
        &self,
        application: &ApplicationId,
        limit: RateLimit,
    ) -> Result<Acquisition, LimitError> {
        Ok(self.acquire_at(application, limit, OffsetDateTime::now_utc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> OffsetDateTime {
        from_unix_millis(millis)
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn windows_align_to_multiples_of_their_length() {
        let window = LimitWindow::containing(125_500, 60_000);
        assert_eq!(window.start, at(120_000));
        assert_eq!(window.end, at(180_000));
        let before_epoch = LimitWindow::containing(-1, 1000);
        assert_eq!(before_epoch.start, at(-1000));
    }

    #[test]
    fn local_limiter_throttles_past_limit() {
        let limiter = LocalRateLimiter::new();
        let app = ApplicationId::generate();
        let limit = RateLimit {
            limit: 3,
            window: MINUTE,
        };
        for n in 0..3 {
            let answer = limiter.acquire_at(&app, limit, at(60_000 + n));
            assert_eq!(answer, Acquisition::Allowed, "notification {n}");
        }
        let throttled = limiter.acquire_at(&app, limit, at(61_000));
        let Acquisition::Throttled { window } = throttled else {
            panic!("the fourth notification is throttled: {throttled:?}");
        };
        assert_eq!(window.end, at(120_000));
        let next = limiter.acquire_at(&app, limit, at(120_000));
        assert_eq!(next, Acquisition::Allowed, "the next window has room");
    }

    #[test]
    fn local_limiter_counts_applications_apart() {
        let limiter = LocalRateLimiter::new();
        let limit = RateLimit {
            limit: 1,
            window: MINUTE,
        };
        let first = ApplicationId::generate();
        let second = ApplicationId::generate();
        assert_eq!(
            limiter.acquire_at(&first, limit, at(0)),
            Acquisition::Allowed
        );
        assert_eq!(
            limiter.acquire_at(&second, limit, at(0)),
            Acquisition::Allowed
        );
        assert!(matches!(
            limiter.acquire_at(&first, limit, at(1)),
            Acquisition::Throttled { .. }
        ));
    }

    #[test]
    fn local_limiter_is_exact_under_threads() {
        let limiter = std::sync::Arc::new(LocalRateLimiter::new());
        let app = ApplicationId::generate();
        let limit = RateLimit {
            limit: 100,
            window: Duration::from_secs(3600),
        };
        let now = at(3_600_000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                let app = app.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| limiter.acquire_at(&app, limit, now) == Acquisition::Allowed)
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 100);
    }
}
