//! The shared rate limiter against a real Redis server.

mod common;

use common::{connect, delete_keys, keys_under, random_prefix};
use hookline_core::limit::{unix_millis, Acquisition, RateLimit, RateLimiter};
use hookline_core::ApplicationId;
use hookline_redis::RedisRateLimiter;
use std::sync::Arc;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

fn now_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    since_epoch.as_millis() as i64
}

/// Sleeps past the end of the current hour when less than 10 s of it are
/// left, so a test's notifications all fall into one window.
async fn avoid_window_end() {
    let now = now_millis();
    let left = 3_600_000 - now.rem_euclid(3_600_000);
    if left < 10_000 {
        tokio::time::sleep(Duration::from_millis(left as u64 + 50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limiters_allow_exactly_the_limit() {
    let prefix = random_prefix();
    avoid_window_end().await;
    let application = ApplicationId::generate();
    let limit = RateLimit {
        limit: 100,
        window: HOUR,
    };
    // Four limiters with their own connections stand for four dispatchers.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let limiter = Arc::new(RedisRateLimiter::new(connect(&prefix).await));
        for _ in 0..40 {
            let limiter = limiter.clone();
            let application = application.clone();
            tasks.spawn(async move { limiter.acquire(&application, limit).await.unwrap() });
        }
    }
    let mut allowed = 0;
    let mut throttled = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        match answer.unwrap() {
            Acquisition::Allowed => allowed += 1,
            Acquisition::Throttled { window } => throttled.push(window),
        }
    }
    assert_eq!(allowed, 100);
    assert_eq!(throttled.len(), 60);
    let window = throttled[0];
    assert!(throttled.iter().all(|w| *w == window), "one window");
    assert_eq!(
        unix_millis(window.end) - unix_millis(window.start),
        3_600_000
    );
    assert_eq!(
        unix_millis(window.start) % 3_600_000,
        0,
        "aligned to the hour"
    );
    delete_keys(&prefix).await;
}

#[tokio::test]
async fn applications_and_window_lengths_count_apart() {
    let prefix = random_prefix();
    avoid_window_end().await;
    let limiter = RedisRateLimiter::new(connect(&prefix).await);
    let first = ApplicationId::generate();
    let second = ApplicationId::generate();
    let one_per_hour = RateLimit {
        limit: 1,
        window: HOUR,
    };
    assert_eq!(
        limiter.acquire(&first, one_per_hour).await.unwrap(),
        Acquisition::Allowed
    );
    assert!(matches!(
        limiter.acquire(&first, one_per_hour).await.unwrap(),
        Acquisition::Throttled { .. }
    ));
    assert_eq!(
        limiter.acquire(&second, one_per_hour).await.unwrap(),
        Acquisition::Allowed,
        "another application has its own count"
    );
    let one_per_day = RateLimit {
        limit: 1,
        window: Duration::from_secs(86_400),
    };
    assert_eq!(
        limiter.acquire(&first, one_per_day).await.unwrap(),
        Acquisition::Allowed,
        "a plan with another window length starts a new count"
    );
    assert_eq!(keys_under(&prefix).await.len(), 3);
    delete_keys(&prefix).await;
}

#[tokio::test]
async fn next_window_starts_a_new_count() {
    let prefix = random_prefix();
    let limiter = RedisRateLimiter::new(connect(&prefix).await);
    let application = ApplicationId::generate();
    let limit = RateLimit {
        limit: 2,
        window: Duration::from_millis(500),
    };
    // Start right after a window boundary so three calls share one window.
    let now = now_millis();
    tokio::time::sleep(Duration::from_millis(500 - now.rem_euclid(500) as u64 + 10)).await;
    let answers = [
        limiter.acquire(&application, limit).await.unwrap(),
        limiter.acquire(&application, limit).await.unwrap(),
        limiter.acquire(&application, limit).await.unwrap(),
    ];
    assert_eq!(answers[0], Acquisition::Allowed);
    assert_eq!(answers[1], Acquisition::Allowed);
    let Acquisition::Throttled { window } = answers[2] else {
        panic!("the third call is throttled: {answers:?}");
    };
    let wait = (unix_millis(window.end) - now_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait + 10)).await;
    assert_eq!(
        limiter.acquire(&application, limit).await.unwrap(),
        Acquisition::Allowed,
        "the next window has room"
    );
    delete_keys(&prefix).await;
}
