//! The consume loop: batches records, feeds the creator and commits offsets.

use crate::context::{describe, Offsets, SourceContext};
use crate::record::{Batch, Record};
use crate::routes::Routes;
use crate::{KafkaError, KafkaSettings};
use hookline_creator::{Accepted, Creator};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::{RDKafkaConfRes, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// First delay before a failed creator call is retried. The delay doubles
/// with each further failure up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Consumes the topics of all products and turns their records into events.
///
/// Delivery is at least once: an offset is committed only after the creator
/// accepted (or the store recorded as rejected) every record below it, and the
/// creator drops the duplicates that a redelivery produces.
pub struct KafkaSource {
    settings: KafkaSettings,
    creator: Arc<Creator>,
    consumer: StreamConsumer<SourceContext>,
}

/// State of the consume loop, kept between batches.
#[derive(Default)]
struct State {
    routes: Routes,
    subscribed: BTreeSet<String>,
    /// Failed reads of the product list in a row, for the log.
    refresh_failures: u32,
}

impl KafkaSource {
    /// Creates the consumer, which joins the group once [`KafkaSource::run`]
    /// subscribes. Call it within a Tokio runtime, because the consumer
    /// starts a background task on it.
    pub fn new(settings: KafkaSettings, creator: Arc<Creator>) -> Result<Self, KafkaError> {
        let config = settings.client_config()?;
        let consumer = config
            .create_with_context(SourceContext::default())
            .map_err(|source| creation_error(&settings, source))?;
        Ok(Self {
            settings,
            creator,
            consumer,
        })
    }

    /// Consumes until `shutdown` is cancelled, then commits the offsets of
    /// the accepted records synchronously and leaves the group.
    ///
    /// A batch that is still being retried when `shutdown` is cancelled is
    /// not committed, so its records are consumed again on the next start.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KafkaError> {
        let mut state = State::default();
        self.refresh(&mut state).await;
        tracing::info!(
            brokers = %self.settings.brokers,
            group = %self.settings.group_id,
            topics = ?state.subscribed,
            "Kafka source started"
        );

        let consumed = self.consume(&mut state, &shutdown).await;
        let closed = self.close().await;
        match (&consumed, &closed) {
            (Ok(()), Ok(())) => tracing::info!("Kafka source stopped"),
            (Err(error), _) | (Ok(()), Err(error)) => {
                tracing::error!(error = %error, "Kafka source stopped after an error");
            }
        }
        consumed.and(closed)
    }

    async fn consume(
        &self,
        state: &mut State,
        shutdown: &CancellationToken,
    ) -> Result<(), KafkaError> {
        let period = self.settings.refresh_interval;
        let mut refresh = tokio::time::interval_at(Instant::now() + period, period);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                _ = refresh.tick() => {
                    self.refresh(state).await;
                    continue;
                }
                message = self.consumer.recv() => self.copy(message)?,
            };
            let Some(first) = first else {
                continue;
            };
            let mut records = Vec::with_capacity(self.settings.batch_size);
            records.push(first);
            self.fill(&mut records, shutdown).await?;
            if !self.process(&records, state, shutdown).await {
                return Ok(());
            }
        }
    }

    /// Adds the records that arrive within `batch_wait`, up to `batch_size`.
    async fn fill(
        &self,
        records: &mut Vec<Record>,
        shutdown: &CancellationToken,
    ) -> Result<(), KafkaError> {
        let deadline = Instant::now() + self.settings.batch_wait;
        while records.len() < self.settings.batch_size {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                message = tokio::time::timeout_at(deadline, self.consumer.recv()) => message,
            };
            let Ok(message) = message else {
                break;
            };
            records.extend(self.copy(message)?);
        }
        Ok(())
    }

    /// Copies a consumed message. Consumer errors are logged and skipped,
    /// except fatal ones, which end the source.
    fn copy(
        &self,
        message: KafkaResult<BorrowedMessage<'_>>,
    ) -> Result<Option<Record>, KafkaError> {
        match message {
            Ok(message) => Ok(Some(Record::from_message(
                &message,
                &self.settings.idempotency_header,
            ))),
            Err(error) => {
                let fatal = error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
                    || self.consumer.client().fatal_error().is_some();
                if fatal {
                    return Err(KafkaError::Fatal {
                        source: Box::new(error),
                    });
                }
                tracing::warn!(error = %error, "Kafka consumer error; consuming continues");
                Ok(None)
            }
        }
    }

    /// Feeds one batch to the creator and commits it. Returns `false` when
    /// `shutdown` was cancelled during a retry, in which case nothing of the
    /// batch is committed.
    async fn process(
        &self,
        records: &[Record],
        state: &mut State,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut batch = Batch::plan(records, &state.routes);
        if batch.unrouted > 0 {
            tracing::warn!(
                records = batch.unrouted,
                "Skipping records of topics that no product reads"
            );
        }

        // NOTE: the consumer is not polled while a batch is retried. An outage
        // longer than `max.poll.interval.ms` (librdkafka default: 300 s) makes
        // librdkafka leave the group until the next poll. The commit of this
        // batch may then fail, and its records are consumed again, which the
        // creator deduplicates.
        let creator = &*self.creator;
        let mut created = 0;
        if !batch.events.is_empty() {
            let events = &batch.events;
            let accepted = retry("accept", records.len(), shutdown, || {
                creator.accept(events.clone())
            })
            .await;
            let Some(results) = accepted else {
                return false;
            };
            created = results
                .iter()
                .filter(|result| matches!(result, Ok(Accepted::Created { .. })))
                .count();
            batch.add_rejected(records, &results);
        }

        // Creator::reject logs each rejected record.
        for rejection in batch.rejections() {
            let recorded = retry("reject", records.len(), shutdown, || {
                creator.reject(rejection.clone())
            })
            .await;
            if recorded.is_none() {
                return false;
            }
        }

        self.commit(records);
        tracing::debug!(
            records = records.len(),
            events = batch.events.len(),
            created,
            rejected = batch.rejections().len(),
            "Kafka batch accepted"
        );
        true
    }

    /// Commits, without waiting, the offset after the last record of each
    /// partition in the batch.
    fn commit(&self, records: &[Record]) {
        let mut next = Offsets::new();
        for record in records {
            let offset = next
                .entry((record.topic.clone(), record.partition))
                .or_insert(record.offset + 1);
            *offset = (*offset).max(record.offset + 1);
        }
        let list = partition_list(next.iter());
        if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(
                error = %error,
                offsets = %describe(&list),
                "Failed to send the Kafka offset commit; the next commit covers these records"
            );
        }
        self.consumer.context().record_commit(next);
    }

    /// Reads the product list and subscribes when the set of topics changed.
    /// On failure the current routes and subscription stay in place.
    async fn refresh(&self, state: &mut State) {
        let products = match self.creator.store().products().await {
            Ok(products) => products,
            Err(error) => {
                state.refresh_failures += 1;
                tracing::warn!(
                    error = %error,
                    failures = state.refresh_failures,
                    "Failed to read the product list; keeping the current Kafka subscription"
                );
                return;
            }
        };
        state.refresh_failures = 0;
        state.routes = Routes::from_products(&products);

        let topics = state.routes.topics();
        if topics == state.subscribed {
            return;
        }
        if topics.is_empty() {
            self.consumer.unsubscribe();
            tracing::info!("Unsubscribed from Kafka because no product has a topic");
            state.subscribed = topics;
            return;
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        match self.consumer.subscribe(&names) {
            Ok(()) => {
                tracing::info!(topics = ?names, previous = ?state.subscribed, "Subscribed to product topics");
                state.subscribed = topics;
            }
            Err(error) => tracing::warn!(
                error = %error,
                topics = ?names,
                "Failed to subscribe to product topics; retrying at the next refresh"
            ),
        }
    }

    /// Commits the last offsets of the partitions still assigned and leaves
    /// the group. Both block, so they run on the blocking thread pool.
    async fn close(self) -> Result<(), KafkaError> {
        let consumer = self.consumer;
        let task = tokio::task::spawn_blocking(move || {
            let committed = consumer.context().committed();
            let result = commit_assigned(&consumer, &committed);
            // Dropping the consumer closes it, which leaves the group.
            drop(consumer);
            result
        });
        task.await.map_err(|source| KafkaError::Close { source })?
    }
}

