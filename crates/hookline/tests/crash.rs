//! A `kill -9` of `hookline serve` in the middle of a run loses no accepted event.

mod common;

use common::{order_event, Backend, World};
use hookline_receiver::Behaviour;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn kill_nine_mid_run_loses_no_accepted_event(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world
        .serve(&[
            ("HOOKLINE_RETRY__INTERVAL", "50ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "1ms"),
            ("HOOKLINE_DELIVERY__PER_ENDPOINT_CONCURRENCY", "2"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "sink")
        .await;
    // Slow responses (2 at a time, 100 ms each) keep a backlog in the queue
    // and attempts in flight when the process dies.
    world
        .receiver
        .script("sink", Behaviour::Delay(Duration::from_millis(100)));

    let server = Arc::new(server);
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let mut producers = Vec::new();
    for worker in 0..4 {
        let server = server.clone();
        let accepted = accepted.clone();
        producers.push(tokio::spawn(async move {
            for n in 0..150 {
                let key = format!("crash-{worker}-{n}");
                let payload = order_event(&key);
                let request = server.try_ingest("order-created", Some(&key), &payload);
                match tokio::time::timeout(Duration::from_secs(5), request).await {
                    Ok(Some((202, _))) => {
                        accepted.lock().unwrap().insert(key);
                    }
                    _ => return,
                }
            }
        }));
    }

    // Kill once part of the events are accepted and some are delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while accepted.lock().unwrap().len() < 200 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill_now();
    let first_log = server.log_text();
    for producer in producers {
        let _ = producer.await;
    }
    let accepted = accepted.lock().unwrap().clone();
    let delivered_before = world.receiver.stats().succeeded;
    assert!(
        accepted.len() >= 200,
        "only {} events were accepted before the kill",
        accepted.len()
    );
    assert!(
        (delivered_before as usize) < accepted.len(),
        "the kill came after every delivery ({delivered_before} of {}); the test proves nothing; log:\n{first_log}", accepted.len()
    );

    world.receiver.script("sink", Behaviour::Succeed);
    let restarted = world.serve(&[]).await;
    let receiver = world.receiver.clone();
    let all_arrived = world
        .receiver
        .wait_for(
            |_| {
                let keys: HashSet<String> = receiver
                    .deliveries("sink")
                    .iter()
                    .filter(|r| r.succeeded())
                    .filter_map(|r| r.idempotency_key.clone())
                    .collect();
                accepted.is_subset(&keys)
            },
            Duration::from_secs(60),
        )
        .await;
    let received: HashSet<String> = world
        .receiver
        .deliveries("sink")
        .iter()
        .filter(|r| r.succeeded())
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    let missing: Vec<_> = accepted.difference(&received).take(10).collect();
    assert!(
        all_arrived,
        "{} accepted events never arrived, e.g. {missing:?}; log:\n{}",
        accepted.difference(&received).count(),
        restarted.log_text()
    );
}

both_backends!(kill_nine_mid_run_loses_no_accepted_event);
