//! Connection settings, the shared client and its error type.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Connection settings: the Redis URL, the key prefix and the command timeout.
#[derive(Clone)]
pub struct RedisSettings {
    /// Connection URL such as `redis://127.0.0.1:6379/0`. It may contain a
    /// password, so `Debug` output masks it.
    pub url: String,
    /// Prepended to every key and channel name (for example `hookline:`), so
    /// that several deployments can share one server.
    pub key_prefix: String,
    /// Maximum time for one command, including any (re)connect it waits for.
    pub command_timeout: Duration,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &mask_password(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

fn mask_password(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<invalid URL>".to_owned();
    };
    if parsed.password().is_some() {
        // Fails only for URLs without a host, which carry no password.
        let _ = parsed.set_password(Some("***"));
    }
    parsed.to_string()
}

/// Failure of a Redis operation.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis settings: {0}")]
    InvalidSettings(String),
    #[error("Redis command {command} failed: {source}")]
    Command {
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis command {command} timed out after {timeout:?}; check that Redis is reachable")]
    Timeout {
        command: &'static str,
        timeout: Duration,
    },
    #[error("unexpected reply to Redis command {command}: {detail}")]
    UnexpectedReply {
        command: &'static str,
        detail: String,
    },
    #[error("Redis closed the subscription connection")]
    SubscriptionClosed,
}

/// Handle to one Redis server. Clones share one multiplexed connection,
/// which reconnects by itself after a failure.
#[derive(Clone)]
pub struct RedisClient {
    client: redis::Client,
    manager: ConnectionManager,
    key_prefix: Arc<str>,
    command_timeout: Duration,
}

impl RedisClient {
    /// Connects and checks the server with `PING`. Fails when the settings
    /// are invalid or Redis does not reply within `command_timeout`.
    pub async fn connect(settings: RedisSettings) -> Result<Self, RedisError> {
        let client = Self::connect_lazy(settings)?;
        client.ping().await?;
        Ok(client)
    }

    /// Creates a client without contacting Redis, so that a replica can
    /// start while Redis is down. The first command opens the connection.
    /// Fails only on invalid settings.
    ///
    /// # Panics
    ///
    /// Panics when called outside a Tokio runtime.
    pub fn connect_lazy(settings: RedisSettings) -> Result<Self, RedisError> {
        if settings.command_timeout.is_zero() {
            return Err(RedisError::InvalidSettings(
                "command_timeout must be greater than zero".to_owned(),
            ));
        }
        let client = redis::Client::open(settings.url.as_str()).map_err(|error| {
            RedisError::InvalidSettings(format!("url is not a Redis URL: {error}"))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.command_timeout))
            .set_response_timeout(Some(settings.command_timeout));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|error| RedisError::InvalidSettings(error.to_string()))?;
        Ok(Self {
            client,
            manager,
            key_prefix: settings.key_prefix.into(),
            command_timeout: settings.command_timeout,
        })
    }

    /// Sends `PING` and waits for the reply.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let ping = redis::cmd("PING");
        let mut connection = self.connection();
        self.bounded("PING", ping.query_async::<()>(&mut connection))
            .await
    }

    /// Returns the prefix of every key and channel name this client uses.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    pub(crate) fn connection(&self) -> ConnectionManager {
        self.manager.clone()
    }

    pub(crate) fn prefixed(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }

    /// Opens a dedicated connection for `SUBSCRIBE`, because a subscribed
    /// connection cannot carry other commands.
    pub(crate) async fn open_pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        self.bounded("SUBSCRIBE", self.client.get_async_pubsub())
            .await
    }

    /// Awaits `request` for at most `command_timeout`.
    pub(crate) async fn bounded<T>(
        &self,
        command: &'static str,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.command_timeout, request).await {
            Ok(result) => result.map_err(|source| RedisError::Command { command, source }),
            Err(_elapsed) => Err(RedisError::Timeout {
                command,
                timeout: self.command_timeout,
            }),
        }
    }
}
