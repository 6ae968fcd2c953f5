//! Events in through Kafka: librdkafka's mock broker, run inside this
//! process, and a producer that writes the benchmark's events to the
//! product's topic with their idempotency key in the `idempotentKey` header.
//!
//! The mock broker is librdkafka's own in-memory implementation of the
//! Kafka protocol, the same one the Kafka source's tests use. It keeps
//! nothing on disk, so these runs measure Hookline's consumer and not a
//! broker's storage. Its CPU time counts as this process's.

use crate::generator::IngestOutcome;
use crate::workload::{idempotency_key, json_payload, product_of_event};
use anyhow::{bail, Context, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};

/// Record header that carries the idempotency key, Hookline's default.
const KEY_HEADER: &str = "idempotentKey";
/// Wait before enqueuing again when the producer's local queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(1);
/// Bytes of records the mock broker keeps per partition before it deletes
/// the oldest, like a retention limit: librdkafka fixes it at 5 MiB. Runs
/// stay under 4 MiB per partition so that no event is deleted unread.
const PARTITION_BYTES: u64 = 4 * 1024 * 1024;
/// Per-record overhead in the log besides the payload: the record
/// header and the idempotency key header, rounded up.
const RECORD_OVERHEAD_BYTES: u64 = 128;
/// Most partitions a run creates.
const MAX_PARTITIONS: u64 = 256;

/// Returns the partitions that hold `events` records of `payload_bytes`
/// each within the mock broker's retention, at least one.
pub(crate) fn partitions_for(events: u64, payload_bytes: usize) -> Result<i32> {
    let record = payload_bytes as u64 + RECORD_OVERHEAD_BYTES;
    let needed = events
        .saturating_mul(record)
        .div_ceil(PARTITION_BYTES)
        .max(1);
    if needed > MAX_PARTITIONS {
        bail!(
            "{events} events of {payload_bytes} B need {needed} partitions on the mock Kafka broker, which keeps 5 MiB per partition; use at most {} events of this size",
            MAX_PARTITIONS * PARTITION_BYTES / record
        );
    }
    Ok(i32::try_from(needed)?)
}

/// A one-broker mock Kafka cluster with the benchmark's topics.
pub(crate) struct KafkaBroker {
    // Held for its lifetime: dropping it stops the broker.
    _cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap_servers: String,
    partitions: i32,
}

impl KafkaBroker {
    /// Starts the broker and creates each of `topics` with `partitions`
    /// partitions.
    pub(crate) fn start(topics: &[String], partitions: i32) -> Result<Self> {
        let cluster = MockCluster::new(1).context("failed to start librdkafka's mock broker")?;
        for topic in topics {
            cluster
                .create_topic(topic, partitions, 1)
                .with_context(|| format!("failed to create topic {topic} on the mock broker"))?;
        }
        let bootstrap_servers = cluster.bootstrap_servers();
        tracing::info!(%bootstrap_servers, ?topics, partitions, "started the mock Kafka broker");
        Ok(Self {
            _cluster: cluster,
            bootstrap_servers,
            partitions,
        })
    }

    pub(crate) fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Returns the `host:port` list for `bootstrap.servers`.
    pub(crate) fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }
}

/// Settings of one produce run: events `first_event..first_event + events`.
#[derive(Debug, Clone)]
pub(crate) struct ProduceConfig {
    /// One topic per product. Events take turns among them like among the
    /// products (`product_of_event`).
    pub(crate) topics: Vec<String>,
    /// Partitions of each topic. The events of a topic take turns among
    /// its partitions, so that they fill evenly and none passes the
    /// broker's retention.
    pub(crate) partitions: i32,
    pub(crate) first_event: u64,
    pub(crate) events: u64,
    pub(crate) payload_bytes: usize,
    /// Events per second, or `None` for as fast as the producer takes them.
    pub(crate) rate: Option<f64>,
}

/// A producer of benchmark events, connected to one broker.
pub(crate) struct EventProducer {
    producer: FutureProducer,
}

impl EventProducer {
    pub(crate) fn connect(broker: &KafkaBroker) -> Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            // Short batching, so that a fixed-rate run measures Hookline's
            // latency rather than the producer's.
            .set("linger.ms", "1")
            .create()
            .context("failed to create the Kafka producer")?;
        Ok(Self { producer })
    }

    /// Produces every event once and returns when the broker acknowledged
    /// or refused each. An acknowledged event counts as accepted, and its
    /// send time is the moment it was handed to the producer.
    pub(crate) async fn produce(&self, config: &ProduceConfig) -> Result<IngestOutcome> {
        if config.topics.is_empty() {
            bail!("producing events needs at least one topic");
        }
        let started = Instant::now();
        let mut pending = Vec::with_capacity(usize::try_from(config.events)?);
        for offset in 0..config.events {
            if let Some(rate) = config.rate {
                let due = started + Duration::from_secs_f64(offset as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let index = config.first_event + offset;
            let sent_at = Instant::now();
            let delivery = self.send(config, index).await;
            pending.push((sent_at, delivery));
        }

        let mut sent = Vec::with_capacity(pending.len());
        let mut failures = 0_u64;
        for (offset, (sent_at, delivery)) in pending.into_iter().enumerate() {
            let acknowledged = match delivery {
                Ok(future) => match future.await {
                    Ok(Ok(_)) => true,
                    Ok(Err((error, _))) => log_failure(&mut failures, offset, &error),
                    Err(_) => log_failure(&mut failures, offset, &KafkaError::Canceled),
                },
                Err(error) => log_failure(&mut failures, offset, &error),
            };
            sent.push(acknowledged.then_some(sent_at));
        }
        let accepted = sent.iter().filter(|sent| sent.is_some()).count() as u64;
        Ok(IngestOutcome {
            sent,
            accepted,
            rejected: config.events - accepted,
            started,
            finished: Instant::now(),
        })
    }

    /// Enqueues event `index`, waiting while the producer's queue is full.
    async fn send(&self, config: &ProduceConfig, index: u64) -> Result<DeliveryFuture, KafkaError> {
        let key = idempotency_key(index);
        let payload = json_payload(index, config.payload_bytes);
        let products = config.topics.len() as u32;
        let topic = &config.topics[product_of_event(index, products) as usize];
        let partitions = u64::try_from(config.partitions.max(1)).unwrap_or(1);
        let partition = i32::try_from(index / u64::from(products) % partitions).unwrap_or(0);
        loop {
            let headers = OwnedHeaders::new().insert(Header {
                key: KEY_HEADER,
                value: Some(key.as_bytes()),
            });
            let record = FutureRecord::<(), [u8]>::to(topic)
                .partition(partition)
                .payload(&payload[..])
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

/// Counts a failure, logs the first ten, and returns `false`.
fn log_failure(failures: &mut u64, offset: usize, error: &KafkaError) -> bool {
    *failures += 1;
    if *failures <= 10 {
        tracing::warn!(offset, %error, "the mock broker did not acknowledge an event");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_keep_every_record_within_retention() {
        assert_eq!(partitions_for(1, 1024).unwrap(), 1);
        // 40,000 records of 1,152 bytes are 46.1 MB: 11 partitions of 4 MiB.
        assert_eq!(partitions_for(40_000, 1024).unwrap(), 11);
        let error = partitions_for(10_000_000, 1024).unwrap_err().to_string();
        assert!(error.contains("use at most 932067 events"), "{error}");
    }
}
