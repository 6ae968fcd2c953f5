//! Consumer lag per partition, read from librdkafka's statistics and
//! exported as the gauge `hookline_kafka_consumer_lag{topic, partition}`.
//!
//! The lag of a partition is librdkafka's `consumer_lag`: the end offset
//! minus the last committed offset of this consumer group, in records.
//! Before the group's first commit it counts every record from the low
//! watermark, where the group starts reading.

use rdkafka::statistics::Partition;
use rdkafka::Statistics;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Value of `statistics.interval.ms`: how often librdkafka emits the
/// statistics that update the lag gauges, in milliseconds.
pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

const LAG_GAUGE: &str = "hookline_kafka_consumer_lag";

type PartitionKey = (String, i32);

/// Lag gauges of the partitions assigned to this consumer.
#[derive(Default)]
pub(crate) struct LagGauges {
    /// Partitions assigned at the last statistics, so that the gauge of a
    /// partition that moves to another consumer can be set to 0.
    assigned: Mutex<BTreeSet<PartitionKey>>,
}

/// Gauge updates computed from one statistics report.
#[derive(Debug, Default, PartialEq)]
struct LagUpdate {
    /// Assigned partitions whose lag is known.
    lags: BTreeMap<PartitionKey, i64>,
    /// Every assigned partition, with or without a known lag.
    assigned: BTreeSet<PartitionKey>,
    /// Partitions assigned at the previous report but not now.
    released: Vec<PartitionKey>,
}

impl LagGauges {
    /// Sets the lag gauges from one statistics report. A partition that is no
    /// longer assigned gets 0, because its new owner reports its lag now.
    /// An assigned partition whose lag is unknown keeps its last value.
    pub(crate) fn update(&self, statistics: &Statistics) {
        let mut assigned = self.assigned.lock().expect("lag gauges lock");
        let update = compute_update(&assigned, statistics);
        for ((topic, partition), lag) in &update.lags {
            set_gauge(topic, *partition, *lag as f64);
        }
        for (topic, partition) in &update.released {
            set_gauge(topic, *partition, 0.0);
        }
        *assigned = update.assigned;
    }
}

fn set_gauge(topic: &str, partition: i32, value: f64) {
    metrics::gauge!(
        LAG_GAUGE,
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    )
    .set(value);
}

fn compute_update(previous: &BTreeSet<PartitionKey>, statistics: &Statistics) -> LagUpdate {
    let mut update = LagUpdate::default();
    for topic in statistics.topics.values() {
        // Partition -1 is librdkafka's internal "unassigned" partition, and
        // `desired` marks the partitions this consumer was assigned.
        let assigned = topic
            .partitions
            .values()
            .filter(|partition| partition.partition >= 0 && partition.desired);
        for partition in assigned {
            let key = (topic.topic.clone(), partition.partition);
            if let Some(lag) = partition_lag(partition) {
                update.lags.insert(key.clone(), lag);
            }
            update.assigned.insert(key);
        }
    }
    update.released = previous.difference(&update.assigned).cloned().collect();
    update
}

/// Returns the lag of an assigned partition, or `None` while it is unknown.
fn partition_lag(partition: &Partition) -> Option<i64> {
    if partition.consumer_lag >= 0 {
        return Some(partition.consumer_lag);
    }
    // librdkafka reports -1 while the group has committed no offset for the
    // partition. Once fetching is active, the group's start is known to be
    // the low watermark (the source sets auto.offset.reset = earliest), so
    // every record up to the last stable offset counts. The last stable
    // offset is the end offset under librdkafka's default isolation level,
    // read_committed.
    let never_committed = partition.committed_offset < 0;
    let fetching = partition.fetch_state == "active";
    let watermarks_known = partition.lo_offset >= 0 && partition.ls_offset >= partition.lo_offset;
    if never_committed && fetching && watermarks_known {
        return Some(partition.ls_offset - partition.lo_offset);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::statistics::{Partition, Topic};

    fn partition(id: i32, desired: bool, consumer_lag: i64) -> Partition {
        Partition {
            partition: id,
            desired,
            consumer_lag,
            ..Partition::default()
        }
    }

    fn statistics(topic: &str, partitions: Vec<Partition>) -> Statistics {
        let topic_statistics = Topic {
            topic: topic.to_owned(),
            partitions: partitions
                .into_iter()
                .map(|partition| (partition.partition, partition))
                .collect(),
            ..Topic::default()
        };
        Statistics {
            topics: [(topic.to_owned(), topic_statistics)].into(),
            ..Statistics::default()
        }
    }

    fn key(topic: &str, partition: i32) -> PartitionKey {
        (topic.to_owned(), partition)
    }

    #[test]
    fn assigned_partitions_report_known_lag() {
        let report = statistics(
            "orders",
            vec![
                partition(-1, true, 7),
                partition(0, true, 12),
                partition(1, true, -1),
                partition(2, false, 40),
            ],
        );
        let update = compute_update(&BTreeSet::new(), &report);
        assert_eq!(update.lags, [(key("orders", 0), 12)].into());
        assert_eq!(update.assigned, [key("orders", 0), key("orders", 1)].into());
        assert!(update.released.is_empty());
    }

    #[test]
    fn uncommitted_partitions_count_from_low_watermark() {
        let fetching = |id, lo_offset, ls_offset| Partition {
            committed_offset: -1001,
            fetch_state: "active".to_owned(),
            lo_offset,
            ls_offset,
            ..partition(id, true, -1)
        };
        let querying = Partition {
            fetch_state: "offset-query".to_owned(),
            ..fetching(2, 0, 50)
        };
        let report = statistics(
            "orders",
            vec![fetching(0, 0, 0), fetching(1, 10, 25), querying],
        );
        let update = compute_update(&BTreeSet::new(), &report);
        assert_eq!(
            update.lags,
            [(key("orders", 0), 0), (key("orders", 1), 15)].into()
        );
        assert!(update.assigned.contains(&key("orders", 2)));
    }

    #[test]
    fn revoked_partitions_are_released() {
        let previous = [key("orders", 0), key("orders", 1)].into();
        let report = statistics(
            "orders",
            vec![partition(1, true, 3), partition(0, false, 9)],
        );
        let update = compute_update(&previous, &report);
        assert_eq!(update.released, vec![key("orders", 0)]);
        assert_eq!(update.lags, [(key("orders", 1), 3)].into());
    }
}
