//! Queue names, queue arguments and the mapping from a retry delay to a
//! delay queue.
//!
//! All queues are durable quorum queues on the default exchange:
//! - `<name>` is the main queue that the dispatcher consumes.
//! - `<name>.delay.<ms>ms` keeps messages for `x-message-ttl` = `<ms>` and
//!   then dead-letters them back to `<name>`. Every message in one delay
//!   queue has the same TTL, so they expire in publish order at the head.
//! - `<name>.dlq` keeps dead letters.
//!
//! The delay is part of the name because the broker rejects a redeclaration
//! with other arguments (`PRECONDITION_FAILED`). A changed retry schedule
//! therefore declares new delay queues next to the old ones.

use crate::settings::AmqpSettings;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongLongInt};
use lapin::{Channel, Queue};
use std::time::Duration;

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;

/// Maximum delay queue TTL: the last whole hour below 2^32 ms (about 49.7
/// days). It keeps every delay queue name within the ten digits that
/// [`AmqpSettings::validate`] reserves for the delay.
pub(crate) const MAX_DELAY_MS: u64 = 1_193 * HOUR_MS;

/// Names and retry steps derived from [`AmqpSettings`].
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    main: String,
    dead_letter: String,
    /// Waits of the retry schedule in milliseconds, ascending and unique.
    steps: Vec<u64>,
}

impl Topology {
    pub(crate) fn new(settings: &AmqpSettings) -> Self {
        Self {
            main: settings.queue_name.clone(),
            dead_letter: format!("{}.dlq", settings.queue_name),
            steps: schedule_steps(settings),
        }
    }

    pub(crate) fn main(&self) -> &str {
        &self.main
    }

    pub(crate) fn dead_letter(&self) -> &str {
        &self.dead_letter
    }

    pub(crate) fn steps(&self) -> &[u64] {
        &self.steps
    }

    pub(crate) fn delay_queue(&self, delay_ms: u64) -> String {
        format!("{}.delay.{delay_ms}ms", self.main)
    }

    /// Picks the delay queue for a wait of `delay`: the smallest of the
    /// retry steps and the rounded-up delay that is at least `delay`.
    /// Delays round up to whole seconds below a minute, to whole minutes
    /// below an hour and to whole hours beyond, so the set of delay queues
    /// stays bounded. Returns `None` when the task is due now.
    ///
    /// NOTE: delays beyond [`MAX_DELAY_MS`] are shortened to it.
    pub(crate) fn delay_bucket(&self, delay: Duration) -> Option<u64> {
        let delay_ms = ceil_millis(delay).min(MAX_DELAY_MS);
        if delay_ms == 0 {
            return None;
        }
        let granularity = if delay_ms <= MINUTE_MS {
            SECOND_MS
        } else if delay_ms <= HOUR_MS {
            MINUTE_MS
        } else {
            HOUR_MS
        };
        let rounded = delay_ms.div_ceil(granularity) * granularity;
        let step = self.steps.iter().copied().find(|step| *step >= delay_ms);
        Some(step.map_or(rounded, |step| step.min(rounded)))
    }

    /// Declares the main queue, the dead-letter queue and one delay queue
    /// per retry step.
    pub(crate) async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        self.declare_dead_letter(channel).await?;
        declare(channel, &self.main, self.main_arguments()).await?;
        for step in &self.steps {
            self.declare_delay(channel, *step).await?;
        }
        Ok(())
    }

    pub(crate) async fn declare_dead_letter(&self, channel: &Channel) -> lapin::Result<Queue> {
        declare(channel, &self.dead_letter, quorum_arguments()).await
    }

    /// Declares the delay queue for `delay_ms`. Declaring an existing one
    /// with the same arguments changes nothing and returns its ready count.
    pub(crate) async fn declare_delay(
        &self,
        channel: &Channel,
        delay_ms: u64,
    ) -> lapin::Result<Queue> {
        let mut arguments = dead_lettering_arguments(&self.main);
        let ttl = LongLongInt::try_from(delay_ms).unwrap_or(LongLongInt::MAX);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        declare(channel, &self.delay_queue(delay_ms), arguments).await
    }

    /// Arguments of the main queue. Since RabbitMQ 4.0.0 (see its release
    /// notes) a quorum queue dead-letters or drops a message redelivered 20
    /// times, so the main queue names the dead-letter queue as its target.
    fn main_arguments(&self) -> FieldTable {
        dead_lettering_arguments(&self.dead_letter)
    }
}