/// Commits synchronously the offsets of `committed` whose partition is still
/// assigned, so that no offset is written back to a partition that moved to
/// another member, which would set its progress back.
/// Wraps a failed consumer creation. librdkafka's own message for a
/// rejected property repeats the value, so that case gets a message of
/// its own that leaves the value out.
fn creation_error(settings: &KafkaSettings, source: rdkafka::error::KafkaError) -> KafkaError {
    if let rdkafka::error::KafkaError::ClientConfig(code, _, property, _) = &source {
        let problem = match code {
            RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN => "librdkafka has no property of this name",
            _ => "librdkafka rejected its value",
        };
        return KafkaError::ClientProperty {
            property: property.clone(),
            problem,
        };
    }
    KafkaError::CreateConsumer {
        brokers: settings.brokers.clone(),
        group_id: settings.group_id.clone(),
        source: Box::new(source),
    }
}

fn commit_assigned(
    consumer: &StreamConsumer<SourceContext>,
    committed: &Offsets,
) -> Result<(), KafkaError> {
    let assignment = match consumer.assignment() {
        Ok(assignment) => assignment,
        Err(error) => {
            tracing::warn!(error = %error, "Failed to read the Kafka assignment; skipping the final commit");
            return Ok(());
        }
    };
    let assigned: HashSet<(String, i32)> = assignment
        .elements()
        .iter()
        .map(|element| (element.topic().to_owned(), element.partition()))
        .collect();
    let list = partition_list(committed.iter().filter(|(key, _)| assigned.contains(*key)));
    if list.count() == 0 {
        return Ok(());
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .map_err(|source| KafkaError::Commit {
            source: Box::new(source),
        })?;
    tracing::info!(offsets = %describe(&list), "Committed final Kafka offsets");
    Ok(())
}

fn partition_list<'a>(
    offsets: impl Iterator<Item = (&'a (String, i32), &'a i64)>,
) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("an absolute offset is always valid");
    }
    list
}

