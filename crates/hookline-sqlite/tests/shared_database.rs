//! The writes that span the store and the queue in one transaction: an
//! inserted event is enqueued and marked at once, a duplicate is not
//! enqueued twice, and finished work is recorded and settled together.

mod common;

use common::{fixture, new_event, PRODUCT};
use hookline_core::queue::{DeliveryQueue, Settlement};
use hookline_core::shared_database::SharedDatabase;
use hookline_core::store::{AttemptOutcome, DeliveryUpdate, InsertOutcome, Store};
use hookline_core::usage::{UsageBatch, UsageEvent, UsageKind, UsageQuery};
use hookline_core::{Attempt, AttemptResult, DeliveryState};
use std::time::Duration;
use time::OffsetDateTime;

const VISIBILITY: Duration = Duration::from_secs(30);

#[tokio::test]
async fn insert_enqueues_and_marks_new_events() {
    let fixture = fixture().await;
    let shared = fixture.backend.shared();
    let payload = br#"{"order_id":"A-1","note":"\u00e9\u0000 bytes"}"#;
    let first = new_event(PRODUCT, "order-1", payload, &[&fixture.application.id]);
    let again = new_event(PRODUCT, "order-1", b"{}", &[&fixture.application.id]);
    // Bytes that are not UTF-8, as in an Avro payload, and an empty one.
    let binary: &[u8] = &[0x00, 0xff, 0x9f, 0x5b, 0x00];
    let other = new_event(PRODUCT, "order-2", binary, &[&fixture.application.id]);
    let empty = new_event(PRODUCT, "order-3", b"", &[&fixture.application.id]);

    let outcomes = shared
        .insert_and_enqueue(&[first.clone(), again.clone(), other.clone(), empty.clone()])
        .await
        .expect("insert and enqueue");
    assert_eq!(outcomes[0], InsertOutcome::Inserted);
    assert_eq!(
        outcomes[1],
        InsertOutcome::Duplicate {
            existing: first.event.id.clone(),
            enqueued: false,
        },
        "the second event with the key belongs to the first"
    );
    assert_eq!(outcomes[2], InsertOutcome::Inserted);
    assert_eq!(outcomes[3], InsertOutcome::Inserted);

    let leased = fixture
        .backend
        .queue()
        .receive(10, VISIBILITY, Duration::ZERO)
        .await
        .expect("receive");
    let mut events: Vec<_> = leased
        .iter()
        .map(|lease| lease.task.event_id.clone())
        .collect();
    events.sort();
    let mut expected = vec![
        first.event.id.clone(),
        other.event.id.clone(),
        empty.event.id.clone(),
    ];
    expected.sort();
    assert_eq!(
        events, expected,
        "one task per new event, none for the duplicate"
    );
    let first_task = leased
        .iter()
        .find(|lease| lease.task.event_id == first.event.id)
        .expect("task of the first event");
    assert_eq!(
        first_task.task.payload.as_ref(),
        payload,
        "payload bytes survive"
    );
    assert_eq!(first_task.task.webhook_id, first.event.webhook_id);
    let payload_of = |event: &hookline_core::Event| {
        leased
            .iter()
            .find(|lease| lease.task.event_id == event.id)
            .map(|lease| lease.task.payload.to_vec())
    };
    assert_eq!(payload_of(&other.event), Some(binary.to_vec()));
    assert_eq!(payload_of(&empty.event), Some(Vec::new()));

    let store = fixture.backend.store();
    let unenqueued = store
        .unenqueued_tasks(OffsetDateTime::now_utc() + time::Duration::hours(1), 10)
        .await
        .expect("unenqueued tasks");
    assert!(unenqueued.is_empty(), "new events are marked enqueued");

    let outcomes = shared
        .insert_and_enqueue(&[again])
        .await
        .expect("insert the duplicate again");
    assert_eq!(
        outcomes,
        vec![InsertOutcome::Duplicate {
            existing: first.event.id.clone(),
            enqueued: true,
        }]
    );
}

#[tokio::test]
async fn record_and_settle_writes_all_parts() {
    let fixture = fixture().await;
    let shared = fixture.backend.shared();
    let queue = fixture.backend.queue();
    let store = fixture.backend.store();
    let application = &fixture.application;
    let delivered = new_event(PRODUCT, "order-1", b"{}", &[&application.id]);
    let retried = new_event(PRODUCT, "order-2", b"{}", &[&application.id]);
    shared
        .insert_and_enqueue(&[delivered.clone(), retried.clone()])
        .await
        .expect("insert and enqueue");
    let mut leased = queue
        .receive(10, VISIBILITY, Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(leased.len(), 2);
    leased.sort_by_key(|lease| lease.task.event_id != delivered.event.id);
    let [done, failed] = <[_; 2]>::try_from(leased).expect("two leases");

    let now = OffsetDateTime::now_utc();
    let retry_at = now + time::Duration::hours(1);
    let attempt = |lease: &hookline_core::queue::Leased, status: u16| Attempt {
        delivery_id: lease.task.delivery_id.clone(),
        number: 1,
        started_at: now,
        duration_ms: 12,
        result: AttemptResult::Response { status },
        response_excerpt: None,
        response_truncated: false,
    };
    let outcomes = vec![
        AttemptOutcome {
            attempt: attempt(&done, 204),
            update: DeliveryUpdate::Delivered,
        },
        AttemptOutcome {
            attempt: attempt(&failed, 503),
            update: DeliveryUpdate::Retrying {
                next_attempt_at: retry_at,
            },
        },
    ];
    let usage = UsageBatch::from_events(&[UsageEvent {
        application_id: application.id.clone(),
        plan: application.plan.clone(),
        at: now,
        kind: UsageKind::Delivered {
            latency: Duration::from_millis(12),
        },
    }]);
    let failed_id = failed.task.delivery_id.clone();
    let done_id = done.task.delivery_id.clone();
    let settlements = vec![
        Settlement::Ack { lease: done },
        Settlement::Retry {
            lease: failed,
            due_at: retry_at,
            attempts_made: 1,
        },
    ];
    shared
        .record_and_settle(&outcomes, &usage, &settlements)
        .await
        .expect("record and settle");

    let record = store.delivery(&done_id).await.unwrap().expect("delivery");
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.attempts.len(), 1);
    let record = store.delivery(&failed_id).await.unwrap().expect("delivery");
    assert_eq!(record.state, DeliveryState::Pending);
    assert_eq!(
        record.next_attempt_at.map(|at| at.unix_timestamp()),
        Some(retry_at.unix_timestamp())
    );

    let hours = store
        .usage(&UsageQuery {
            application: Some(application.id.clone()),
            from: now - time::Duration::hours(2),
            to: now + time::Duration::hours(2),
        })
        .await
        .expect("usage");
    let delivered_total: u64 = hours.iter().map(|hour| hour.counts.delivered).sum();
    assert_eq!(delivered_total, 1, "usage written in the same transaction");

    let depth = queue.depth().await.expect("depth");
    assert_eq!(depth.ready + depth.leased, 0, "the ack removed one task");
    assert_eq!(depth.scheduled, 1, "the retry waits for its due time");
}
