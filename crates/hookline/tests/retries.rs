//! Retry schedule, dead letters and replay through `hookline serve`.

mod common;

use common::{order_event, Backend, World};
use hookline_receiver::{Behaviour, Verification};
use std::time::Duration;

async fn failing_endpoint_gets_attempts_at_scheduled_offsets(backend: Backend) {
    let world = World::with_backend(backend).await;
    // Waits: retry n waits 100ms + n^4 x 10ms = 110, 260, 910 ms.
    let server = world
        .serve(&[
            ("HOOKLINE_RETRY__INTERVAL", "100ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "10ms"),
            ("HOOKLINE_RETRY__MAX_RETRIES", "5"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let app = server
        .create_application(&world.receiver, "order-created", "thrice")
        .await;
    world.receiver.script(
        "thrice",
        Behaviour::FailTimes {
            failures: 3,
            status: 500,
        },
    );

    let (status, _) = server
        .ingest("order-created", Some("retry-1"), &order_event("R1"))
        .await;
    assert_eq!(status, 202);
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.total >= 4, Duration::from_secs(15))
            .await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let received = world.receiver.deliveries("thrice");
    assert_eq!(received.len(), 4, "3 failures + 1 success = 4 attempts");
    let statuses: Vec<u16> = received.iter().map(|r| r.responded_status).collect();
    assert_eq!(statuses, [500, 500, 500, 204]);
    assert!(received
        .iter()
        .all(|r| r.verification == Verification::Verified));

    let expected = [110u64, 260, 910];
    for (n, pair) in received.windows(2).enumerate() {
        let gap = pair[1]
            .received_instant
            .duration_since(pair[0].received_instant)
            .as_millis() as u64;
        assert!(
            gap >= expected[n],
            "retry {} came after {gap} ms, before its wait of {} ms",
            n + 1,
            expected[n]
        );
        assert!(
            gap < expected[n] + 1000,
            "retry {} came after {gap} ms, long after its wait of {} ms",
            n + 1,
            expected[n]
        );
    }

    let deliveries = server
        .wait_deliveries(&app, Duration::from_secs(5), |d| {
            d.first().is_some_and(|d| d["state"] == "delivered")
        })
        .await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["state"], "delivered");
    let attempts = deliveries[0]["attempts"].as_array().unwrap();
    let codes: Vec<u64> = attempts
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 500, 204]);
}

async fn exhausted_delivery_is_dead_lettered_and_replayed(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world
        .serve(&[
            ("HOOKLINE_RETRY__INTERVAL", "20ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "1ms"),
            ("HOOKLINE_RETRY__MAX_RETRIES", "2"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let app = server
        .create_application(&world.receiver, "order-created", "down")
        .await;
    world
        .receiver
        .script("down", Behaviour::AlwaysFail { status: 503 });

    let (status, _) = server
        .ingest("order-created", Some("dead-1"), &order_event("X1"))
        .await;
    assert_eq!(status, 202);
    let deliveries = server
        .wait_deliveries(&app, Duration::from_secs(10), |d| {
            d.first().is_some_and(|d| d["state"] == "dead")
        })
        .await;
    assert_eq!(deliveries[0]["state"], "dead");
    assert_eq!(
        deliveries[0]["attempts"].as_array().unwrap().len(),
        3,
        "first attempt + 2 retries"
    );
    assert_eq!(world.receiver.deliveries("down").len(), 3);

    let (status, dead) = server
        .request(reqwest::Method::GET, "/api/v1/dead-letters", None)
        .await;
    assert_eq!(status, 200);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1);
    let delivery_id = dead[0]["id"].as_str().unwrap().to_owned();
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("503"),
        "reason names the last error: {}",
        dead[0]["reason"]
    );

    world.receiver.script("down", Behaviour::Succeed);
    let (status, body) = server
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/dead-letters/{delivery_id}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 202, "replay: {body}");
    let deliveries = server
        .wait_deliveries(&app, Duration::from_secs(10), |d| {
            d[0]["state"] == "delivered"
        })
        .await;
    assert_eq!(deliveries[0]["state"], "delivered");
    let last = world.receiver.deliveries("down").last().cloned().unwrap();
    assert_eq!(last.responded_status, 204);
    assert_eq!(last.verification, Verification::Verified);

    let (status, dead) = server
        .request(reqwest::Method::GET, "/api/v1/dead-letters", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        dead.as_array().unwrap().len(),
        0,
        "a replayed delivery leaves the dead-letter list"
    );
    let (status, _) = server
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/dead-letters/{delivery_id}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 409, "a delivered delivery cannot be replayed");
}

async fn retry_after_longer_than_schedule_is_honoured(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world
        .serve(&[
            ("HOOKLINE_RETRY__INTERVAL", "10ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "1ms"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "busy")
        .await;
    world.receiver.script(
        "busy",
        Behaviour::RetryAfter {
            failures: 1,
            seconds: 1,
        },
    );

    let (status, _) = server
        .ingest("order-created", Some("ra-1"), &order_event("RA1"))
        .await;
    assert_eq!(status, 202);
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.total >= 2, Duration::from_secs(10))
            .await
    );
    let received = world.receiver.deliveries("busy");
    let gap = received[1]
        .received_instant
        .duration_since(received[0].received_instant);
    assert!(
        gap >= Duration::from_secs(1),
        "retry came after {gap:?}, before Retry-After: 1"
    );
}

both_backends!(failing_endpoint_gets_attempts_at_scheduled_offsets);
both_backends!(exhausted_delivery_is_dead_lettered_and_replayed);
both_backends!(retry_after_longer_than_schedule_is_honoured);
