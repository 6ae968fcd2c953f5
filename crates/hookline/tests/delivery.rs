//! End to end through `hookline serve`: events in over HTTP, signed HTTPS
//! webhooks out to a receiver with a certificate made at test time.

mod common;

use common::{order_event, Backend, World};
use hookline_receiver::{Behaviour, Verification};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

async fn every_application_gets_each_event_once_signed(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world.serve(&[]).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "alpha")
        .await;
    server
        .create_application(&world.receiver, "order-created", "beta")
        .await;

    let mut payloads = HashMap::new();
    for n in 0..25 {
        let key = format!("order-{n}");
        let payload = order_event(&format!("ORD{n}"));
        let (status, body) = server.ingest("order-created", Some(&key), &payload).await;
        assert_eq!(status, 202, "ingest: {body}");
        assert_eq!(body["deliveries"], 2);
        payloads.insert(key, payload);
    }

    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 50, Duration::from_secs(20))
        .await;
    assert!(
        arrived,
        "expected 50 verified deliveries, got {:?}",
        world.receiver.stats()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    for endpoint in ["alpha", "beta"] {
        let received = world.receiver.deliveries(endpoint);
        assert_eq!(
            received.len(),
            25,
            "{endpoint} received {} requests",
            received.len()
        );
        let ids: HashSet<_> = received.iter().map(|r| r.webhook_id.clone()).collect();
        assert_eq!(
            ids.len(),
            25,
            "{endpoint}: webhook ids must be distinct per event"
        );
        for webhook in &received {
            assert_eq!(webhook.verification, Verification::Verified);
            let key = webhook
                .idempotency_key
                .clone()
                .expect("idempotency-key header");
            assert_eq!(
                webhook.body.as_ref(),
                payloads[&key].as_bytes(),
                "body byte for byte"
            );
            assert_eq!(webhook.content_type.as_deref(), Some("application/json"));
        }
    }
    let stats = world.receiver.stats();
    assert_eq!(stats.failed_verification, 0);
    assert_eq!(stats.duplicates, 0);
}

async fn webhook_id_is_stable_across_retries(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world
        .serve(&[
            ("HOOKLINE_RETRY__INTERVAL", "50ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "10ms"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "flaky")
        .await;
    world.receiver.script(
        "flaky",
        Behaviour::FailTimes {
            failures: 2,
            status: 500,
        },
    );

    let (status, _) = server
        .ingest("order-created", Some("stable-1"), &order_event("S1"))
        .await;
    assert_eq!(status, 202);
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 3, Duration::from_secs(10))
        .await;
    assert!(
        arrived,
        "three attempts expected, got {:?}",
        world.receiver.stats()
    );

    let received = world.receiver.deliveries("flaky");
    let ids: HashSet<_> = received.iter().map(|r| r.webhook_id.clone()).collect();
    assert_eq!(received.len(), 3);
    assert_eq!(ids.len(), 1, "all attempts carry one webhook-id");
    assert!(received
        .iter()
        .all(|r| r.verification == Verification::Verified));
}

async fn duplicate_key_is_not_delivered_twice(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world.serve(&[]).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "solo")
        .await;

    let (first_status, first) = server
        .ingest("order-created", Some("same-key"), &order_event("D1"))
        .await;
    let (second_status, second) = server
        .ingest("order-created", Some("same-key"), &order_event("D1"))
        .await;
    assert_eq!(first_status, 202);
    assert_eq!(second_status, 200);
    assert_eq!(second["duplicate"], true);
    assert_eq!(
        second["id"], first["id"],
        "a duplicate reports the first event id"
    );

    assert!(
        world
            .receiver
            .wait_for(|stats| stats.total >= 1, Duration::from_secs(10))
            .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.receiver.deliveries("solo").len(), 1);
}

both_backends!(every_application_gets_each_event_once_signed);
both_backends!(webhook_id_is_stable_across_retries);
both_backends!(duplicate_key_is_not_delivered_twice);
