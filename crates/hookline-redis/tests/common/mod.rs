//! Helpers shared by the integration tests. They need a Redis server at
//! `redis://127.0.0.1:6379`, or at the URL in `HOOKLINE_TEST_REDIS_URL`.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use hookline_redis::{RedisClient, RedisSettings};
use std::future::Future;
use std::time::{Duration, Instant};

pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn redis_url() -> String {
    std::env::var("HOOKLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Returns a random key prefix (64 random bits), so tests running in
/// parallel against one server do not share keys.
pub(crate) fn random_prefix() -> String {
    format!("hookline-test-{:016x}:", rand::random::<u64>())
}

pub(crate) fn settings(key_prefix: &str) -> RedisSettings {
    RedisSettings {
        url: redis_url(),
        key_prefix: key_prefix.to_owned(),
        command_timeout: COMMAND_TIMEOUT,
    }
}

pub(crate) async fn connect(key_prefix: &str) -> RedisClient {
    RedisClient::connect(settings(key_prefix)).await.expect(
        "connect to the test Redis; set HOOKLINE_TEST_REDIS_URL if it is not on 127.0.0.1:6379",
    )
}

async fn raw_connection() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).expect("valid test Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test Redis")
}

/// Lists every key under `key_prefix` with `SCAN`.
pub(crate) async fn keys_under(key_prefix: &str) -> Vec<String> {
    let mut connection = raw_connection().await;
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{key_prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .expect("SCAN test keys");
        found.extend(keys);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Deletes every key under `key_prefix`.
pub(crate) async fn delete_keys(key_prefix: &str) {
    let keys = keys_under(key_prefix).await;
    if keys.is_empty() {
        return;
    }
    redis::cmd("DEL")
        .arg(&keys)
        .query_async::<()>(&mut raw_connection().await)
        .await
        .expect("DEL test keys");
}

/// Polls `condition` every 10 ms until it returns true or `limit` passes.
/// Returns the last result of `condition`.
pub(crate) async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// Awaits `future` and returns its output with the time it took.
pub(crate) async fn timed<T>(future: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let output = future.await;
    (output, started.elapsed())
}
