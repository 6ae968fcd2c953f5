//! Configuration of the Kafka source and the librdkafka properties built from it.

use crate::KafkaError;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;

/// librdkafka properties that the source sets itself. Overriding them through
/// [`KafkaSettings::client`] would break the commit contract or duplicate a
/// dedicated field, so they are rejected there.
const RESERVED_PROPERTIES: [(&str, &str); 5] = [
    ("bootstrap.servers", "set `brokers` instead"),
    ("metadata.broker.list", "set `brokers` instead"),
    ("group.id", "set `group_id` instead"),
    (
        "enable.auto.commit",
        "the source commits offsets itself once records are accepted",
    ),
    (
        "enable.auto.offset.store",
        "the source commits offsets itself once records are accepted",
    ),
];

/// Settings of the Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated `host:port` pairs.
    pub brokers: String,
    /// Consumer group shared by all creator instances.
    pub group_id: String,
    /// Record header whose value is the idempotency key. Records without it
    /// get the key `"{topic}/{partition}/{offset}"`.
    pub idempotency_header: String,
    /// Maximum number of records accepted in one call to the creator.
    pub batch_size: usize,
    /// How long to wait for more records after the first record of a batch.
    pub batch_wait: Duration,
    /// Interval between reads of the product list. A new topic is subscribed
    /// at most this long after its product was created.
    pub refresh_interval: Duration,
    /// Extra librdkafka properties, such as `security.protocol` or
    /// `auto.offset.reset` (the source sets `earliest` unless given here).
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            group_id: "hookline-creator".to_owned(),
            idempotency_header: "idempotentKey".to_owned(),
            batch_size: 500,
            batch_wait: Duration::from_millis(5),
            refresh_interval: Duration::from_secs(5),
            client: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    /// Checks the settings and builds the consumer's librdkafka configuration.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, KafkaError> {
        self.validate()?;

        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group reads a product's topic from its start, so records
            // written before the first creator started are not lost.
            .set("auto.offset.reset", "earliest")
            // Statistics carry each partition's consumer lag for /metrics.
            .set("statistics.interval.ms", crate::lag::STATISTICS_INTERVAL_MS);
        for (key, value) in &self.client {
            config.set(key, value);
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), KafkaError> {
        if self.brokers.trim().is_empty() {
            return Err(invalid(
                "brokers is empty; set it to the Kafka bootstrap servers, such as `localhost:9092`",
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid(
                "group_id is empty; the default is `hookline-creator`",
            ));
        }
        if self.idempotency_header.is_empty() {
            return Err(invalid(
                "idempotency_header is empty; the default is `idempotentKey`",
            ));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size is 0; it must be at least 1"));
        }
        if self.refresh_interval.is_zero() {
            return Err(invalid("refresh_interval is 0; it must be positive"));
        }
        for key in self.client.keys() {
            let reserved = RESERVED_PROPERTIES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key.trim()));
            if let Some((name, hint)) = reserved {
                return Err(invalid(format!(
                    "client property `{name}` cannot be set: {hint}"
                )));
            }
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> KafkaError {
    KafkaError::InvalidSettings(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> KafkaSettings {
        KafkaSettings {
            brokers: "127.0.0.1:9092".to_owned(),
            ..KafkaSettings::default()
        }
    }

    #[test]
    fn defaults_match_documentation() {
        let settings = KafkaSettings::default();
        assert_eq!(settings.brokers, "");
        assert_eq!(settings.group_id, "hookline-creator");
        assert_eq!(settings.idempotency_header, "idempotentKey");
        assert!(settings.batch_size > 0);
        assert!(!settings.refresh_interval.is_zero());
    }

    #[test]
    fn config_disables_automatic_commits() {
        let config = valid().client_config().unwrap();
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("group.id"), Some("hookline-creator"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
    }

    #[test]
    fn client_properties_override_defaults() {
        let mut settings = valid();
        settings
            .client
            .insert("auto.offset.reset".to_owned(), "latest".to_owned());
        let config = settings.client_config().unwrap();
        assert_eq!(config.get("auto.offset.reset"), Some("latest"));
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let cases: Vec<(&str, KafkaSettings)> = vec![
            ("brokers", KafkaSettings::default()),
            (
                "group_id",
                KafkaSettings {
                    group_id: " ".to_owned(),
                    ..valid()
                },
            ),
            (
                "idempotency_header",
                KafkaSettings {
                    idempotency_header: String::new(),
                    ..valid()
                },
            ),
            (
                "batch_size",
                KafkaSettings {
                    batch_size: 0,
                    ..valid()
                },
            ),
            (
                "refresh_interval",
                KafkaSettings {
                    refresh_interval: Duration::ZERO,
                    ..valid()
                },
            ),
        ];
        for (field, settings) in cases {
            let error = settings.client_config().unwrap_err();
            assert!(
                error.to_string().contains(field),
                "error for {field} was: {error}"
            );
        }
    }

    #[test]
    fn reserved_client_properties_are_rejected() {
        for key in ["enable.auto.commit", "GROUP.ID", "bootstrap.servers"] {
            let mut settings = valid();
            settings.client.insert(key.to_owned(), "x".to_owned());
            let error = settings.client_config().unwrap_err();
            assert!(
                matches!(error, KafkaError::InvalidSettings(_)),
                "{key} was accepted"
            );
            assert!(
                error.to_string().contains(&key.to_ascii_lowercase()),
                "error for {key} was: {error}"
            );
        }
    }
}
