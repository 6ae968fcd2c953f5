//! librdkafka callbacks: client logs, errors, rebalances and commit results
//! are sent to `tracing`, and statistics update the consumer lag gauges.

use crate::lag::LagGauges;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Next offset to read, by topic and partition.
pub(crate) type Offsets = BTreeMap<(String, i32), i64>;

/// Consumer context of the source.
#[derive(Default)]
pub(crate) struct SourceContext {
    /// Offsets of the last commit sent for each partition this consumer owns.
    /// Revoked partitions are removed, because their new owner commits them.
    committed: Mutex<Offsets>,
    lag: LagGauges,
}

impl SourceContext {
    /// Records the offsets of a commit that was sent.
    pub(crate) fn record_commit(&self, offsets: Offsets) {
        self.committed.lock().expect("offsets lock").extend(offsets);
    }

    /// Returns the offsets of the last commits of the partitions still owned.
    pub(crate) fn committed(&self) -> Offsets {
        self.committed.lock().expect("offsets lock").clone()
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        self.lag.update(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports most other errors through the log callback too,
        // and the consumer returns them from `recv`, where the source logs
        // them as warnings.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(%error, reason, "Kafka client failed fatally");
        } else {
            tracing::debug!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "Kafka partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                let mut committed = self.committed.lock().expect("offsets lock");
                for element in partitions.elements() {
                    committed.remove(&(element.topic().to_owned(), element.partition()));
                }
                drop(committed);
                tracing::info!(partitions = %describe(partitions), "Kafka partitions revoked");
            }
            Rebalance::Error(error) => {
                // rdkafka unassigns the partitions after a failed rebalance.
                self.committed.lock().expect("offsets lock").clear();
                tracing::warn!(%error, "Kafka consumer group rebalance failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::trace!(offsets = %describe(offsets), "Kafka offsets committed"),
            Err(error) => tracing::warn!(
                %error,
                offsets = %describe(offsets),
                "Kafka offset commit failed; records after the last committed offset will be consumed again"
            ),
        }
    }
}

/// Formats a partition list as comma-separated `topic/partition@offset`
/// entries. A partition without an offset is written as `topic/partition`.
pub(crate) fn describe(partitions: &TopicPartitionList) -> String {
    let mut text = String::new();
    for (index, element) in partitions.elements().iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{}/{}", element.topic(), element.partition());
        if let Offset::Offset(offset) = element.offset() {
            let _ = write!(text, "@{offset}");
        }
    }
    text
}
