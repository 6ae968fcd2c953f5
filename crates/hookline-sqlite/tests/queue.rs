//! The delivery queue: leases, settlement, visibility timeouts and waiting.

mod common;

use bytes::Bytes;
use common::{fixture, insert_and_enqueue, new_event, tasks_of, PRODUCT};
use hookline_core::queue::{DeliveryQueue, Leased, Settlement};
use hookline_core::store::{AttemptOutcome, DeliveryUpdate, Store};
use hookline_core::{Attempt, AttemptResult, DeliveryState};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const VISIBILITY: Duration = Duration::from_secs(30);
const NO_WAIT: Duration = Duration::ZERO;

#[tokio::test]
async fn receive_returns_task_with_payload() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let task = insert_and_enqueue(&fixture, "order-1", br#"{"total":12.5}"#).await;

    let leased = queue.receive(10, VISIBILITY, NO_WAIT).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].task, task);
    assert_eq!(
        leased[0].task.payload,
        Bytes::from_static(br#"{"total":12.5}"#)
    );

    let depth = queue.depth().await.unwrap();
    assert_eq!(depth.leased, 1);
    assert_eq!(depth.ready, 0);
    assert_eq!(depth.scheduled, 0);
    assert!(queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn ack_removes_task() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    insert_and_enqueue(&fixture, "order-1", b"{}").await;

    let lease = queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .remove(0);
    queue.settle(vec![Settlement::Ack { lease }]).await.unwrap();

    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.ready, depth.scheduled, depth.leased), (0, 0, 0));
    assert_eq!(depth.oldest_ready_age_secs, None);
    assert!(queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn receive_takes_at_most_max_oldest_first() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let first = insert_and_enqueue(&fixture, "order-1", b"{}").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = insert_and_enqueue(&fixture, "order-2", b"{}").await;

    let leased = queue.receive(1, VISIBILITY, NO_WAIT).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].task.delivery_id, first.delivery_id);
    assert_eq!(queue.depth().await.unwrap().ready, 1);

    let leased = queue.receive(10, VISIBILITY, NO_WAIT).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].task.delivery_id, second.delivery_id);
}

#[tokio::test]
async fn retry_hides_task_until_due() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let task = insert_and_enqueue(&fixture, "order-1", b"{}").await;
    let lease = queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .remove(0);

    let due_at = OffsetDateTime::now_utc() + Duration::from_millis(200);
    queue
        .settle(vec![Settlement::Retry {
            lease,
            due_at,
            attempts_made: 1,
        }])
        .await
        .unwrap();
    assert!(queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .is_empty());
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.ready, depth.scheduled, depth.leased), (0, 1, 0));

    tokio::time::sleep(Duration::from_millis(250)).await;
    let leased = queue.receive(10, VISIBILITY, NO_WAIT).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].task.delivery_id, task.delivery_id);
    assert_eq!(leased[0].task.attempts_made, 1);
}

#[tokio::test]
async fn waiting_receive_wakes_when_retry_is_due() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    insert_and_enqueue(&fixture, "order-1", b"{}").await;
    let lease = queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .remove(0);
    let due_at = OffsetDateTime::now_utc() + Duration::from_millis(200);
    queue
        .settle(vec![Settlement::Retry {
            lease,
            due_at,
            attempts_made: 1,
        }])
        .await
        .unwrap();

    let started = Instant::now();
    let leased = queue
        .receive(10, VISIBILITY, Duration::from_secs(5))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(leased.len(), 1);
    assert!(
        elapsed >= Duration::from_millis(150),
        "returned before due: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "woke late: {elapsed:?}");
}

#[tokio::test]
async fn expired_lease_makes_task_visible_again() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let task = insert_and_enqueue(&fixture, "order-1", b"{}").await;

    let visibility = Duration::from_millis(200);
    let first = queue
        .receive(10, visibility, NO_WAIT)
        .await
        .unwrap()
        .remove(0);
    assert!(queue
        .receive(10, visibility, NO_WAIT)
        .await
        .unwrap()
        .is_empty());

    tokio::time::sleep(Duration::from_millis(250)).await;
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.ready, depth.leased), (1, 0));
    let second = queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.task.delivery_id, task.delivery_id);
    assert_ne!(second.lease, first.lease);
}

