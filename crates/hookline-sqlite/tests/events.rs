//! Event insertion with deduplication, recovery of events never enqueued,
//! idempotency key expiry and rejected records.

mod common;

use bytes::Bytes;
use common::{application, fixture, new_event, product, tasks_of, PRODUCT};
use hookline_core::store::{InsertOutcome, RejectedRecord, Store};
use time::{Duration, OffsetDateTime};

#[tokio::test]
async fn same_key_twice_in_one_batch_is_duplicate() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let app = &fixture.application.id;

    let first = new_event(PRODUCT, "order-1", br#"{"n":1}"#, &[app]);
    let second = new_event(PRODUCT, "order-1", br#"{"n":2}"#, &[app]);
    let other = new_event(PRODUCT, "order-2", br#"{"n":3}"#, &[app]);
    let outcomes = store
        .insert_events(&[first.clone(), second.clone(), other.clone()])
        .await
        .unwrap();

    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0], InsertOutcome::Inserted);
    assert_eq!(
        outcomes[1],
        InsertOutcome::Duplicate {
            existing: first.event.id.clone(),
            enqueued: false
        }
    );
    assert_eq!(outcomes[2], InsertOutcome::Inserted);

    // The duplicate's delivery was not stored.
    assert!(store
        .delivery(&second.deliveries[0].0)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .delivery(&first.deliveries[0].0)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn same_key_across_batches_is_duplicate() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let app = &fixture.application.id;

    let first = new_event(PRODUCT, "order-1", b"{}", &[app]);
    assert_eq!(
        store
            .insert_events(std::slice::from_ref(&first))
            .await
            .unwrap(),
        vec![InsertOutcome::Inserted]
    );

    let again = new_event(PRODUCT, "order-1", b"{}", &[app]);
    let outcomes = store
        .insert_events(std::slice::from_ref(&again))
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![InsertOutcome::Duplicate {
            existing: first.event.id.clone(),
            enqueued: false
        }]
    );

    store
        .mark_enqueued(std::slice::from_ref(&first.event.id))
        .await
        .unwrap();
    let outcomes = store.insert_events(&[again]).await.unwrap();
    assert_eq!(
        outcomes,
        vec![InsertOutcome::Duplicate {
            existing: first.event.id.clone(),
            enqueued: true
        }]
    );
}

#[tokio::test]
async fn same_key_in_other_product_is_inserted() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    store
        .create_product(&product("order-shipped"))
        .await
        .unwrap();
    let warehouse = application("order-shipped", "warehouse");
    store.create_application(&warehouse).await.unwrap();

    let created = new_event(PRODUCT, "order-1", b"{}", &[&fixture.application.id]);
    let shipped = new_event("order-shipped", "order-1", b"{}", &[&warehouse.id]);
    let outcomes = store.insert_events(&[created, shipped]).await.unwrap();
    assert_eq!(
        outcomes,
        vec![InsertOutcome::Inserted, InsertOutcome::Inserted]
    );
}

#[tokio::test]
async fn retried_batch_reports_its_own_events_as_duplicates() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let event = new_event(PRODUCT, "order-1", b"{}", &[&fixture.application.id]);

    store
        .insert_events(std::slice::from_ref(&event))
        .await
        .unwrap();
    let outcomes = store
        .insert_events(std::slice::from_ref(&event))
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![InsertOutcome::Duplicate {
            existing: event.event.id.clone(),
            enqueued: false
        }]
    );
}

