//! Recording attempts, listing deliveries, dead letters and revival.

mod common;

use common::{fixture, insert_enqueued, new_event, PRODUCT};
use hookline_core::store::{AttemptOutcome, DeliveryFilter, DeliveryUpdate, Store};
use hookline_core::usage::{UsageBatch, UsageEvent, UsageKind, UsageQuery};
use hookline_core::{Attempt, AttemptResult, DeliveryId, DeliveryState};
use time::{Duration, OffsetDateTime};

fn attempt(delivery_id: &DeliveryId, number: u32, result: AttemptResult) -> Attempt {
    Attempt {
        delivery_id: delivery_id.clone(),
        number,
        started_at: OffsetDateTime::from_unix_timestamp(1_700_000_000 + i64::from(number)).unwrap(),
        duration_ms: 100 + u64::from(number),
        result,
        response_excerpt: Some(format!("body {number}")),
        response_truncated: number == 2,
    }
}

fn timeout() -> AttemptResult {
    AttemptResult::Error {
        class: "timeout".to_owned(),
        message: "no response within 30s".to_owned(),
    }
}

#[tokio::test]
async fn record_outcomes_shows_every_attempt_in_order() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let task = insert_enqueued(&fixture, "order-1", b"{}").await;
    let id = &task.delivery_id;

    let retry_at = OffsetDateTime::from_unix_timestamp_nanos(1_900_000_000_123_000_000).unwrap();
    store
        .record_outcomes(&[AttemptOutcome {
            attempt: attempt(id, 1, timeout()),
            update: DeliveryUpdate::Retrying {
                next_attempt_at: retry_at,
            },
        }])
        .await
        .unwrap();
    let pending = store.delivery(id).await.unwrap().expect("delivery exists");
    assert_eq!(pending.state, DeliveryState::Pending);
    assert_eq!(pending.next_attempt_at, Some(retry_at));
    assert_eq!(
        pending.last_error.as_deref(),
        Some("timeout: no response within 30s")
    );

    store
        .record_outcomes(&[
            AttemptOutcome {
                attempt: attempt(id, 2, AttemptResult::Response { status: 503 }),
                update: DeliveryUpdate::Retrying {
                    next_attempt_at: retry_at,
                },
            },
            AttemptOutcome {
                attempt: attempt(id, 3, AttemptResult::Response { status: 204 }),
                update: DeliveryUpdate::Delivered,
            },
        ])
        .await
        .unwrap();

    let record = store.delivery(id).await.unwrap().expect("delivery exists");
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.next_attempt_at, None);
    assert_eq!(record.last_error, None);
    assert_eq!(record.product, PRODUCT);
    assert_eq!(record.webhook_id, task.webhook_id);
    assert_eq!(record.event_id, task.event_id);
    assert_eq!(record.application_id, fixture.application.id);

    let numbers: Vec<u32> = record.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    assert_eq!(record.attempts[0].result, timeout());
    assert_eq!(
        record.attempts[1].result,
        AttemptResult::Response { status: 503 }
    );
    assert_eq!(
        record.attempts[2].result,
        AttemptResult::Response { status: 204 }
    );
    assert_eq!(record.attempts[1].duration_ms, 102);
    assert_eq!(
        record.attempts[1].response_excerpt.as_deref(),
        Some("body 2")
    );
    assert!(record.attempts[1].response_truncated);
    assert!(!record.attempts[2].response_truncated);
    assert_eq!(
        record.attempts[2].started_at.unix_timestamp(),
        1_700_000_003
    );

    let listed = store
        .deliveries(
            &fixture.application.id,
            &DeliveryFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attempts.len(), 3);
}

#[tokio::test]
async fn late_failure_keeps_delivery_delivered() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let task = insert_enqueued(&fixture, "order-1", b"{}").await;
    let id = &task.delivery_id;

    let delivered = AttemptOutcome {
        attempt: attempt(id, 1, AttemptResult::Response { status: 200 }),
        update: DeliveryUpdate::Delivered,
    };
    let late = AttemptOutcome {
        attempt: attempt(id, 1, timeout()),
        update: DeliveryUpdate::Retrying {
            next_attempt_at: OffsetDateTime::now_utc(),
        },
    };
    store.record_outcomes(&[delivered]).await.unwrap();
    store.record_outcomes(&[late]).await.unwrap();

    let record = store.delivery(id).await.unwrap().expect("delivery exists");
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.attempts.len(), 2);
}

