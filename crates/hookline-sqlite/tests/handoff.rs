//! Tasks handed from an insert straight to a receiver of the same process.
//! Their rows are leased in the table, so settling and lease expiry work as
//! for any lease. Neither a backlog in the table nor due retries wait long
//! behind them.

mod common;

use common::{fixture, insert_and_enqueue, new_event, Fixture, PRODUCT};
use hookline_core::queue::{DeliveryQueue, Leased, QueueDepth, Settlement};
use hookline_core::shared_database::SharedDatabase;
use hookline_core::store::{InsertOutcome, NewEvent};
use hookline_core::DeliveryId;
use hookline_sqlite::SqliteBackend;
use std::time::Duration;

const VISIBILITY: Duration = Duration::from_secs(30);

/// Inserts one event per key through the shared writes and returns them.
async fn insert(fixture: &Fixture, keys: &[&str]) -> Vec<NewEvent> {
    let events: Vec<NewEvent> = keys
        .iter()
        .map(|key| new_event(PRODUCT, key, key.as_bytes(), &[&fixture.application.id]))
        .collect();
    let outcomes = fixture
        .backend
        .shared()
        .insert_and_enqueue(&events)
        .await
        .expect("insert and enqueue");
    assert!(outcomes.iter().all(|o| *o == InsertOutcome::Inserted));
    events
}

async fn receive(fixture: &Fixture, max: usize, visibility: Duration) -> Vec<Leased> {
    fixture
        .backend
        .queue()
        .receive(max, visibility, Duration::ZERO)
        .await
        .expect("receive")
}

async fn depth(fixture: &Fixture) -> QueueDepth {
    fixture.backend.queue().depth().await.expect("depth")
}

fn delivery_ids(leased: &[Leased]) -> Vec<DeliveryId> {
    leased
        .iter()
        .map(|lease| lease.task.delivery_id.clone())
        .collect()
}

fn delivery_of(new_event: &NewEvent) -> DeliveryId {
    new_event.deliveries[0].0.clone()
}

#[tokio::test]
async fn handoff_stores_its_lease() {
    let fixture = fixture().await;
    assert!(receive(&fixture, 10, VISIBILITY).await.is_empty());

    let events = insert(&fixture, &["order-1", "order-2"]).await;
    let before = depth(&fixture).await;
    assert_eq!(
        (before.ready, before.leased),
        (0, 2),
        "the rows are written leased"
    );

    let leased = receive(&fixture, 10, VISIBILITY).await;
    assert_eq!(
        delivery_ids(&leased),
        vec![delivery_of(&events[0]), delivery_of(&events[1])]
    );
    assert_eq!(leased[0].task.payload.as_ref(), b"order-1");
    assert_eq!(leased[1].task.webhook_id, events[1].event.webhook_id);
    assert_eq!(leased[0].task.attempts_made, 0);

    let settlements = leased
        .into_iter()
        .map(|lease| Settlement::Ack { lease })
        .collect();
    fixture
        .backend
        .queue()
        .settle(settlements)
        .await
        .expect("settle");
    let after = depth(&fixture).await;
    assert_eq!(
        (after.ready, after.leased, after.scheduled),
        (0, 0, 0),
        "the handed-off token matched the stored one, so the acks removed the rows"
    );
}

#[tokio::test]
async fn handoff_lease_blocks_other_process() {
    let fixture = fixture().await;
    let visibility = Duration::from_millis(300);
    assert!(receive(&fixture, 10, visibility).await.is_empty());
    let events = insert(&fixture, &["order-1"]).await;

    let other = SqliteBackend::open(fixture.dir.path())
        .await
        .expect("open a second backend");
    let queue = other.queue();
    let early = queue
        .receive(10, VISIBILITY, Duration::ZERO)
        .await
        .expect("receive");
    assert!(early.is_empty(), "the row is leased to this process");

    tokio::time::sleep(visibility + Duration::from_millis(100)).await;
    let late = queue
        .receive(10, VISIBILITY, Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(delivery_ids(&late), vec![delivery_of(&events[0])]);
}

#[tokio::test]
async fn stale_handoff_is_leased_again() {
    let fixture = fixture().await;
    let visibility = Duration::from_millis(400);
    assert!(receive(&fixture, 10, visibility).await.is_empty());
    let events = insert(&fixture, &["order-1"]).await;

    tokio::time::sleep(Duration::from_millis(250)).await;
    let leased = receive(&fixture, 10, visibility).await;
    assert_eq!(
        delivery_ids(&leased),
        vec![delivery_of(&events[0])],
        "the stale task comes back once, leased from the table"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        receive(&fixture, 10, visibility).await.is_empty(),
        "the new lease, taken 250 ms ago, still holds"
    );

    let settlements = vec![Settlement::Ack {
        lease: leased.into_iter().next().expect("one task"),
    }];
    fixture
        .backend
        .queue()
        .settle(settlements)
        .await
        .expect("settle");
    assert_eq!(depth(&fixture).await.leased, 0);
}

#[tokio::test]
async fn table_backlog_comes_first() {
    let fixture = fixture().await;
    let old = insert(&fixture, &["old-1", "old-2", "old-3"]).await;

    let first = receive(&fixture, 2, VISIBILITY).await;
    assert_eq!(
        delivery_ids(&first),
        vec![delivery_of(&old[0]), delivery_of(&old[1])]
    );
    let new = insert(&fixture, &["new-1"]).await;
    assert_eq!(
        depth(&fixture).await.ready,
        2,
        "with a backlog in the table, the new task joins it unleased"
    );

    let second = receive(&fixture, 10, VISIBILITY).await;
    assert_eq!(
        delivery_ids(&second),
        vec![delivery_of(&old[2]), delivery_of(&new[0])]
    );
    let newer = insert(&fixture, &["new-2"]).await;
    let after = depth(&fixture).await;
    assert_eq!(
        (after.ready, after.leased),
        (0, 5),
        "with the table drained, the next insert is handed off again"
    );
    let third = receive(&fixture, 10, VISIBILITY).await;
    assert_eq!(delivery_ids(&third), vec![delivery_of(&newer[0])]);
}

#[tokio::test]
async fn due_retry_shares_the_batch() {
    let fixture = fixture().await;
    assert!(receive(&fixture, 10, VISIBILITY).await.is_empty());
    let retry = insert_and_enqueue(&fixture, "retried", b"{}").await;
    let handed = insert(&fixture, &["order-1", "order-2", "order-3", "order-4"]).await;

    tokio::time::sleep(Duration::from_millis(150)).await;
    let leased = receive(&fixture, 2, VISIBILITY).await;
    assert_eq!(
        delivery_ids(&leased),
        vec![delivery_of(&handed[0]), retry.delivery_id.clone()],
        "a lease from the table is due, so half the batch comes from it"
    );
}
