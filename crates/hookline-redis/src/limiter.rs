//! The rate limiter shared by all dispatchers: one fixed-window counter per
//! application and window length, updated by a Lua script.
//!
//! Why a script: reading the window, counting and setting the expiry must be
//! one step, or two dispatchers could both see room for the last
//! notification of a window. Redis runs a script without interleaving other
//! commands, so the count is exact however many dispatchers call it.
//!
//! Why a fixed window: one hash per application holds the current window's
//! start and count, so a check costs one round trip and one small key. A
//! sliding log would keep one entry per notification. The cost is that up
//! to twice the limit can be sent within one window length that straddles a
//! boundary (the end of one window and the start of the next), which the
//! plan semantics ("`limit` per calendar window") allow.
//!
//! The window comes from the Redis server's `TIME`, so dispatchers whose
//! clocks differ still agree on the windows. Redis 5 or newer is needed for
//! a script that writes after reading `TIME`.

use crate::client::{RedisClient, RedisError};
use async_trait::async_trait;
use hookline_core::limit::{
    from_unix_millis, window_millis, Acquisition, LimitError, LimitWindow, RateLimit, RateLimiter,
};
use hookline_core::ApplicationId;

/// `KEYS[1]`: the counter of one application and window length.
/// `ARGV[1]`: the window length in milliseconds.
/// Returns the count of the current window, this call included, and the
/// window's start in Unix milliseconds. The key expires two windows after
/// its last use.
const ACQUIRE_SCRIPT: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = tonumber(ARGV[1])
local start = now_ms - (now_ms % window_ms)
local count
if tonumber(redis.call('HGET', KEYS[1], 'start')) == start then
  count = redis.call('HINCRBY', KEYS[1], 'count', 1)
else
  redis.call('HSET', KEYS[1], 'start', string.format('%d', start), 'count', 1)
  count = 1
end
redis.call('PEXPIRE', KEYS[1], window_ms * 2)
return {count, start}
";

/// [`RateLimiter`] on Redis, exact across every process that uses the same
/// server and key prefix.
pub struct RedisRateLimiter {
    client: RedisClient,
    script: redis::Script,
}

impl RedisRateLimiter {
    pub fn new(client: RedisClient) -> Self {
        Self {
            client,
            script: redis::Script::new(ACQUIRE_SCRIPT),
        }
    }

    /// Builds the key `<prefix>limit:<application id>:<window ms>`. A plan
    /// change to another window length starts a fresh counter.
    fn counter_key(&self, application: &ApplicationId, window_ms: i64) -> String {
        self.client
            .prefixed(&format!("limit:{application}:{window_ms}"))
    }
}

fn limit_failure(error: RedisError) -> LimitError {
    LimitError {
        message: error.to_string(),
        source: Some(Box::new(error)),
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    /// Runs the script with `EVALSHA`, and with `EVAL` when the server does
    /// not have it cached yet.
    async fn acquire(
        &self,
        application: &ApplicationId,
        limit: RateLimit,
    ) -> Result<Acquisition, LimitError> {
        let window_ms = window_millis(limit.window);
        let mut invocation = self.script.key(self.counter_key(application, window_ms));
        invocation.arg(window_ms);
        let mut connection = self.client.connection();
        let request = invocation.invoke_async::<(u64, i64)>(&mut connection);
        let (count, start_ms) = self
            .client
            .bounded("EVALSHA", request)
            .await
            .map_err(limit_failure)?;
        if count <= limit.limit {
            return Ok(Acquisition::Allowed);
        }
        let window = LimitWindow {
            start: from_unix_millis(start_ms),
            end: from_unix_millis(start_ms.saturating_add(window_ms)),
        };
        Ok(Acquisition::Throttled { window })
    }
}