#[tokio::test]
async fn deliveries_pages_newest_first() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let app = &fixture.application.id;
    let batch: Vec<_> = (0..5)
        .map(|i| new_event(PRODUCT, &format!("order-{i}"), b"{}", &[app]))
        .collect();
    store.insert_events(&batch).await.unwrap();
    let ids: Vec<DeliveryId> = batch
        .iter()
        .rev()
        .map(|e| e.deliveries[0].0.clone())
        .collect();

    let mut filter = DeliveryFilter {
        limit: 2,
        ..Default::default()
    };
    let first_page = store.deliveries(app, &filter).await.unwrap();
    let first_ids: Vec<&DeliveryId> = first_page.iter().map(|d| &d.id).collect();
    assert_eq!(first_ids, vec![&ids[0], &ids[1]]);

    filter.before = Some(ids[1].clone());
    let second_page = store.deliveries(app, &filter).await.unwrap();
    let second_ids: Vec<&DeliveryId> = second_page.iter().map(|d| &d.id).collect();
    assert_eq!(second_ids, vec![&ids[2], &ids[3]]);

    filter.before = Some(ids[4].clone());
    assert!(store.deliveries(app, &filter).await.unwrap().is_empty());
}

#[tokio::test]
async fn deliveries_filters_by_state() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let delivered = insert_enqueued(&fixture, "order-1", b"{}").await;
    let pending = insert_enqueued(&fixture, "order-2", b"{}").await;
    store
        .record_outcomes(&[AttemptOutcome {
            attempt: attempt(
                &delivered.delivery_id,
                1,
                AttemptResult::Response { status: 200 },
            ),
            update: DeliveryUpdate::Delivered,
        }])
        .await
        .unwrap();

    let filter = DeliveryFilter {
        state: Some(DeliveryState::Pending),
        limit: 10,
        ..Default::default()
    };
    let listed = store
        .deliveries(&fixture.application.id, &filter)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, pending.delivery_id);
}

#[tokio::test]
async fn dead_delivery_is_listed_and_revived() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let task = insert_enqueued(&fixture, "order-1", br#"{"total":10}"#).await;
    let id = &task.delivery_id;

    assert!(
        store.revive(id).await.unwrap().is_none(),
        "pending delivery is not revived"
    );
    store
        .record_outcomes(&[AttemptOutcome {
            attempt: attempt(id, 1, AttemptResult::Response { status: 410 }),
            update: DeliveryUpdate::Dead {
                reason: "endpoint responded with HTTP status 410".to_owned(),
            },
        }])
        .await
        .unwrap();

    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].delivery.id, id);
    assert_eq!(dead[0].delivery.state, DeliveryState::Dead);
    assert_eq!(dead[0].reason, "endpoint responded with HTTP status 410");
    assert_eq!(dead[0].delivery.attempts.len(), 1);

    let revived = store
        .revive(id)
        .await
        .unwrap()
        .expect("dead delivery is revived");
    assert_eq!(revived.attempts_made, 0);
    assert_eq!(revived.payload, task.payload);
    assert_eq!(revived.event_id, task.event_id);

    let record = store.delivery(id).await.unwrap().expect("delivery exists");
    assert_eq!(record.state, DeliveryState::Pending);
    assert!(record.next_attempt_at.is_some());
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    assert!(
        store.revive(id).await.unwrap().is_none(),
        "revived delivery is pending"
    );

    let later = OffsetDateTime::now_utc() + Duration::minutes(1);
    assert!(store.unenqueued_tasks(later, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn one_batch_updates_several_deliveries() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let delivered = insert_enqueued(&fixture, "order-1", b"{}").await;
    let retrying = insert_enqueued(&fixture, "order-2", b"{}").await;
    let dead = insert_enqueued(&fixture, "order-3", b"{}").await;
    let retry_at = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();

    store
        .record_outcomes(&[
            AttemptOutcome {
                attempt: attempt(&retrying.delivery_id, 1, timeout()),
                update: DeliveryUpdate::Retrying {
                    next_attempt_at: retry_at,
                },
            },
            AttemptOutcome {
                attempt: attempt(
                    &delivered.delivery_id,
                    1,
                    AttemptResult::Response { status: 200 },
                ),
                update: DeliveryUpdate::Delivered,
            },
            AttemptOutcome {
                attempt: attempt(
                    &dead.delivery_id,
                    1,
                    AttemptResult::Response { status: 410 },
                ),
                update: DeliveryUpdate::Dead {
                    reason: "gone".to_owned(),
                },
            },
        ])
        .await
        .unwrap();

    let read = |id: DeliveryId| {
        let store = store.clone();
        async move { store.delivery(&id).await.unwrap().expect("delivery exists") }
    };
    let delivered = read(delivered.delivery_id).await;
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert_eq!(delivered.attempts.len(), 1);
    let retrying = read(retrying.delivery_id).await;
    assert_eq!(retrying.state, DeliveryState::Pending);
    assert_eq!(retrying.next_attempt_at, Some(retry_at));
    assert_eq!(retrying.attempts.len(), 1);
    let dead = read(dead.delivery_id).await;
    assert_eq!(dead.state, DeliveryState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("gone"));
    assert_eq!(dead.next_attempt_at, None);
}

#[tokio::test]
async fn success_wins_within_one_batch() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let task = insert_enqueued(&fixture, "order-1", b"{}").await;
    let id = &task.delivery_id;

    store
        .record_outcomes(&[
            AttemptOutcome {
                attempt: attempt(id, 1, AttemptResult::Response { status: 200 }),
                update: DeliveryUpdate::Delivered,
            },
            AttemptOutcome {
                attempt: attempt(id, 2, AttemptResult::Response { status: 500 }),
                update: DeliveryUpdate::Dead {
                    reason: "late".to_owned(),
                },
            },
        ])
        .await
        .unwrap();

    let record = store.delivery(id).await.unwrap().expect("delivery exists");
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.last_error, None);
    assert_eq!(record.attempts.len(), 2);
}

