/// Failure of the Kafka source. Errors of single records and backend outages
/// are handled inside the source and never end it.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A setting is missing or out of range. The message names it.
    #[error("invalid Kafka settings: {0}")]
    InvalidSettings(String),
    /// librdkafka rejected a client property. The message names the
    /// property but never its value, which may be a password.
    #[error("invalid Kafka client property `{property}`: {problem}; check it against librdkafka's CONFIGURATION.md")]
    ClientProperty {
        property: String,
        problem: &'static str,
    },
    /// librdkafka rejected the configuration or could not start the client.
    #[error("failed to create the Kafka consumer for brokers {brokers:?} in group {group_id:?}")]
    CreateConsumer {
        brokers: String,
        group_id: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The consumer hit an error that librdkafka cannot recover from.
    #[error("the Kafka consumer failed and cannot continue")]
    Fatal {
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The synchronous commit on shutdown failed. The records after the last
    /// committed offsets are consumed again on the next start.
    #[error("failed to commit offsets on shutdown")]
    Commit {
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The blocking task that commits and closes the consumer panicked or
    /// was cancelled.
    #[error("the task that closes the Kafka consumer failed")]
    Close {
        #[source]
        source: tokio::task::JoinError,
    },
}
