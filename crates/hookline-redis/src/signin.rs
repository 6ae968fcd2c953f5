//! The portal's limit on password checks per email, shared by every
//! `hookline api` replica: one sorted set per email contains the times of
//! its counted checks, and a Lua script prunes, counts and adds in one step.
//!
//! Why a script: a replica must not check the count and add to it in two
//! commands, or two replicas could both see room for the last attempt.
//! Redis runs a script without interleaving other commands. The times come
//! from the Redis server's `TIME`, so replicas whose clocks differ still
//! agree on the window.

use crate::client::{RedisClient, RedisError};
use async_trait::async_trait;
use hookline_core::limit::LimitError;
use hookline_core::portal::{SignInLimiter, SIGN_IN_MAX_FAILURES, SIGN_IN_WINDOW};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// `KEYS[1]`: the sorted set of one email's counted checks, scored by time
/// in Unix milliseconds.
/// `ARGV[1]`: the window in milliseconds. `ARGV[2]`: the maximum count.
/// `ARGV[3]`: a member name of this attempt, unique among concurrent calls.
/// Returns 0 when the attempt was counted, or else the milliseconds until
/// the oldest counted check leaves the window (at least 1). The key expires
/// one window after its last counted check.
const BEGIN_SCRIPT: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(tonumber(oldest[2]) + window_ms - now_ms, 1)
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window_ms)
return 0
";

/// [`SignInLimiter`] on Redis, exact across every process that uses the
/// same server and key prefix.
pub struct RedisSignInLimiter {
    client: RedisClient,
    script: redis::Script,
    max_attempts: u32,
    window: Duration,
}

impl RedisSignInLimiter {
    /// Allows [`SIGN_IN_MAX_FAILURES`] failed checks per email within
    /// [`SIGN_IN_WINDOW`], the same limit as the in-process one.
    pub fn new(client: RedisClient) -> Self {
        Self::with_limit(client, SIGN_IN_MAX_FAILURES, SIGN_IN_WINDOW)
    }

    /// Allows `max_attempts` failed checks per email within `window`.
    pub fn with_limit(client: RedisClient, max_attempts: u32, window: Duration) -> Self {
        Self {
            client,
            script: redis::Script::new(BEGIN_SCRIPT),
            max_attempts,
            window,
        }
    }

    /// Builds the key `<prefix>signin:<hex SHA-256 of the email>`, so that
    /// no email text is stored in Redis.
    fn attempts_key(&self, email: &str) -> String {
        let digest = Sha256::digest(email.as_bytes());
        self.client
            .prefixed(&format!("signin:{}", hex::encode(digest)))
    }
}

fn limit_failure(error: RedisError) -> LimitError {
    LimitError {
        message: error.to_string(),
        source: Some(Box::new(error)),
    }
}

#[async_trait]
impl SignInLimiter for RedisSignInLimiter {
    async fn begin_attempt(&self, email: &str) -> Result<Option<Duration>, LimitError> {
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let member = format!("{:016x}", rand::random::<u64>());
        let mut invocation = self.script.key(self.attempts_key(email));
        invocation.arg(window_ms).arg(self.max_attempts).arg(member);
        let mut connection = self.client.connection();
        let request = invocation.invoke_async::<u64>(&mut connection);
        let wait_ms = self
            .client
            .bounded("EVALSHA", request)
            .await
            .map_err(limit_failure)?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    async fn clear(&self, email: &str) -> Result<(), LimitError> {
        let mut command = redis::cmd("DEL");
        command.arg(self.attempts_key(email));
        let mut connection = self.client.connection();
        self.client
            .bounded("DEL", command.query_async::<()>(&mut connection))
            .await
            .map_err(limit_failure)
    }
}
