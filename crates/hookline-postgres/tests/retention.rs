//! Retention: `purge_history` deletes old finished history in batches and
//! keeps pending deliveries and recent rows.

mod common;

use bytes::Bytes;
use common::{application, fixture, new_event, Fixture, PRODUCT};
use hookline_core::store::{
    AttemptOutcome, DeliveryUpdate, InsertOutcome, NewEvent, RejectedRecord, Store,
};
use hookline_core::{Attempt, AttemptResult, DeliveryId, DeliveryState};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

/// Age of the rows that retention deletes, against a cutoff of one day.
const OLD: Duration = Duration::days(10);

fn outcome(delivery_id: &DeliveryId, status: u16, update: DeliveryUpdate) -> AttemptOutcome {
    AttemptOutcome {
        attempt: Attempt {
            delivery_id: delivery_id.clone(),
            number: 1,
            started_at: OffsetDateTime::now_utc(),
            duration_ms: 12,
            result: AttemptResult::Response { status },
            response_excerpt: None,
            response_truncated: false,
        },
        update,
    }
}

fn delivered(delivery_id: &DeliveryId) -> AttemptOutcome {
    outcome(delivery_id, 200, DeliveryUpdate::Delivered)
}

fn dead(delivery_id: &DeliveryId) -> AttemptOutcome {
    let reason = "endpoint responded with HTTP status 410".to_owned();
    outcome(delivery_id, 410, DeliveryUpdate::Dead { reason })
}

fn retrying(delivery_id: &DeliveryId) -> AttemptOutcome {
    let next_attempt_at = OffsetDateTime::now_utc() + Duration::minutes(5);
    outcome(
        delivery_id,
        503,
        DeliveryUpdate::Retrying { next_attempt_at },
    )
}

/// Builds an event received [`OLD`] ago.
fn old_event(key: &str, subscribers: &[&hookline_core::ApplicationId]) -> NewEvent {
    let mut new_event = new_event(PRODUCT, key, b"{}", subscribers);
    new_event.event.received_at -= OLD;
    new_event
}

