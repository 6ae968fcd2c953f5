//! Settings of the RabbitMQ delivery queue and their validation.

use hookline_core::queue::QueueError;
use hookline_core::RetryPolicy;
use std::fmt;
use std::time::Duration;

/// Maximum queue name length that AMQP 0-9-1 allows, in bytes (a `shortstr`).
const MAX_QUEUE_NAME_BYTES: usize = 255;

/// Bytes that the longest derived name adds to `queue_name`:
/// `.delay.` plus ten digits plus `ms`.
const DELAY_SUFFIX_BYTES: usize = ".delay.".len() + 10 + "ms".len();

/// Settings of [`crate::AmqpQueue`].
#[derive(Clone)]
pub struct AmqpSettings {
    /// AMQP URI such as `amqp://user:password@host:5672/%2f`, where `%2f` is
    /// the default virtual host `/`. `amqps://` uses rustls with the webpki
    /// root certificates.
    pub url: String,
    /// Name of the main quorum queue. The delay queues
    /// (`<queue_name>.delay.<ms>ms`) and the dead-letter queue
    /// (`<queue_name>.dlq`) are named after it.
    pub queue_name: String,
    /// Maximum unacknowledged deliveries the broker sends this consumer
    /// (`basic.qos`). Size it to the dispatcher's concurrency: a smaller value
    /// leaves slots idle, and a larger one buffers deliveries that no slot
    /// can take yet.
    pub prefetch: u16,
    /// Retry schedule. One delay queue is declared per retry.
    pub retry: RetryPolicy,
    /// Maximum wait for the broker to confirm a publish before it counts as
    /// failed.
    pub confirm_timeout: Duration,
    /// Maximum wait between two reconnect attempts. The wait starts at
    /// 100 ms and doubles after each failed attempt.
    pub reconnect_max_backoff: Duration,
    /// Whether this process consumes the main queue. Processes that only
    /// publish (the creator and the API) must not, or the broker would hand
    /// them deliveries that nothing receives until they disconnect.
    pub consume: bool,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            queue_name: "webhookQueue".into(),
            prefetch: 256,
            consume: true,
            retry: RetryPolicy::default(),
            confirm_timeout: Duration::from_secs(10),
            reconnect_max_backoff: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &redacted_url(&self.url))
            .field("queue_name", &self.queue_name)
            .field("prefetch", &self.prefetch)
            .field("retry", &self.retry)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .finish()
    }
}

impl AmqpSettings {
    /// Rejects settings that the broker would refuse or that would leave the
    /// consumer without a prefetch limit.
    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        if self.queue_name.is_empty() {
            return Err(invalid("queue_name must not be empty".into()));
        }
        let max_name = MAX_QUEUE_NAME_BYTES - DELAY_SUFFIX_BYTES;
        if self.queue_name.len() > max_name {
            return Err(invalid(format!(
                "queue_name {:?} is {} bytes long; the maximum is {max_name} bytes so that the delay queue names fit in 255 bytes",
                self.queue_name,
                self.queue_name.len()
            )));
        }
        if self.prefetch == 0 {
            return Err(invalid(
                "prefetch must be at least 1, because 0 means no limit in AMQP".into(),
            ));
        }
        if self.confirm_timeout.is_zero() {
            return Err(invalid("confirm_timeout must be greater than zero".into()));
        }
        Ok(())
    }
}

/// Returns `url` with the user information replaced by `***`, for logs.
pub(crate) fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    match rest.split_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

fn invalid(message: String) -> QueueError {
    QueueError {
        message: format!("invalid RabbitMQ settings: {message}"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_redaction_hides_credentials() {
        assert_eq!(
            redacted_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redacted_url("amqp://host/%2f"), "amqp://host/%2f");
        assert_eq!(redacted_url("not a url"), "***");
    }

    #[test]
    fn validation_rejects_unusable_values() {
        assert!(AmqpSettings::default().validate().is_ok());
        let cases = [
            AmqpSettings {
                queue_name: String::new(),
                ..AmqpSettings::default()
            },
            AmqpSettings {
                queue_name: "q".repeat(237),
                ..AmqpSettings::default()
            },
            AmqpSettings {
                prefetch: 0,
                ..AmqpSettings::default()
            },
            AmqpSettings {
                confirm_timeout: Duration::ZERO,
                ..AmqpSettings::default()
            },
        ];
        for settings in cases {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
    }

    #[test]
    fn longest_allowed_name_fits() {
        let settings = AmqpSettings {
            queue_name: "q".repeat(MAX_QUEUE_NAME_BYTES - DELAY_SUFFIX_BYTES),
            ..AmqpSettings::default()
        };
        assert!(settings.validate().is_ok());
    }
}