#[tokio::test]
async fn outcome_of_unknown_delivery_fails() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let unknown = DeliveryId::generate();

    let error = store
        .record_outcomes(&[AttemptOutcome {
            attempt: attempt(&unknown, 1, timeout()),
            update: DeliveryUpdate::Delivered,
        }])
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("failed to record delivery attempts"),
        "message: {error}"
    );
    assert!(store.delivery(&unknown).await.unwrap().is_none());
}

#[tokio::test]
async fn dead_letters_lists_latest_first() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let first = insert_enqueued(&fixture, "order-1", b"{}").await;
    let second = insert_enqueued(&fixture, "order-2", b"{}").await;
    for task in [&first, &second] {
        store
            .record_outcomes(&[AttemptOutcome {
                attempt: attempt(&task.delivery_id, 1, timeout()),
                update: DeliveryUpdate::Dead {
                    reason: format!("gave up on {}", task.idempotency_key),
                },
            }])
            .await
            .unwrap();
    }

    let dead = store.dead_letters(10).await.unwrap();
    let ids: Vec<&DeliveryId> = dead.iter().map(|d| &d.delivery.id).collect();
    assert_eq!(ids, vec![&second.delivery_id, &first.delivery_id]);
    assert_eq!(dead[0].reason, "gave up on order-2");
    assert_eq!(store.dead_letters(1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn deliveries_pages_by_state() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let tasks = [
        insert_enqueued(&fixture, "order-1", b"{}").await,
        insert_enqueued(&fixture, "order-2", b"{}").await,
        insert_enqueued(&fixture, "order-3", b"{}").await,
    ];
    store
        .record_outcomes(&[AttemptOutcome {
            attempt: attempt(
                &tasks[1].delivery_id,
                1,
                AttemptResult::Response { status: 200 },
            ),
            update: DeliveryUpdate::Delivered,
        }])
        .await
        .unwrap();

    let mut filter = DeliveryFilter {
        state: Some(DeliveryState::Pending),
        limit: 1,
        ..Default::default()
    };
    let first_page = store
        .deliveries(&fixture.application.id, &filter)
        .await
        .unwrap();
    assert_eq!(first_page.len(), 1);
    assert_eq!(first_page[0].id, tasks[2].delivery_id);

    filter.before = Some(first_page[0].id.clone());
    let second_page = store
        .deliveries(&fixture.application.id, &filter)
        .await
        .unwrap();
    assert_eq!(second_page.len(), 1);
    assert_eq!(
        second_page[0].id, tasks[0].delivery_id,
        "skips the delivered one"
    );
}

#[tokio::test]
async fn delivered_delivery_is_replayed_as_new_delivery() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let task = insert_enqueued(&fixture, "order-1", br#"{"total":10}"#).await;
    let id = &task.delivery_id;

    assert!(
        store.replay(id).await.unwrap().is_none(),
        "pending delivery is not replayed"
    );
    store
        .record_outcomes(&[AttemptOutcome {
            attempt: attempt(id, 1, AttemptResult::Response { status: 204 }),
            update: DeliveryUpdate::Delivered,
        }])
        .await
        .unwrap();

    let replay = store
        .replay(id)
        .await
        .unwrap()
        .expect("delivered delivery is replayed");
    assert_ne!(&replay.delivery_id, id);
    assert_ne!(replay.webhook_id, task.webhook_id);
    assert_eq!(replay.event_id, task.event_id);
    assert_eq!(replay.application_id, task.application_id);
    assert_eq!(replay.payload, task.payload);
    assert_eq!(replay.idempotency_key, task.idempotency_key);
    assert_eq!(replay.attempts_made, 0);

    let original = store.delivery(id).await.unwrap().expect("original exists");
    assert_eq!(original.state, DeliveryState::Delivered);
    assert_eq!(original.attempts.len(), 1);
    assert_eq!(original.webhook_id, task.webhook_id);
    assert_eq!(original.replay_of, None);

    let record = store
        .delivery(&replay.delivery_id)
        .await
        .unwrap()
        .expect("replay exists");
    assert_eq!(record.state, DeliveryState::Pending);
    assert!(record.attempts.is_empty());
    assert_eq!(record.webhook_id, replay.webhook_id);
    assert_eq!(record.replay_of.as_ref(), Some(id));

    let listed = store
        .deliveries(
            &task.application_id,
            &DeliveryFilter {
                limit: 10,
                ..DeliveryFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, replay.delivery_id, "replay is listed first");

    let pending = store
        .application_tasks(&task.application_id, None, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].webhook_id, replay.webhook_id);
    assert!(
        store.replay(&replay.delivery_id).await.unwrap().is_none(),
        "pending replay is not replayed again"
    );
}

fn delivered_usage(fixture: &common::Fixture, at: OffsetDateTime) -> UsageBatch {
    UsageBatch::from_events(&[UsageEvent {
        application_id: fixture.application.id.clone(),
        plan: "free".to_owned(),
        at,
        kind: UsageKind::Delivered {
            latency: std::time::Duration::from_millis(120),
        },
    }])
}

fn delivered_outcome(delivery_id: &DeliveryId) -> AttemptOutcome {
    AttemptOutcome {
        attempt: attempt(delivery_id, 1, AttemptResult::Response { status: 204 }),
        update: DeliveryUpdate::Delivered,
    }
}

/// Returns the start of the hour that contains 2023-11-14T22:13:20Z.
fn test_hour() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 / 3600 * 3600).unwrap()
}

