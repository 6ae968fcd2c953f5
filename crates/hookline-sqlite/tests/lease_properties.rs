//! Property test of the queue's lease logic: random sequences of receives
//! (with leases that last or that expire at once) and settlements (current
//! or stale, acknowledged, dead-lettered or retried) against a model.

mod common;

use common::{fixture, insert_and_enqueue};
use hookline_core::queue::{DeliveryQueue, Leased, Settlement};
use hookline_core::DeliveryId;
use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

/// A lease that outlasts the test.
const HELD: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
enum Operation {
    /// Receives up to `max` tasks, with leases that last or expire at once.
    Receive { max: usize, expire_at_once: bool },
    /// Settles the `pick`-th lease received so far (modulo their count).
    Settle { pick: usize, kind: Kind },
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ack,
    DeadLetter,
    /// A retry due in the past, so due again at once.
    RetryNow,
    /// A retry due in an hour.
    RetryLater,
}

fn operation() -> impl Strategy<Value = Operation> {
    let kind = prop_oneof![
        Just(Kind::Ack),
        Just(Kind::DeadLetter),
        Just(Kind::RetryNow),
        Just(Kind::RetryLater),
    ];
    prop_oneof![
        (1usize..4, any::<bool>()).prop_map(|(max, expire_at_once)| Operation::Receive {
            max,
            expire_at_once
        }),
        (any::<usize>(), kind).prop_map(|(pick, kind)| Operation::Settle { pick, kind }),
    ]
}

/// Where the model puts a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Due and not leased, or leased with a lease that has expired.
    Ready,
    /// Not due for an hour.
    Scheduled,
    /// Leased with a lease that lasts.
    Held,
    /// Acknowledged or dead-lettered.
    Gone,
}

struct ModelTask {
    place: Place,
    /// Index of the lease that may settle the task now.
    current_lease: Option<usize>,
    attempts_made: u32,
}

async fn run(tasks: usize, operations: Vec<Operation>) {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let mut model: HashMap<DeliveryId, ModelTask> = HashMap::new();
    for n in 0..tasks {
        let task = insert_and_enqueue(&fixture, &format!("lease-{n}"), b"{}").await;
        let entry = ModelTask {
            place: Place::Ready,
            current_lease: None,
            attempts_made: 0,
        };
        model.insert(task.delivery_id, entry);
    }
    let mut leases: Vec<Leased> = Vec::new();
    let mut retries = 0u32;

    for operation in operations {
        match operation {
            Operation::Receive {
                max,
                expire_at_once,
            } => {
                let visibility = if expire_at_once { Duration::ZERO } else { HELD };
                let received = queue
                    .receive(max, visibility, Duration::ZERO)
                    .await
                    .unwrap();
                let ready = model.values().filter(|t| t.place == Place::Ready).count();
                assert_eq!(
                    received.len(),
                    max.min(ready),
                    "receive of {max} with {ready} ready"
                );
                for lease in received {
                    let task = model.get_mut(&lease.task.delivery_id).unwrap();
                    assert_eq!(
                        task.place,
                        Place::Ready,
                        "a task that was not ready was leased"
                    );
                    assert_eq!(lease.task.attempts_made, task.attempts_made);
                    task.current_lease = Some(leases.len());
                    task.place = if expire_at_once {
                        Place::Ready
                    } else {
                        Place::Held
                    };
                    leases.push(lease);
                }
            }
            Operation::Settle { pick, kind } => {
                if leases.is_empty() {
                    continue;
                }
                let index = pick % leases.len();
                let lease = leases[index].clone();
                let task = model.get_mut(&lease.task.delivery_id).unwrap();
                let current = task.current_lease == Some(index) && task.place != Place::Gone;
                retries += 1;
                let settlement = match kind {
                    Kind::Ack => Settlement::Ack { lease },
                    Kind::DeadLetter => Settlement::DeadLetter {
                        lease,
                        reason: "test".into(),
                    },
                    Kind::RetryNow | Kind::RetryLater => {
                        let offset = time::Duration::hours(1);
                        let now = OffsetDateTime::now_utc();
                        let due_at = if matches!(kind, Kind::RetryNow) {
                            now - offset
                        } else {
                            now + offset
                        };
                        Settlement::Retry {
                            lease,
                            due_at,
                            attempts_made: retries,
                        }
                    }
                };
                queue.settle(vec![settlement]).await.unwrap();
                if !current {
                    continue;
                }
                task.current_lease = None;
                task.place = match kind {
                    Kind::Ack | Kind::DeadLetter => Place::Gone,
                    Kind::RetryNow => Place::Ready,
                    Kind::RetryLater => Place::Scheduled,
                };
                if matches!(kind, Kind::RetryNow | Kind::RetryLater) {
                    task.attempts_made = retries;
                }
            }
        }
    }

    let depth = queue.depth().await.unwrap();
    let count = |place| model.values().filter(|t| t.place == place).count() as u64;
    assert_eq!(depth.ready, count(Place::Ready), "ready");
    assert_eq!(depth.scheduled, count(Place::Scheduled), "scheduled");
    assert_eq!(depth.leased, count(Place::Held), "leased");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn leases_follow_the_model(
        tasks in 1usize..6,
        operations in proptest::collection::vec(operation(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(tasks, operations));
    }
}
