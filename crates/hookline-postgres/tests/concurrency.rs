//! Deduplication when several processes insert the same idempotency keys at
//! once. Each backend has its own pool, as a separate process would.

mod common;

use common::{fixture, new_event, PRODUCT};
use hookline_core::store::{AttemptOutcome, DeliveryUpdate, InsertOutcome, NewEvent, Store};
use hookline_core::{Attempt, AttemptResult, DeliveryState, EventId};
use hookline_postgres::PgStore;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Barrier;

/// Keys in each of the two overlapping batches, enough that the two
/// transactions run at the same time.
const KEYS: usize = 2_000;

/// Inserts `batch` once `barrier` releases every inserter.
async fn insert_after(
    store: Arc<PgStore>,
    barrier: Arc<Barrier>,
    batch: Vec<NewEvent>,
) -> Vec<InsertOutcome> {
    barrier.wait().await;
    store.insert_events(&batch).await.expect("insert events")
}

/// Checks that exactly one of two events with the same key was inserted and
/// that the other names the winner. Returns the winner's id.
fn assert_one_winner(
    first: (&NewEvent, &InsertOutcome),
    second: (&NewEvent, &InsertOutcome),
) -> EventId {
    let (winner, loser, loser_outcome) = match (first.1, second.1) {
        (InsertOutcome::Inserted, other) => (first.0, second.0, other),
        (other, InsertOutcome::Inserted) => (second.0, first.0, other),
        (a, b) => panic!(
            "no insert won key {}: {a:?}, {b:?}",
            first.0.event.idempotency_key
        ),
    };
    assert_eq!(
        loser_outcome,
        &InsertOutcome::Duplicate {
            existing: winner.event.id.clone(),
            enqueued: false,
        },
        "outcome of {} for key {}",
        loser.event.id,
        loser.event.idempotency_key
    );
    winner.event.id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_from_two_pools_inserts_once() {
    let fixture = fixture().await;
    let other = fixture.schema.backend().await;
    let app = &fixture.application.id;

    for round in 0..20 {
        let key = format!("order-{round}");
        let first = new_event(PRODUCT, &key, b"{}", &[app]);
        let second = new_event(PRODUCT, &key, b"{}", &[app]);
        let barrier = Arc::new(Barrier::new(2));
        let tasks = (
            tokio::spawn(insert_after(
                fixture.backend.store(),
                barrier.clone(),
                vec![first.clone()],
            )),
            tokio::spawn(insert_after(other.store(), barrier, vec![second.clone()])),
        );
        let first_outcomes = tasks.0.await.expect("first inserter finished");
        let second_outcomes = tasks.1.await.expect("second inserter finished");

        let winner =
            assert_one_winner((&first, &first_outcomes[0]), (&second, &second_outcomes[0]));
        let tasks = fixture.backend.store().event_tasks(&winner).await.unwrap();
        assert_eq!(tasks.len(), 1, "round {round}: the winner's delivery");
    }

    let pool = fixture.schema.raw_pool().await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 20);
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 20);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batches_in_opposite_order_finish() {
    let fixture = fixture().await;
    let other = fixture.schema.backend().await;
    let app = &fixture.application.id;
    let forward: Vec<NewEvent> = (0..KEYS)
        .map(|i| new_event(PRODUCT, &format!("key-{i}"), b"{}", &[app]))
        .collect();
    let backward: Vec<NewEvent> = (0..KEYS)
        .rev()
        .map(|i| new_event(PRODUCT, &format!("key-{i}"), b"{}", &[app]))
        .collect();

    let barrier = Arc::new(Barrier::new(2));
    let inserts = (
        tokio::spawn(insert_after(
            fixture.backend.store(),
            barrier.clone(),
            forward.clone(),
        )),
        tokio::spawn(insert_after(other.store(), barrier, backward.clone())),
    );
    // Without a common lock order, the two batches could deadlock, and
    // PostgreSQL would fail one of them after `deadlock_timeout`.
    let forward_outcomes = inserts.0.await.expect("forward batch finished");
    let backward_outcomes = inserts.1.await.expect("backward batch finished");

    for i in 0..KEYS {
        let mirrored = KEYS - 1 - i;
        assert_eq!(
            forward[i].event.idempotency_key,
            backward[mirrored].event.idempotency_key
        );
        assert_one_winner(
            (&forward[i], &forward_outcomes[i]),
            (&backward[mirrored], &backward_outcomes[mirrored]),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_waits_for_open_transaction_with_key() {
    for commit in [true, false] {
        let fixture = fixture().await;
        let app = &fixture.application.id;
        let pool = fixture.schema.raw_pool().await;
        let rival = new_event(PRODUCT, "order-1", b"{}", &[app]);

        // Another process has claimed the key and not committed yet.
        let mut transaction = pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO idempotency_keys (product, idempotency_key, event_id, created_at) \
             VALUES ($1, $2, $3, now())",
        )
        .bind(PRODUCT)
        .bind("order-1")
        .bind(rival.event.id.as_str())
        .execute(&mut *transaction)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO events (id, product, idempotency_key, webhook_id, content_type, \
             payload, source, received_at) \
             VALUES ($1, $2, $3, $4, 'json', '\\x7b7d', '{\"kind\":\"http\"}', now())",
        )
        .bind(rival.event.id.as_str())
        .bind(PRODUCT)
        .bind("order-1")
        .bind(rival.event.webhook_id.as_str())
        .execute(&mut *transaction)
        .await
        .unwrap();

        let mine = new_event(PRODUCT, "order-1", b"{}", &[app]);
        let store = fixture.backend.store();
        let batch = vec![mine.clone()];
        let insert = tokio::spawn(async move { store.insert_events(&batch).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !insert.is_finished(),
            "insert waits for the transaction holding the key"
        );

        if commit {
            transaction.commit().await.unwrap();
        } else {
            transaction.rollback().await.unwrap();
        }
        let outcomes = insert.await.expect("insert finished").unwrap();
        let expected = if commit {
            InsertOutcome::Duplicate {
                existing: rival.event.id.clone(),
                enqueued: false,
            }
        } else {
            InsertOutcome::Inserted
        };
        assert_eq!(outcomes, vec![expected], "rival committed: {commit}");
        pool.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_in_opposite_order_finish() {
    let fixture = fixture().await;
    let other = fixture.schema.backend().await;
    let app = &fixture.application.id;
    let batch: Vec<NewEvent> = (0..KEYS)
        .map(|i| new_event(PRODUCT, &format!("key-{i}"), b"{}", &[app]))
        .collect();
    fixture.backend.store().insert_events(&batch).await.unwrap();
    let outcomes: Vec<AttemptOutcome> = batch
        .iter()
        .map(|new_event| AttemptOutcome {
            attempt: Attempt {
                delivery_id: new_event.deliveries[0].0.clone(),
                number: 1,
                started_at: OffsetDateTime::now_utc(),
                duration_ms: 5,
                result: AttemptResult::Response { status: 200 },
                response_excerpt: None,
                response_truncated: false,
            },
            update: DeliveryUpdate::Delivered,
        })
        .collect();
    let reversed: Vec<AttemptOutcome> = outcomes.iter().rev().cloned().collect();

    // Two dispatchers record outcomes of the same deliveries at once, as
    // after an expired lease, each batch in the other's reverse order.
    let barrier = Arc::new(Barrier::new(2));
    let record = |store: Arc<PgStore>, barrier: Arc<Barrier>, batch: Vec<AttemptOutcome>| {
        tokio::spawn(async move {
            barrier.wait().await;
            store.record_outcomes(&batch).await
        })
    };
    let first = record(fixture.backend.store(), barrier.clone(), outcomes);
    let second = record(other.store(), barrier, reversed);
    first.await.expect("first batch finished").unwrap();
    second.await.expect("second batch finished").unwrap();

    let record = fixture
        .backend
        .store()
        .delivery(&batch[0].deliveries[0].0)
        .await
        .unwrap()
        .expect("delivery exists");
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.attempts.len(), 2, "both attempts are recorded");
}