fn usage_of_hour(fixture: &common::Fixture, hour: OffsetDateTime) -> UsageQuery {
    UsageQuery {
        application: Some(fixture.application.id.clone()),
        from: hour,
        to: hour + Duration::hours(1),
    }
}

#[tokio::test]
async fn record_finished_writes_attempts_and_usage() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let task = insert_enqueued(&fixture, "order-usage", b"{}").await;
    let hour = test_hour();
    let outcome = delivered_outcome(&task.delivery_id);

    store
        .record_finished(&[outcome], &delivered_usage(&fixture, hour))
        .await
        .unwrap();

    let record = store.delivery(&task.delivery_id).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.attempts.len(), 1);
    let hours = store.usage(&usage_of_hour(&fixture, hour)).await.unwrap();
    assert_eq!(hours.len(), 1, "one hour of usage: {hours:?}");
    assert_eq!(hours[0].counts.delivered, 1);
    assert_eq!(hours[0].counts.latency_ms_sum, 120);
}

/// When the usage cannot be written, the attempts of the same batch are not
/// kept either, so a retry of the batch cannot count them twice.
#[tokio::test]
async fn record_finished_keeps_nothing_when_usage_fails() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let task = insert_enqueued(&fixture, "order-usage-fails", b"{}").await;
    let raw = fixture.schema.raw_pool().await;
    sqlx::query("ALTER TABLE usage_hourly ADD CONSTRAINT reject_rows CHECK (delivered < 0)")
        .execute(&raw)
        .await
        .unwrap();
    let hour = test_hour();
    let outcome = delivered_outcome(&task.delivery_id);

    let error = store
        .record_finished(&[outcome], &delivered_usage(&fixture, hour))
        .await
        .expect_err("the usage row breaks the check");
    assert!(error.to_string().contains("usage"), "{error}");

    let record = store.delivery(&task.delivery_id).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Pending);
    assert!(record.attempts.is_empty(), "{:?}", record.attempts);
    raw.close().await;
}
