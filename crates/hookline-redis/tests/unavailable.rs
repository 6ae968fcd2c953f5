//! Behaviour when nothing listens at the Redis address: calls fail within
//! the command timeout instead of hanging. The tests assume that nothing
//! listens on 127.0.0.1 port 1.

mod common;

use hookline_core::dedup::{Deduplicator, KeyRef};
use hookline_core::EventId;
use hookline_redis::{InvalidationBus, RedisClient, RedisDeduplicator, RedisError, RedisSettings};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CLOSED_PORT_URL: &str = "redis://127.0.0.1:1";
const TIMEOUT: Duration = Duration::from_millis(300);
/// Scheduling slack allowed on top of the command timeout.
const SLACK: Duration = Duration::from_millis(200);

fn closed_port_settings() -> RedisSettings {
    RedisSettings {
        url: CLOSED_PORT_URL.to_owned(),
        key_prefix: common::random_prefix(),
        command_timeout: TIMEOUT,
    }
}

fn key() -> KeyRef {
    KeyRef {
        product: "orders".to_owned(),
        key: "k".to_owned(),
    }
}

#[tokio::test]
async fn seen_fails_within_command_timeout() {
    let client = RedisClient::connect_lazy(closed_port_settings()).expect("valid settings");
    let deduplicator = RedisDeduplicator::new(client);

    let (result, elapsed) = common::timed(deduplicator.seen(&[key()])).await;

    let error = result.expect_err("seen must fail without Redis");
    assert!(elapsed <= TIMEOUT + SLACK, "took {elapsed:?}");
    assert!(error.message.contains("MGET"), "{}", error.message);
}

#[tokio::test]
async fn remember_fails_within_command_timeout() {
    let client = RedisClient::connect_lazy(closed_port_settings()).expect("valid settings");
    let deduplicator = RedisDeduplicator::new(client);
    let entries = [(key(), EventId::generate())];

    let (result, elapsed) =
        common::timed(deduplicator.remember(&entries, Duration::from_secs(60))).await;

    assert!(result.is_err(), "remember must fail without Redis");
    assert!(elapsed <= TIMEOUT + SLACK, "took {elapsed:?}");
}

#[tokio::test]
async fn connect_fails_within_command_timeout() {
    let (result, elapsed) = common::timed(RedisClient::connect(closed_port_settings())).await;

    let error = result.err().expect("connect must fail without Redis");
    assert!(elapsed <= TIMEOUT + SLACK, "took {elapsed:?}");
    assert!(
        matches!(
            error,
            RedisError::Timeout {
                command: "PING",
                ..
            } | RedisError::Command {
                command: "PING",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn publish_fails_within_command_timeout() {
    let client = RedisClient::connect_lazy(closed_port_settings()).expect("valid settings");
    let bus = InvalidationBus::new(client);

    let (result, elapsed) = common::timed(bus.publish()).await;

    assert!(result.is_err(), "publish must fail without Redis");
    assert!(elapsed <= TIMEOUT + SLACK, "took {elapsed:?}");
}

#[tokio::test]
async fn subscriber_retries_until_shutdown() {
    let client = RedisClient::connect_lazy(closed_port_settings()).expect("valid settings");
    let bus = InvalidationBus::new(client);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let shutdown = CancellationToken::new();
    let task = bus.subscribe(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
        },
        shutdown.clone(),
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !task.is_finished(),
        "subscriber gave up instead of retrying"
    );
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(1), task).await;

    assert!(stopped.is_ok(), "subscriber did not stop on shutdown");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "called without a subscription"
    );
}

#[test]
fn invalid_settings_are_rejected() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let mut zero_timeout = closed_port_settings();
    zero_timeout.command_timeout = Duration::ZERO;
    let mut bad_url = closed_port_settings();
    bad_url.url = "http://127.0.0.1:6379".to_owned();

    let zero_timeout_result = RedisClient::connect_lazy(zero_timeout);
    let bad_url_result = RedisClient::connect_lazy(bad_url);

    assert!(matches!(
        zero_timeout_result,
        Err(RedisError::InvalidSettings(_))
    ));
    assert!(matches!(
        bad_url_result,
        Err(RedisError::InvalidSettings(_))
    ));
}

#[test]
fn debug_output_masks_password() {
    let mut settings = closed_port_settings();
    settings.url = "redis://user:s3cret@127.0.0.1:6379/0".to_owned();

    let printed = format!("{settings:?}");

    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains("127.0.0.1:6379"), "{printed}");
}