/// Checks that a queue exists and returns its ready count, without changing
/// it. The broker closes the channel when the queue does not exist.
pub(crate) async fn declare_passive(channel: &Channel, name: &str) -> lapin::Result<Queue> {
    let options = QueueDeclareOptions::durable().passive();
    channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await
}

async fn declare(channel: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<Queue> {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
        .await
}

fn quorum_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments
}

/// Arguments of a quorum queue that dead-letters into `target` through the
/// default exchange. The `at-least-once` strategy keeps a message in the
/// source queue until the target confirmed it. That strategy requires
/// `reject-publish` overflow, which matters only when a length limit is set.
fn dead_lettering_arguments(target: &str) -> FieldTable {
    let mut arguments = quorum_arguments();
    arguments.insert("x-dead-letter-exchange".into(), text(""));
    arguments.insert("x-dead-letter-routing-key".into(), text(target));
    arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    arguments.insert("x-overflow".into(), text("reject-publish"));
    arguments
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// Waits of retries `1..=max_retries` in whole milliseconds, capped, sorted
/// and without duplicates.
fn schedule_steps(settings: &AmqpSettings) -> Vec<u64> {
    let mut steps = Vec::new();
    let mut previous = None;
    for retry in 1..=settings.retry.max_retries {
        let wait = settings.retry.wait(retry);
        // Waits never shrink, so an equal wait means every later one is equal
        // too (a zero backoff unit, or saturation).
        if previous == Some(wait) {
            break;
        }
        previous = Some(wait);
        let wait_ms = ceil_millis(wait).min(MAX_DELAY_MS);
        if wait_ms > 0 {
            steps.push(wait_ms);
        }
    }
    steps.sort_unstable();
    steps.dedup();
    steps
}

fn ceil_millis(duration: Duration) -> u64 {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::RetryPolicy;

    fn topology(retry: RetryPolicy) -> Topology {
        Topology::new(&AmqpSettings {
            retry,
            ..AmqpSettings::default()
        })
    }

    #[test]
    fn default_schedule_has_one_queue_per_retry() {
        let topology = topology(RetryPolicy::default());
        assert_eq!(
            topology.steps(),
            [61_000, 76_000, 141_000, 316_000, 685_000]
        );
        assert_eq!(topology.delay_queue(61_000), "webhookQueue.delay.61000ms");
        assert_eq!(topology.dead_letter(), "webhookQueue.dlq");
    }

    #[test]
    fn delays_round_up_to_steps_or_bounded_units() {
        let topology = topology(RetryPolicy::default());
        let cases = [
            (Duration::ZERO, None),
            (Duration::from_millis(1), Some(1_000)),
            (Duration::from_millis(200), Some(1_000)),
            (Duration::from_millis(5_001), Some(6_000)),
            (Duration::from_secs(60), Some(60_000)),
            (Duration::from_millis(60_990), Some(61_000)),
            (Duration::from_secs(61), Some(61_000)),
            (Duration::from_secs(62), Some(76_000)),
            (Duration::from_secs(77), Some(120_000)),
            (Duration::from_secs(684), Some(685_000)),
            (Duration::from_secs(686), Some(720_000)),
            (Duration::from_secs(3_601), Some(2 * HOUR_MS)),
            (Duration::from_secs(100 * 86_400), Some(MAX_DELAY_MS)),
        ];
        for (delay, expected) in cases {
            assert_eq!(topology.delay_bucket(delay), expected, "delay {delay:?}");
        }
    }

    #[test]
    fn zero_backoff_unit_gives_one_step() {
        let topology = topology(RetryPolicy {
            interval: Duration::from_secs(30),
            backoff_unit: Duration::ZERO,
            max_retries: u32::MAX,
        });
        assert_eq!(topology.steps(), [30_000]);
    }

    #[test]
    fn millisecond_schedule_keeps_exact_steps() {
        let topology = topology(RetryPolicy {
            interval: Duration::from_millis(200),
            backoff_unit: Duration::from_millis(10),
            max_retries: 3,
        });
        assert_eq!(topology.steps(), [210, 360, 1_010]);
        assert_eq!(topology.delay_bucket(Duration::from_millis(205)), Some(210));
        assert_eq!(
            topology.delay_bucket(Duration::from_millis(500)),
            Some(1_000)
        );
    }

    #[test]
    fn huge_waits_are_capped() {
        let topology = topology(RetryPolicy {
            interval: Duration::from_secs(u64::MAX / 4),
            backoff_unit: Duration::from_secs(1),
            max_retries: 3,
        });
        assert_eq!(topology.steps(), [MAX_DELAY_MS]);
    }
}
