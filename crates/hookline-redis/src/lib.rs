//! Redis-backed state that Hookline replicas share: the record of
//! idempotency keys ([`RedisDeduplicator`]), "applications changed"
//! notifications ([`InvalidationBus`], [`SharedDirectory`]), the
//! per-application rate-limit counters ([`RedisRateLimiter`]) and the
//! portal's count of password checks per email ([`RedisSignInLimiter`]).
//! [`RedisClient::get_value`] and [`RedisClient::set_value`] keep values
//! with an expiry for caches that replicas share.
//!
//! One [`RedisClient`] serves all of them. Each command waits at most
//! [`RedisSettings::command_timeout`], so a dead Redis makes a call fail
//! quickly instead of blocking event intake.
//!
//! ```no_run
//! # async fn start(store_directory: std::sync::Arc<dyn hookline_core::directory::Directory>)
//! # -> Result<(), hookline_redis::RedisError> {
//! use hookline_redis::{InvalidationBus, RedisClient, RedisDeduplicator, RedisSettings, SharedDirectory};
//! use std::time::Duration;
//!
//! let client = RedisClient::connect(RedisSettings {
//!     url: "redis://127.0.0.1:6379".into(),
//!     key_prefix: "hookline:".into(),
//!     command_timeout: Duration::from_millis(500),
//! })
//! .await?;
//! let deduplicator = RedisDeduplicator::new(client.clone());
//! let directory = SharedDirectory::new(store_directory, InvalidationBus::new(client));
//! let subscription = directory.subscribe(tokio_util::sync::CancellationToken::new());
//! # Ok(()) }
//! ```
//!
//! # Commands and Infinispan compatibility
//!
//! The crate sends only `PING`, `GET`, `MGET`, `SET key value PX ms`,
//! `SET key value NX PX ms` (several in one pipeline, without `MULTI`),
//! `PUBLISH`, `SUBSCRIBE`, `DEL`, and
//! `EVALSHA` and `EVAL` for the rate limiter's Lua script (which calls
//! `TIME`, `HGET`, `HSET`, `HINCRBY` and `PEXPIRE`) and the sign-in
//! limiter's (which calls `TIME`, `ZREMRANGEBYSCORE`, `ZCARD`, `ZRANGE`,
//! `ZADD` and `PEXPIRE`). It uses no transactions. What
//! Infinispan's RESP endpoint serves:
//!
//! - `GET`, `SET`, `MGET`, `PING`, `PUBLISH` and `SUBSCRIBE` are in the
//!   "Redis commands" table of Infinispan's RESP endpoint guide. The source
//!   read is `documentation/src/main/asciidoc/topics/ref_redis_commands.adoc`
//!   in the infinispan/infinispan repository, which the 15.0 guide renders
//!   (<https://infinispan.org/docs/15.0.x/titles/resp/resp-endpoint.html>).
//! - That table does not list `SET` options. Infinispan's `SetOperation`
//!   source parses `NX`, `XX`, `EX`, `PX`, `EXAT`, `PXAT`, `GET` and
//!   `KEEPTTL`, and runs `NX` as a put-if-absent with the given lifespan.
//! - `EVAL` is not in that table, nor in the 15.1.x API docs. The stable
//!   API docs (Infinispan 16.1.0) contain the package
//!   `org.infinispan.server.resp.commands.scripting.eval`. So the rate
//!   limiter may fail on Infinispan: each failed check postpones the
//!   delivery, and nothing over a limit is sent. Against such a server,
//!   leave the limiter to each process (see the README).
//! - The 15.0 guide states that multi-key commands are not atomic there
//!   (relaxed isolation), so an `MGET` may see part of a concurrent write.
//!   The state store stays the authority on duplicates, so that is harmless.
//! - The 14.0 guide calls the RESP endpoint experimental.
//! - The sign-in limiter's script uses sorted sets (`ZADD` and related
//!   commands). Whether Infinispan runs them inside `EVAL` was not checked.
//!
//! NOTE: these findings come from Infinispan's documentation and source. The
//! tests run against Redis only, never against Infinispan.

mod bus;
mod client;
mod dedup;
mod directory;
mod limiter;
mod signin;
mod values;

pub use bus::InvalidationBus;
pub use client::{RedisClient, RedisError, RedisSettings};
pub use dedup::RedisDeduplicator;
pub use directory::SharedDirectory;
pub use limiter::RedisRateLimiter;
pub use signin::RedisSignInLimiter;
