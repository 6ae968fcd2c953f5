//! Disabling and enabling applications, failure streaks, and waking the
//! kept tasks of an enabled application.

mod common;

use common::{fixture, insert_and_enqueue, Fixture};
use hookline_core::endpoint_health::Disablement;
use hookline_core::queue::{DeliveryQueue, Leased, Settlement};
use hookline_core::store::Store;
use hookline_core::{ApplicationId, ApplicationState};
use std::time::Duration;
use time::OffsetDateTime;

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap()
}

#[tokio::test]
async fn disable_stores_reason_and_time_once() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let id = &fixture.application.id;
    assert_eq!(store.disablement(id).await.unwrap(), None);

    let gone = Disablement {
        reason: "the endpoint responded with HTTP 410 Gone".into(),
        disabled_at: at(10),
    };
    assert!(store.disable_application(id, &gone).await.unwrap());
    let later = Disablement {
        reason: "a second reason".into(),
        disabled_at: at(20),
    };
    assert!(
        !store.disable_application(id, &later).await.unwrap(),
        "a disabled application is not disabled again"
    );
    assert_eq!(store.disablement(id).await.unwrap(), Some(gone));
    let application = store.application(id).await.unwrap().unwrap();
    assert_eq!(application.state, ApplicationState::Disabled);

    assert!(store.enable_application(id).await.unwrap());
    assert_eq!(store.disablement(id).await.unwrap(), None);
    let application = store.application(id).await.unwrap().unwrap();
    assert_eq!(application.state, ApplicationState::Active);

    let unknown = ApplicationId::generate();
    assert!(!store.disable_application(&unknown, &later).await.unwrap());
    assert!(!store.enable_application(&unknown).await.unwrap());
}

#[tokio::test]
async fn failure_streak_starts_once_and_ends_on_success() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let id = &fixture.application.id;

    let first = store.record_endpoint_failure(id, at(1)).await.unwrap();
    assert_eq!(first, Some(at(1)));
    let second = store.record_endpoint_failure(id, at(5)).await.unwrap();
    assert_eq!(second, Some(at(1)), "a streak keeps its start");

    store.record_endpoint_success(id).await.unwrap();
    let fresh = store.record_endpoint_failure(id, at(9)).await.unwrap();
    assert_eq!(fresh, Some(at(9)), "a success ends the streak");

    assert!(store.enable_application(id).await.unwrap());
    let after_enable = store.record_endpoint_failure(id, at(12)).await.unwrap();
    assert_eq!(after_enable, Some(at(12)), "enabling ends the streak");

    let unknown = ApplicationId::generate();
    assert_eq!(
        store
            .record_endpoint_failure(&unknown, at(1))
            .await
            .unwrap(),
        None
    );
}

const VISIBILITY: Duration = Duration::from_secs(60);

/// Inserts three events of the fixture's application, keyed
/// `<prefix>-<n>`, and leases their tasks.
async fn lease_three_tasks(fixture: &Fixture, prefix: &str) -> Vec<Leased> {
    for n in 0..3 {
        insert_and_enqueue(fixture, &format!("{prefix}-{n}"), b"{}").await;
    }
    let queue = fixture.backend.queue();
    let leased = queue.receive(10, VISIBILITY, Duration::ZERO).await.unwrap();
    assert_eq!(leased.len(), 3);
    leased
}

#[tokio::test]
async fn wake_makes_postponed_tasks_due_and_spares_leases() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let leased = lease_three_tasks(&fixture, "kept").await;
    let mut leased = leased.into_iter();
    let in_flight = leased.next().unwrap();
    let postponed: Vec<Settlement> = leased
        .map(|lease| Settlement::Retry {
            lease,
            due_at: OffsetDateTime::now_utc() + Duration::from_secs(3600),
            attempts_made: 1,
        })
        .collect();
    queue.settle(postponed).await.unwrap();
    let none = queue.receive(10, VISIBILITY, Duration::ZERO).await.unwrap();
    assert!(none.is_empty(), "postponed tasks are not due yet");

    let other = ApplicationId::generate();
    assert_eq!(queue.wake_application(&other).await.unwrap(), 0);
    let woken = queue
        .wake_application(&fixture.application.id)
        .await
        .unwrap();
    assert_eq!(woken, 2, "the leased task keeps its lease");
    let due = queue.receive(10, VISIBILITY, Duration::ZERO).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(due
        .iter()
        .all(|lease| lease.task.delivery_id != in_flight.task.delivery_id));
    assert!(due.iter().all(|lease| lease.task.attempts_made == 1));
}

#[tokio::test]
async fn wake_postponed_keeps_later_retries() {
    let fixture = fixture().await;
    let queue = fixture.backend.queue();
    let leased = lease_three_tasks(&fixture, "congested").await;
    let now = OffsetDateTime::now_utc();
    let later_retry = leased[2].task.delivery_id.clone();
    let settlements = leased
        .into_iter()
        .zip([10, 20, 3600])
        .map(|(lease, seconds)| Settlement::Retry {
            lease,
            due_at: now + Duration::from_secs(seconds),
            attempts_made: 1,
        })
        .collect();
    queue.settle(settlements).await.unwrap();

    let until = now + Duration::from_secs(30);
    let other = ApplicationId::generate();
    assert_eq!(queue.wake_postponed(&other, until).await.unwrap(), 0);
    let woken = queue
        .wake_postponed(&fixture.application.id, until)
        .await
        .unwrap();
    assert_eq!(woken, 2, "the retry due after `until` keeps its time");
    let due = queue.receive(10, VISIBILITY, Duration::ZERO).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(due
        .iter()
        .all(|lease| lease.task.delivery_id != later_retry));
}