/// Moves the last change of these deliveries [`OLD`] into the past.
async fn backdate(pool: &PgPool, deliveries: &[&DeliveryId]) {
    let ids: Vec<&str> = deliveries.iter().map(|id| id.as_str()).collect();
    sqlx::query("UPDATE deliveries SET updated_at = $1 WHERE id = ANY($2)")
        .bind(OffsetDateTime::now_utc() - OLD)
        .bind(ids)
        .execute(pool)
        .await
        .unwrap();
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn record_rejected(fixture: &Fixture, received_at: OffsetDateTime) {
    let record = RejectedRecord {
        product: Some(PRODUCT.to_owned()),
        reason: "payload is not valid JSON".to_owned(),
        topic: None,
        partition: None,
        offset: None,
        idempotency_key: None,
        payload: Some(Bytes::from_static(b"{oops")),
        received_at,
    };
    fixture
        .backend
        .store()
        .record_rejected(&record)
        .await
        .unwrap();
}

#[tokio::test]
async fn purge_deletes_old_finished_history_only() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let pool = fixture.schema.raw_pool().await;
    let app = &fixture.application.id;
    let analytics = application(PRODUCT, "analytics");
    store.create_application(&analytics).await.unwrap();

    let old_delivered = old_event("old-delivered", &[app]);
    let old_dead = old_event("old-dead", &[app]);
    let old_pending = old_event("old-pending", &[app]);
    let old_mixed = old_event("old-mixed", &[app, &analytics.id]);
    let old_unsubscribed = old_event("old-unsubscribed", &[]);
    let recent_delivered = new_event(PRODUCT, "recent-delivered", b"{}", &[app]);
    let batch = [
        old_delivered.clone(),
        old_dead.clone(),
        old_pending.clone(),
        old_mixed.clone(),
        old_unsubscribed.clone(),
        recent_delivered.clone(),
    ];
    let outcomes = store.insert_events(&batch).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == InsertOutcome::Inserted));

    let id = |new_event: &NewEvent, index: usize| new_event.deliveries[index].0.clone();
    store
        .record_outcomes(&[
            retrying(&id(&old_delivered, 0)),
            delivered(&id(&old_delivered, 0)),
            dead(&id(&old_dead, 0)),
            retrying(&id(&old_pending, 0)),
            delivered(&id(&old_mixed, 0)),
            delivered(&id(&recent_delivered, 0)),
        ])
        .await
        .unwrap();
    let old_ids = [
        &id(&old_delivered, 0),
        &id(&old_dead, 0),
        &id(&old_pending, 0),
        &id(&old_mixed, 0),
        &id(&old_mixed, 1),
    ];
    backdate(&pool, &old_ids).await;
    record_rejected(&fixture, OffsetDateTime::now_utc() - OLD).await;
    record_rejected(&fixture, OffsetDateTime::now_utc()).await;

    let cutoff = OffsetDateTime::now_utc() - Duration::days(1);
    let deleted = fixture.backend.purge_history(cutoff, 2).await.unwrap();
    // 3 deliveries, their 4 attempts, 3 events, 5 idempotency keys and 1
    // rejected record.
    assert_eq!(deleted, 16);

    for purged_id in [id(&old_delivered, 0), id(&old_dead, 0), id(&old_mixed, 0)] {
        let record = store.delivery(&purged_id).await.unwrap();
        assert!(record.is_none(), "delivery {purged_id} is deleted");
    }
    let pending = store.delivery(&id(&old_pending, 0)).await.unwrap();
    let pending = pending.expect("old pending delivery is kept");
    assert_eq!(pending.state, DeliveryState::Pending);
    assert_eq!(pending.attempts.len(), 1);
    let never_tried = store.delivery(&id(&old_mixed, 1)).await.unwrap();
    assert!(
        never_tried.is_some(),
        "pending delivery of a mixed event is kept"
    );
    let recent = store.delivery(&id(&recent_delivered, 0)).await.unwrap();
    assert_eq!(recent.expect("recent delivery is kept").attempts.len(), 1);

    let tasks = store.event_tasks(&old_pending.event.id).await.unwrap();
    assert_eq!(
        tasks.len(),
        1,
        "the pending delivery's event keeps its payload"
    );
    assert_eq!(count(&pool, "events").await, 3);
    assert_eq!(count(&pool, "attempts").await, 2);
    assert_eq!(count(&pool, "idempotency_keys").await, 1);
    assert_eq!(count(&pool, "rejected_records").await, 1);

    let again = fixture.backend.purge_history(cutoff, 2).await.unwrap();
    assert_eq!(again, 0, "a second purge finds nothing");
    pool.close().await;
}

#[tokio::test]
async fn purge_walks_many_batches() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let pool = fixture.schema.raw_pool().await;
    let app = &fixture.application.id;
    let batch: Vec<NewEvent> = (0..7)
        .map(|i| old_event(&format!("key-{i}"), &[app]))
        .collect();
    store.insert_events(&batch).await.unwrap();
    let finished: Vec<AttemptOutcome> = batch
        .iter()
        .map(|new_event| delivered(&new_event.deliveries[0].0))
        .collect();
    store.record_outcomes(&finished).await.unwrap();
    let ids: Vec<&DeliveryId> = batch.iter().map(|e| &e.deliveries[0].0).collect();
    backdate(&pool, &ids).await;

    // A batch size of 0 is raised to 1: one row per transaction.
    let cutoff = OffsetDateTime::now_utc() - Duration::days(1);
    let deleted = fixture.backend.purge_history(cutoff, 0).await.unwrap();
    assert_eq!(
        deleted,
        7 * 4,
        "a delivery, an attempt, an event and a key each"
    );
    assert_eq!(count(&pool, "events").await, 0);
    assert_eq!(count(&pool, "deliveries").await, 0);
    pool.close().await;
}

#[tokio::test]
async fn purge_keeps_revived_delivery() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let pool = fixture.schema.raw_pool().await;
    let event = old_event("order-1", &[&fixture.application.id]);
    store
        .insert_events(std::slice::from_ref(&event))
        .await
        .unwrap();
    let delivery_id = &event.deliveries[0].0;
    store.record_outcomes(&[dead(delivery_id)]).await.unwrap();
    store.revive(delivery_id).await.unwrap().expect("revived");
    backdate(&pool, &[delivery_id]).await;

    let cutoff = OffsetDateTime::now_utc() - Duration::days(1);
    fixture.backend.purge_history(cutoff, 10).await.unwrap();
    let record = store.delivery(delivery_id).await.unwrap();
    assert_eq!(record.expect("kept").state, DeliveryState::Pending);
    pool.close().await;
}
