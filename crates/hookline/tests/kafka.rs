//! Kafka in, webhooks out: `hookline serve` consumes from librdkafka's
//! built-in Kafka-protocol mock broker, started by the test on 127.0.0.1.

mod common;

use common::{order_event, Backend, World};
use hookline_receiver::Verification;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::HashSet;
use std::time::Duration;

const TOPIC: &str = "order-created-event";

async fn produce(brokers: &str, records: &[(Option<&str>, String)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for (key, payload) in records {
        let mut record = FutureRecord::<(), _>::to(TOPIC).payload(payload.as_bytes());
        if let Some(key) = key {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "idempotentKey",
                value: Some(key.as_bytes()),
            }));
        }
        pending.push(producer.send_result(record).expect("queue record"));
    }
    for delivery in pending {
        delivery
            .await
            .expect("delivery report")
            .expect("record stored");
    }
}

async fn kafka_records_become_one_delivery_per_application(backend: Backend) {
    let cluster = MockCluster::new(1).expect("mock Kafka cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("create topic");
    let brokers = cluster.bootstrap_servers();

    let world = World::with_backend(backend).await;
    let server = world
        .serve(&[("HOOKLINE_KAFKA__BROKERS", brokers.as_str())])
        .await;
    server.create_product("order-created", TOPIC).await;
    server
        .create_application(&world.receiver, "order-created", "east")
        .await;
    server
        .create_application(&world.receiver, "order-created", "west")
        .await;

    let records = vec![
        (Some("k1"), order_event("K1")),
        (Some("k2"), order_event("K2")),
        (Some("k1"), order_event("K1")),
        (Some("k3"), order_event("K3")),
        (None, order_event("NOKEY")),
    ];
    produce(&brokers, &records).await;

    let arrived = world
        .receiver
        .wait_for(|stats| stats.succeeded >= 8, Duration::from_secs(40))
        .await;
    assert!(
        arrived,
        "8 deliveries expected, got {:?}; log:\n{}",
        world.receiver.stats(),
        server.log_text()
    );
    // Leave time for a duplicate to show up if deduplication failed.
    tokio::time::sleep(Duration::from_secs(2)).await;

    for endpoint in ["east", "west"] {
        let received = world.receiver.deliveries(endpoint);
        assert_eq!(
            received.len(),
            4,
            "{endpoint}: k1, k2, k3 and the keyless record, once each"
        );
        let keys: HashSet<String> = received
            .iter()
            .filter_map(|r| r.idempotency_key.clone())
            .collect();
        assert!(
            keys.contains("k1") && keys.contains("k2") && keys.contains("k3"),
            "{keys:?}"
        );
        let fallback = keys
            .iter()
            .find(|key| key.starts_with(&format!("{TOPIC}/")));
        assert!(
            fallback.is_some(),
            "the keyless record uses topic/partition/offset: {keys:?}"
        );
        assert!(received
            .iter()
            .all(|r| r.verification == Verification::Verified));
    }
    assert_eq!(world.receiver.stats().duplicates, 0);
}

both_backends!(kafka_records_become_one_delivery_per_application);
