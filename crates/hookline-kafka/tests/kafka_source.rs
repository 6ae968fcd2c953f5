//! The Kafka source against librdkafka's mock cluster and a real creator on
//! the SQLite backend.

mod common;

use common::{wait_for, Harness, TestRecord};
use hookline_core::{ApplicationId, WebhookId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Returns the number of deliveries of `application`, for polling.
async fn delivery_count(harness: &Harness, application: &ApplicationId) -> usize {
    harness.deliveries(application).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_become_one_event() {
    let harness = Harness::new().await;
    harness.create_topic("orders", 1);
    harness.create_product("order-created", "orders").await;
    let billing = harness.subscribe("billing", "order-created").await;
    let shipping = harness.subscribe("shipping", "order-created").await;

    let offsets = harness
        .produce(&[
            TestRecord::new("orders", r#"{"order":1}"#).key("order-1"),
            TestRecord::new("orders", r#"{"order":2}"#)
                .header("traceparent", b"00-abc")
                .key("order-2"),
            TestRecord::new("orders", r#"{"order":1,"resent":true}"#).key("order-1"),
            TestRecord::new("orders", r#"{"order":3}"#),
        ])
        .await;
    assert_eq!(offsets, [0, 1, 2, 3]);

    let source = harness.start();
    wait_for("three deliveries per application", || async {
        delivery_count(&harness, &billing).await == 3
            && delivery_count(&harness, &shipping).await == 3
    })
    .await;
    let end = harness.end_offset("orders", 0);
    assert_eq!(end, 4);
    wait_for("the commit of the whole partition", || async {
        harness.committed_offset("orders", 0) == Some(end)
    })
    .await;
    source.stop().await;
    assert_eq!(harness.committed_offset("orders", 0), Some(end));

    // The record without the header is keyed by its position.
    let expected_webhook_ids: BTreeSet<WebhookId> = ["order-1", "order-2", "orders/0/3"]
        .into_iter()
        .map(|key| WebhookId::derive("order-created", key))
        .collect();
    let mut deliveries_per_event = BTreeMap::new();
    for application in [&billing, &shipping] {
        let deliveries = harness.deliveries(application).await;
        assert_eq!(deliveries.len(), 3, "deliveries of {application}");
        let webhook_ids: BTreeSet<WebhookId> = deliveries
            .iter()
            .map(|delivery| delivery.webhook_id.clone())
            .collect();
        assert_eq!(
            webhook_ids, expected_webhook_ids,
            "webhook ids of {application}"
        );
        for delivery in &deliveries {
            assert_eq!(delivery.product, "order-created");
            *deliveries_per_event
                .entry(delivery.event_id.clone())
                .or_insert(0) += 1;
        }
    }
    assert_eq!(deliveries_per_event.len(), 3, "distinct events");
    assert!(
        deliveries_per_event.values().all(|count| *count == 2),
        "deliveries per event: {deliveries_per_event:?}"
    );

    // The first record with a key wins; the resent payload is a duplicate.
    let tasks = harness.take_tasks().await;
    assert_eq!(tasks.len(), 6);
    let payloads: BTreeMap<String, String> = tasks
        .iter()
        .map(|task| {
            let payload = String::from_utf8(task.payload.to_vec()).expect("payload is UTF-8");
            (task.idempotency_key.clone(), payload)
        })
        .collect();
    let expected_payloads = BTreeMap::from([
        ("order-1".to_owned(), r#"{"order":1}"#.to_owned()),
        ("order-2".to_owned(), r#"{"order":2}"#.to_owned()),
        ("orders/0/3".to_owned(), r#"{"order":3}"#.to_owned()),
    ]);
    assert_eq!(payloads, expected_payloads);
    assert!(harness.rejected_records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_rejected_and_skipped() {
    let harness = Harness::new().await;
    harness.create_topic("payments", 1);
    harness.create_product("payment-received", "payments").await;
    let ledger = harness.subscribe("ledger", "payment-received").await;

    harness
        .produce(&[
            TestRecord::new("payments", r#"{"id":"p-1"}"#).key("p-1"),
            TestRecord::tombstone("payments").key("p-2"),
            TestRecord::new("payments", r#"{"id":"p-3""#).key("p-3"),
            TestRecord::new("payments", r#"{"id":"p-4"}"#).header("idempotentKey", &[0xff, 0xfe]),
            TestRecord::new("payments", r#"{"id":"p-5"}"#).key("p-5"),
            TestRecord::new("payments", r#"{"id":"p-6"}"#).key("p-6"),
        ])
        .await;

    let source = harness.start();
    wait_for("the commit of the whole partition", || async {
        harness.committed_offset("payments", 0) == Some(6)
    })
    .await;
    source.stop().await;

    let deliveries = harness.deliveries(&ledger).await;
    let webhook_ids: BTreeSet<WebhookId> = deliveries
        .iter()
        .map(|delivery| delivery.webhook_id.clone())
        .collect();
    let expected: BTreeSet<WebhookId> = ["p-1", "p-5", "p-6"]
        .into_iter()
        .map(|key| WebhookId::derive("payment-received", key))
        .collect();
    assert_eq!(webhook_ids, expected);

    let rejected = harness.rejected_records().await;
    assert_eq!(rejected.len(), 3, "rejected records: {rejected:?}");
    let offsets: Vec<Option<i64>> = rejected.iter().map(|row| row.offset).collect();
    assert_eq!(offsets, [Some(1), Some(2), Some(3)]);
    for row in &rejected {
        assert_eq!(row.product.as_deref(), Some("payment-received"));
        assert_eq!(row.topic.as_deref(), Some("payments"));
        assert_eq!(row.partition, Some(0));
    }

    let tombstone = &rejected[0];
    assert!(
        tombstone.reason.contains("tombstone"),
        "reason: {}",
        tombstone.reason
    );
    assert_eq!(tombstone.payload, None);

    let malformed = &rejected[1];
    assert!(
        malformed.reason.contains("not valid JSON"),
        "reason: {}",
        malformed.reason
    );
    assert_eq!(malformed.payload.as_deref(), Some(&br#"{"id":"p-3""#[..]));

    let bad_key = &rejected[2];
    assert!(
        bad_key.reason.contains("UTF-8"),
        "reason: {}",
        bad_key.reason
    );
    assert!(
        bad_key.reason.contains("idempotentKey"),
        "reason: {}",
        bad_key.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_created_later_is_consumed() {
    let harness = Harness::new().await;
    harness.create_topic("orders", 1);
    harness.create_product("order-created", "orders").await;
    let early = harness.subscribe("early", "order-created").await;
    harness
        .produce(&[TestRecord::new("orders", r#"{"order":1}"#).key("order-1")])
        .await;

    let source = harness.start();
    wait_for("the first product's delivery", || async {
        delivery_count(&harness, &early).await == 1
    })
    .await;

    harness.create_topic("refunds", 2);
    harness.create_product("refund-issued", "refunds").await;
    let late = harness.subscribe("late", "refund-issued").await;
    harness
        .produce(&[
            TestRecord::new("refunds", r#"{"refund":1}"#).key("refund-1"),
            TestRecord::new("refunds", r#"{"refund":2}"#)
                .key("refund-2")
                .partition(1),
            TestRecord::new("orders", r#"{"order":2}"#).key("order-2"),
        ])
        .await;

    wait_for("deliveries of both products", || async {
        delivery_count(&harness, &late).await == 2 && delivery_count(&harness, &early).await == 2
    })
    .await;
    wait_for("the commit of every partition", || async {
        harness.committed_offset("refunds", 0) == Some(1)
            && harness.committed_offset("refunds", 1) == Some(1)
            && harness.committed_offset("orders", 0) == Some(2)
    })
    .await;
    source.stop().await;
    assert_eq!(harness.committed_offset("orders", 0), Some(2));
    assert_eq!(harness.committed_offset("refunds", 0), Some(1));
    assert_eq!(harness.committed_offset("refunds", 1), Some(1));

    let early_ids: BTreeSet<WebhookId> = harness
        .deliveries(&early)
        .await
        .into_iter()
        .map(|delivery| delivery.webhook_id)
        .collect();
    let expected: BTreeSet<WebhookId> = ["order-1", "order-2"]
        .into_iter()
        .map(|key| WebhookId::derive("order-created", key))
        .collect();
    assert_eq!(early_ids, expected);

    let late_ids: BTreeSet<WebhookId> = harness
        .deliveries(&late)
        .await
        .into_iter()
        .map(|delivery| delivery.webhook_id)
        .collect();
    let expected: BTreeSet<WebhookId> = ["refund-1", "refund-2"]
        .into_iter()
        .map(|key| WebhookId::derive("refund-issued", key))
        .collect();
    assert_eq!(late_ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_is_consumed_once_created() {
    let harness = Harness::new().await;
    harness.create_product("invoice-paid", "invoices").await;
    let accounting = harness.subscribe("accounting", "invoice-paid").await;

    // The subscription names a topic that the cluster does not have yet.
    let source = harness.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    harness.create_topic("invoices", 1);
    harness
        .produce(&[TestRecord::new("invoices", r#"{"invoice":1}"#).key("invoice-1")])
        .await;

    wait_for("the commit of the new topic", || async {
        harness.committed_offset("invoices", 0) == Some(1)
    })
    .await;
    source.stop().await;

    let deliveries = harness.deliveries(&accounting).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        deliveries[0].webhook_id,
        WebhookId::derive("invoice-paid", "invoice-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_topic_feeds_each_product() {
    let harness = Harness::new().await;
    harness.create_topic("orders", 1);
    harness.create_product("order-created", "orders").await;
    harness.create_product("order-audit", "orders").await;
    let shop = harness.subscribe("shop", "order-created").await;
    let audit = harness.subscribe("audit", "order-audit").await;

    harness
        .produce(&[
            TestRecord::new("orders", r#"{"order":1}"#).key("order-1"),
            TestRecord::new("orders", r#"{"order":2}"#).key("order-2"),
        ])
        .await;

    let source = harness.start();
    wait_for("the commit of the whole partition", || async {
        harness.committed_offset("orders", 0) == Some(2)
    })
    .await;
    source.stop().await;

    for (application, product) in [(&shop, "order-created"), (&audit, "order-audit")] {
        let deliveries = harness.deliveries(application).await;
        let webhook_ids: BTreeSet<WebhookId> = deliveries
            .iter()
            .map(|delivery| delivery.webhook_id.clone())
            .collect();
        let expected: BTreeSet<WebhookId> = ["order-1", "order-2"]
            .into_iter()
            .map(|key| WebhookId::derive(product, key))
            .collect();
        assert_eq!(webhook_ids, expected, "deliveries of {product}");
        assert!(deliveries
            .iter()
            .all(|delivery| delivery.product == product));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_retries_batch_without_commit() {
    let harness = Harness::new().await;
    harness.create_topic("orders", 1);
    harness.create_product("order-created", "orders").await;
    let shop = harness.subscribe("shop", "order-created").await;
    harness
        .produce(&[
            TestRecord::new("orders", r#"{"order":1}"#).key("order-1"),
            TestRecord::new("orders", r#"{"order":2}"#).key("order-2"),
            TestRecord::new("orders", r#"{"order":3}"#),
        ])
        .await;

    harness.flaky.failing.store(true, Ordering::SeqCst);
    let source = harness.start();
    wait_for("three failed attempts", || async {
        harness.flaky.insert_calls.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(harness.committed_offset("orders", 0), None);
    assert_eq!(delivery_count(&harness, &shop).await, 0);

    harness.flaky.failing.store(false, Ordering::SeqCst);
    wait_for("the commit after the outage", || async {
        harness.committed_offset("orders", 0) == Some(3)
    })
    .await;
    assert_eq!(delivery_count(&harness, &shop).await, 3);
    assert!(harness.rejected_records().await.is_empty());
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_committed_offset() {
    let harness = Harness::new().await;
    harness.create_topic("orders", 1);
    harness.create_product("order-created", "orders").await;
    let shop = harness.subscribe("shop", "order-created").await;
    harness
        .produce(&[TestRecord::new("orders", r#"{"order":1}"#).key("order-1")])
        .await;

    let first = harness.start();
    wait_for("the first delivery", || async {
        delivery_count(&harness, &shop).await == 1
    })
    .await;
    first.stop().await;
    assert_eq!(harness.committed_offset("orders", 0), Some(1));
    let calls_before_restart = harness.flaky.insert_calls.load(Ordering::SeqCst);

    harness
        .produce(&[TestRecord::new("orders", r#"{"order":2}"#).key("order-2")])
        .await;
    let second = harness.start();
    wait_for("the commit after the restart", || async {
        harness.committed_offset("orders", 0) == Some(2)
    })
    .await;
    second.stop().await;

    assert_eq!(delivery_count(&harness, &shop).await, 2);
    // Only the new record is read again: one more insert call, not two.
    let calls_after_restart = harness.flaky.insert_calls.load(Ordering::SeqCst);
    assert_eq!(calls_after_restart - calls_before_restart, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_without_products_returns() {
    let harness = Harness::new().await;
    let source = harness.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    source.stop().await;
}