#[tokio::test]
async fn empty_batch_returns_no_outcomes() {
    let fixture = fixture().await;
    assert!(fixture
        .backend
        .store()
        .insert_events(&[])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn large_batch_keeps_outcomes_aligned() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let app = &fixture.application.id;
    // Every third event repeats the key of the one before, so the 100 new
    // events are inserted in chunks of 64, 8, 8, 8, 8, 1, 1, 1 and 1 rows.
    let batch: Vec<_> = (0..150)
        .map(|i| {
            let key = if i % 3 == 2 {
                format!("key-{}", i - 1)
            } else {
                format!("key-{i}")
            };
            new_event(PRODUCT, &key, format!(r#"{{"i":{i}}}"#).as_bytes(), &[app])
        })
        .collect();

    let outcomes = store.insert_events(&batch).await.unwrap();
    assert_eq!(outcomes.len(), 150);
    for (i, outcome) in outcomes.iter().enumerate() {
        if i % 3 == 2 {
            let expected = InsertOutcome::Duplicate {
                existing: batch[i - 1].event.id.clone(),
                enqueued: false,
            };
            assert_eq!(outcome, &expected, "position {i}");
        } else {
            assert_eq!(outcome, &InsertOutcome::Inserted, "position {i}");
        }
    }
    let recovered = store
        .unenqueued_tasks(OffsetDateTime::now_utc() + Duration::minutes(1), 1000)
        .await
        .unwrap();
    assert_eq!(recovered.len(), 100);
}

#[tokio::test]
async fn unenqueued_tasks_finds_events_not_marked() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let second_app = application(PRODUCT, "analytics");
    store.create_application(&second_app).await.unwrap();

    let marked = new_event(PRODUCT, "marked", b"{}", &[&fixture.application.id]);
    let unmarked = new_event(
        PRODUCT,
        "unmarked",
        br#"{"lost":true}"#,
        &[&fixture.application.id, &second_app.id],
    );
    store
        .insert_events(&[marked.clone(), unmarked.clone()])
        .await
        .unwrap();
    store
        .mark_enqueued(std::slice::from_ref(&marked.event.id))
        .await
        .unwrap();

    let later = OffsetDateTime::now_utc() + Duration::minutes(1);
    let tasks = store.unenqueued_tasks(later, 100).await.unwrap();
    assert_eq!(tasks, tasks_of(&unmarked));
    assert_eq!(tasks[0].payload, Bytes::from_static(br#"{"lost":true}"#));

    let earlier = unmarked.event.received_at - Duration::minutes(1);
    assert!(store
        .unenqueued_tasks(earlier, 100)
        .await
        .unwrap()
        .is_empty());

    store
        .mark_enqueued(std::slice::from_ref(&unmarked.event.id))
        .await
        .unwrap();
    assert!(store.unenqueued_tasks(later, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn unenqueued_tasks_limit_counts_events() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let second_app = application(PRODUCT, "analytics");
    store.create_application(&second_app).await.unwrap();
    let subscribers = [&fixture.application.id, &second_app.id];
    let batch: Vec<_> = (0..3)
        .map(|i| new_event(PRODUCT, &format!("key-{i}"), b"{}", &subscribers))
        .collect();
    store.insert_events(&batch).await.unwrap();

    let later = OffsetDateTime::now_utc() + Duration::minutes(1);
    let tasks = store.unenqueued_tasks(later, 2).await.unwrap();
    assert_eq!(
        tasks.len(),
        4,
        "both tasks of each of the two oldest events"
    );
    assert_eq!(tasks[0].event_id, batch[0].event.id);
    assert_eq!(tasks[3].event_id, batch[1].event.id);
}

#[tokio::test]
async fn event_tasks_returns_pending_tasks() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let event = new_event(PRODUCT, "order-1", b"[1,2]", &[&fixture.application.id]);
    store
        .insert_events(std::slice::from_ref(&event))
        .await
        .unwrap();

    assert_eq!(
        store.event_tasks(&event.event.id).await.unwrap(),
        tasks_of(&event)
    );
}

#[tokio::test]
async fn expired_key_allows_new_event() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let app = &fixture.application.id;
    let mut old = new_event(PRODUCT, "order-1", b"{}", &[app]);
    old.event.received_at -= Duration::days(2);
    let recent = new_event(PRODUCT, "order-2", b"{}", &[app]);
    store.insert_events(&[old, recent]).await.unwrap();

    let deleted = store
        .expire_idempotency_keys(OffsetDateTime::now_utc() - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(deleted, 1);

    let outcomes = store
        .insert_events(&[
            new_event(PRODUCT, "order-1", b"{}", &[app]),
            new_event(PRODUCT, "order-2", b"{}", &[app]),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0], InsertOutcome::Inserted);
    assert!(matches!(outcomes[1], InsertOutcome::Duplicate { .. }));
}

#[tokio::test]
async fn rejected_record_is_stored() {
    let fixture = fixture().await;
    let record = RejectedRecord {
        product: Some(PRODUCT.to_owned()),
        reason: "payload is not valid JSON".to_owned(),
        topic: Some("orders".to_owned()),
        partition: Some(3),
        offset: Some(42),
        idempotency_key: None,
        payload: Some(Bytes::from_static(b"{oops")),
        received_at: OffsetDateTime::now_utc(),
    };
    fixture
        .backend
        .store()
        .record_rejected(&record)
        .await
        .unwrap();

    let without_source = RejectedRecord {
        product: None,
        topic: None,
        partition: None,
        offset: None,
        idempotency_key: None,
        payload: None,
        ..record
    };
    fixture
        .backend
        .store()
        .record_rejected(&without_source)
        .await
        .unwrap();

    // No store method reads rejected records back yet, so check the file.
    let database = fixture.dir.path().join(hookline_sqlite::DATABASE_FILE);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    type RejectedRow = (Option<String>, String, Option<i64>, Option<Vec<u8>>);
    let rows: Vec<RejectedRow> = sqlx::query_as(
        "SELECT product, reason, kafka_offset, payload FROM rejected_records ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0.as_deref(), Some(PRODUCT));
    assert_eq!(rows[0].1, "payload is not valid JSON");
    assert_eq!(rows[0].2, Some(42));
    assert_eq!(rows[0].3.as_deref(), Some(&b"{oops"[..]));
    assert_eq!(rows[1].0, None);
    assert_eq!(rows[1].3, None);
    pool.close().await;
}
