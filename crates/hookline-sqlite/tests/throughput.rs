//! Throughput of the full delivery cycle through the backend: insert events,
//! enqueue, receive, record the attempt and acknowledge.
//!
//! Ignored by default because it measures rather than checks. Run it with
//! `cargo test -p hookline-sqlite --release --test throughput -- --ignored --nocapture`.

mod common;

use common::{application, fixture, new_event, tasks_of, PRODUCT};
use hookline_core::queue::{DeliveryQueue, Settlement};
use hookline_core::store::{AttemptOutcome, DeliveryFilter, DeliveryUpdate, InsertOutcome, Store};
use hookline_core::{Attempt, AttemptResult, DeliveryState};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const EVENTS: usize = 20_000;
const EVENT_BATCH: usize = 500;
const RECEIVE_BATCH: usize = 500;
const SUBSCRIBERS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures throughput; run in release mode"]
async fn delivery_cycle_throughput() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let queue = fixture.backend.queue();
    let second = application(PRODUCT, "analytics");
    store.create_application(&second).await.unwrap();
    let subscribers = [&fixture.application.id, &second.id];
    let payload = vec![b'x'; 1024];

    let started = Instant::now();
    for batch_start in (0..EVENTS).step_by(EVENT_BATCH) {
        let batch: Vec<_> = (batch_start..batch_start + EVENT_BATCH)
            .map(|i| new_event(PRODUCT, &format!("key-{i}"), &payload, &subscribers))
            .collect();
        let outcomes = store.insert_events(&batch).await.unwrap();
        assert!(outcomes.iter().all(|o| *o == InsertOutcome::Inserted));
        queue
            .enqueue(batch.iter().flat_map(tasks_of).collect())
            .await
            .unwrap();
        let ids: Vec<_> = batch.iter().map(|e| e.event.id.clone()).collect();
        store.mark_enqueued(&ids).await.unwrap();
    }
    let ingest = started.elapsed();

    let started = Instant::now();
    let mut delivered = 0;
    let mut phases = [Duration::ZERO; 3];
    loop {
        let phase = Instant::now();
        let leased = queue
            .receive(RECEIVE_BATCH, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        phases[0] += phase.elapsed();
        if leased.is_empty() {
            break;
        }
        delivered += leased.len();
        let phase = Instant::now();
        let outcomes: Vec<_> = leased.iter().map(success).collect();
        store.record_outcomes(&outcomes).await.unwrap();
        phases[1] += phase.elapsed();
        let phase = Instant::now();
        let settlements = leased
            .into_iter()
            .map(|lease| Settlement::Ack { lease })
            .collect();
        queue.settle(settlements).await.unwrap();
        phases[2] += phase.elapsed();
    }
    let dispatch = started.elapsed();
    println!(
        "dispatch phases: receive {:?}, record outcomes {:?}, settle {:?}",
        phases[0], phases[1], phases[2]
    );

    let deliveries = EVENTS * SUBSCRIBERS;
    assert_eq!(delivered, deliveries);
    println!(
        "ingest: {EVENTS} events, {deliveries} deliveries in {ingest:?} ({:.0} deliveries/s)",
        deliveries as f64 / ingest.as_secs_f64()
    );
    println!(
        "dispatch: {deliveries} receive + record + ack in {dispatch:?} ({:.0} deliveries/s)",
        deliveries as f64 / dispatch.as_secs_f64()
    );
    let total = ingest + dispatch;
    println!(
        "full cycle: {:.0} deliveries/s",
        deliveries as f64 / total.as_secs_f64()
    );

    let filter = DeliveryFilter {
        limit: 10,
        ..Default::default()
    };
    let newest = store.deliveries(&second.id, &filter).await.unwrap();
    assert!(newest.iter().all(|d| d.state == DeliveryState::Delivered));
    assert!(newest.iter().all(|d| d.attempts.len() == 1));
}

fn success(leased: &hookline_core::queue::Leased) -> AttemptOutcome {
    AttemptOutcome {
        attempt: Attempt {
            delivery_id: leased.task.delivery_id.clone(),
            number: leased.task.attempts_made + 1,
            started_at: OffsetDateTime::now_utc(),
            duration_ms: 5,
            result: AttemptResult::Response { status: 200 },
            response_excerpt: Some("ok".to_owned()),
            response_truncated: false,
        },
        update: DeliveryUpdate::Delivered,
    }
}