#[tokio::test]
async fn stale_lease_cannot_ack() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    insert_and_enqueue(&fixture, "order-1", b"{}").await;
    let stale = queue
        .receive(10, Duration::from_millis(100), NO_WAIT)
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let current = queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .remove(0);

    queue
        .settle(vec![Settlement::Ack {
            lease: stale.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(
        queue.depth().await.unwrap().leased,
        1,
        "stale ack removed the task"
    );

    let stale_retry = Settlement::Retry {
        lease: stale,
        due_at: OffsetDateTime::now_utc(),
        attempts_made: 1,
    };
    queue.settle(vec![stale_retry]).await.unwrap();
    assert_eq!(
        queue.depth().await.unwrap().leased,
        1,
        "stale retry ended the lease"
    );

    queue
        .settle(vec![Settlement::Ack { lease: current }])
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap().leased, 0);
}

#[tokio::test]
async fn dead_letter_removes_task_and_revive_requeues() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let store = fixture.backend.store();
    insert_and_enqueue(&fixture, "order-1", b"{}").await;
    let lease = queue
        .receive(10, VISIBILITY, NO_WAIT)
        .await
        .unwrap()
        .remove(0);
    let id = lease.task.delivery_id.clone();

    let reason = "endpoint responded with HTTP status 500 after 6 attempts".to_owned();
    record_dead(&*store, &lease, &reason).await;
    queue
        .settle(vec![Settlement::DeadLetter {
            lease,
            reason: reason.clone(),
        }])
        .await
        .unwrap();

    let depth = queue.depth().await.unwrap();
    assert_eq!(
        (depth.ready, depth.scheduled, depth.leased, depth.dead),
        (0, 0, 0, 1)
    );
    let record = store.delivery(&id).await.unwrap().expect("delivery exists");
    assert_eq!(record.state, DeliveryState::Dead);
    assert_eq!(record.last_error.as_deref(), Some(reason.as_str()));

    let revived = store
        .revive(&id)
        .await
        .unwrap()
        .expect("dead delivery is revived");
    queue.enqueue(vec![revived]).await.unwrap();
    let leased = queue.receive(10, VISIBILITY, NO_WAIT).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].task.delivery_id, id);
    assert_eq!(leased[0].task.attempts_made, 0);
    assert_eq!(queue.depth().await.unwrap().dead, 0);
}

async fn record_dead(store: &dyn Store, lease: &Leased, reason: &str) {
    let outcome = AttemptOutcome {
        attempt: Attempt {
            delivery_id: lease.task.delivery_id.clone(),
            number: 6,
            started_at: OffsetDateTime::now_utc(),
            duration_ms: 12,
            result: AttemptResult::Response { status: 500 },
            response_excerpt: None,
            response_truncated: false,
        },
        update: DeliveryUpdate::Dead {
            reason: reason.to_owned(),
        },
    };
    store.record_outcomes(&[outcome]).await.unwrap();
}

#[tokio::test]
async fn enqueue_twice_keeps_one_task() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let task = insert_and_enqueue(&fixture, "order-1", b"{}").await;

    queue.enqueue(vec![task.clone(), task]).await.unwrap();
    assert_eq!(
        queue.receive(10, VISIBILITY, NO_WAIT).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn waiting_receive_wakes_on_enqueue() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let event = new_event(PRODUCT, "order-1", b"{}", &[&fixture.application.id]);
    fixture
        .backend
        .store()
        .insert_events(std::slice::from_ref(&event))
        .await
        .unwrap();

    let receiver = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let leased = queue.receive(10, VISIBILITY, Duration::from_secs(10)).await;
            (leased, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    queue.enqueue(tasks_of(&event)).await.unwrap();

    let (leased, elapsed) = receiver.await.unwrap();
    assert_eq!(leased.unwrap().len(), 1);
    assert!(
        elapsed < Duration::from_secs(2),
        "woke only after {elapsed:?}"
    );
}

#[tokio::test]
async fn waiting_receive_returns_empty_after_wait() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();

    let started = Instant::now();
    let leased = queue
        .receive(10, VISIBILITY, Duration::from_millis(200))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(leased.is_empty());
    assert!(
        elapsed >= Duration::from_millis(190),
        "returned early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "returned late: {elapsed:?}"
    );
}
