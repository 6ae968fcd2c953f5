//! The shared sign-in limiter against a real Redis server.

mod common;

use common::{connect, delete_keys, keys_under, random_prefix};
use hookline_core::portal::{SignInLimiter, SIGN_IN_MAX_FAILURES, SIGN_IN_WINDOW};
use hookline_redis::RedisSignInLimiter;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limiters_count_exactly_the_maximum() {
    let prefix = random_prefix();
    // Three limiters with their own connections stand for three replicas.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let limiter = Arc::new(RedisSignInLimiter::new(connect(&prefix).await));
        for _ in 0..6 {
            let limiter = limiter.clone();
            tasks.spawn(async move { limiter.begin_attempt("a@example.com").await.unwrap() });
        }
    }
    let mut counted = 0;
    let mut waits = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            None => counted += 1,
            Some(wait) => waits.push(wait),
        }
    }
    assert_eq!(counted, SIGN_IN_MAX_FAILURES);
    assert_eq!(waits.len(), 18 - SIGN_IN_MAX_FAILURES as usize);
    for wait in waits {
        assert!(wait <= SIGN_IN_WINDOW, "wait {wait:?}");
        assert!(
            wait > SIGN_IN_WINDOW - Duration::from_secs(60),
            "wait {wait:?}"
        );
    }
    assert_eq!(keys_under(&prefix).await.len(), 1, "one key per email");
    delete_keys(&prefix).await;
}

#[tokio::test]
async fn clear_allows_new_attempts() {
    let prefix = random_prefix();
    let limiter = RedisSignInLimiter::new(connect(&prefix).await);
    for _ in 0..SIGN_IN_MAX_FAILURES {
        assert_eq!(limiter.begin_attempt("a@example.com").await.unwrap(), None);
    }
    assert!(limiter
        .begin_attempt("a@example.com")
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        limiter.begin_attempt("b@example.com").await.unwrap(),
        None,
        "another email has its own count"
    );

    limiter.clear("a@example.com").await.unwrap();
    assert_eq!(limiter.begin_attempt("a@example.com").await.unwrap(), None);
    delete_keys(&prefix).await;
}

#[tokio::test]
async fn attempts_leave_the_window() {
    let prefix = random_prefix();
    let window = Duration::from_millis(300);
    let limiter = RedisSignInLimiter::with_limit(connect(&prefix).await, 2, window);
    assert_eq!(limiter.begin_attempt("a@example.com").await.unwrap(), None);
    assert_eq!(limiter.begin_attempt("a@example.com").await.unwrap(), None);
    let wait = limiter.begin_attempt("a@example.com").await.unwrap();
    assert!(wait.is_some_and(|wait| wait <= window), "{wait:?}");

    tokio::time::sleep(window + Duration::from_millis(50)).await;
    assert_eq!(limiter.begin_attempt("a@example.com").await.unwrap(), None);
    delete_keys(&prefix).await;
}

#[tokio::test]
async fn key_contains_no_email() {
    let prefix = random_prefix();
    let limiter = RedisSignInLimiter::new(connect(&prefix).await);
    limiter.begin_attempt("secret@example.com").await.unwrap();
    let keys = keys_under(&prefix).await;
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with(&format!("{prefix}signin:")),
        "{}",
        keys[0]
    );
    assert!(!keys[0].contains("secret"), "{}", keys[0]);
    delete_keys(&prefix).await;
}