/// Runs `attempt` until it succeeds, waiting with exponential backoff between
/// failures. Returns `None` when `shutdown` is cancelled during a wait.
async fn retry<T, E, F, Fut>(
    operation: &'static str,
    records: usize,
    shutdown: &CancellationToken,
    mut attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut delay = INITIAL_BACKOFF;
    let mut failures: u32 = 0;
    loop {
        match attempt().await {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(
                        operation,
                        records,
                        failures,
                        "Creator call succeeded after retries"
                    );
                }
                return Some(value);
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(
                    error = %error,
                    operation,
                    records,
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "Creator call failed; retrying the same Kafka batch without committing it"
                );
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {
                        tracing::warn!(operation, records, "Shutdown during retry; the batch is not committed and will be consumed again");
                        return None;
                    }
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails to compile unless `run` can be spawned on a multi-threaded runtime.
    #[allow(dead_code)]
    fn run_future_is_send(source: KafkaSource, shutdown: CancellationToken) {
        fn require_send<T: Send>(_: T) {}
        require_send(source.run(shutdown));
    }

    /// Returns the error of creating a consumer with `property = value`.
    fn rejected(property: &str, value: &str) -> String {
        let settings = KafkaSettings {
            brokers: "127.0.0.1:9".to_owned(),
            client: [(property.to_owned(), value.to_owned())].into(),
            ..KafkaSettings::default()
        };
        let config = settings.client_config().expect("settings pass validation");
        let error = config
            .create::<rdkafka::consumer::BaseConsumer>()
            .err()
            .expect("librdkafka rejects the property");
        creation_error(&settings, error).to_string()
    }

    #[test]
    fn rejected_property_names_it_without_value() {
        let unknown = rejected("sasl.pasword", "hunter2-secret");
        assert!(unknown.contains("`sasl.pasword`"), "{unknown}");
        assert!(unknown.contains("no property of this name"), "{unknown}");
        assert!(!unknown.contains("hunter2-secret"), "{unknown}");

        let invalid = rejected("security.protocol", "hunter2-secret");
        assert!(invalid.contains("`security.protocol`"), "{invalid}");
        assert!(invalid.contains("rejected its value"), "{invalid}");
        assert!(!invalid.contains("hunter2-secret"), "{invalid}");
    }
}
