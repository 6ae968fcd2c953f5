//! Signature verification and recording, over real HTTPS.

mod common;

use common::{post_with_headers, signed_post, start, BODY};
use hookline_core::signing::{signature_header, SigningSecret};
use hookline_receiver::Verification;
use hyper::Method;

#[tokio::test]
async fn signed_post_is_verified() {
    let harness = start().await;
    let secret = SigningSecret::generate();
    harness.receiver.set_secret("orders", secret.clone());

    let response = signed_post(
        &harness.client,
        &harness.receiver.endpoint_url("orders"),
        &secret,
        "msg_1",
    )
    .header("idempotency-key", "key-1")
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 204);

    let deliveries = harness.receiver.deliveries("orders");
    assert_eq!(deliveries.len(), 1);
    let webhook = &deliveries[0];
    assert_eq!(webhook.verification, Verification::Verified);
    assert_eq!(webhook.responded_status, 204);
    assert_eq!(webhook.endpoint, "orders");
    assert_eq!(webhook.webhook_id, "msg_1");
    assert_eq!(
        webhook.signature,
        secret.sign("msg_1", webhook.timestamp, BODY.as_bytes())
    );
    assert_eq!(webhook.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(webhook.content_type.as_deref(), Some("application/json"));
    assert_eq!(webhook.body, BODY.as_bytes());
    assert_eq!(webhook.json().unwrap()["data"]["id"], 42);
    assert_eq!(webhook.method, Method::POST);
    assert_eq!(webhook.attempt_index, 1);

    let stats = harness.receiver.stats();
    assert_eq!(stats.total, 1);
    assert_eq!(stats.verified, 1);
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stats.failed_verification, 0);
}

#[tokio::test]
async fn wrong_secret_fails_and_is_recorded() {
    let harness = start().await;
    harness
        .receiver
        .set_secret("orders", SigningSecret::generate());
    let wrong = SigningSecret::generate();

    let url = harness.receiver.endpoint_url("orders");
    let response = signed_post(&harness.client, &url, &wrong, "msg_1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let deliveries = harness.receiver.deliveries("orders");
    assert_eq!(deliveries.len(), 1);
    let Verification::Failed(reason) = &deliveries[0].verification else {
        panic!(
            "expected a failed verification, got {:?}",
            deliveries[0].verification
        );
    };
    assert!(reason.contains("no v1 signature"), "{reason}");
    assert_eq!(deliveries[0].responded_status, 401);

    let stats = harness.receiver.stats();
    assert_eq!(stats.failed_verification, 1);
    assert_eq!(stats.verified, 0);
    assert_eq!(stats.succeeded, 0);
}

#[tokio::test]
async fn any_of_several_signatures_verifies() {
    let harness = start().await;
    let current = SigningSecret::generate();
    harness.receiver.set_secret("orders", current.clone());

    let timestamp = common::now();
    let retired = SigningSecret::generate();
    let header = signature_header(&[retired, current], "msg_1", timestamp, BODY.as_bytes());
    assert_eq!(header.split(' ').count(), 2);

    let url = harness.receiver.endpoint_url("orders");
    let response = post_with_headers(&harness.client, &url, "msg_1", timestamp, &header)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        harness.receiver.deliveries("orders")[0].verification,
        Verification::Verified
    );
}

#[tokio::test]
async fn stale_timestamp_fails() {
    let harness = start().await;
    let secret = SigningSecret::generate();
    harness.receiver.set_secret("orders", secret.clone());

    let timestamp = common::now() - 6 * 60;
    let signature = secret.sign("msg_1", timestamp, BODY.as_bytes());
    let url = harness.receiver.endpoint_url("orders");
    let response = post_with_headers(&harness.client, &url, "msg_1", timestamp, &signature)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let webhook = &harness.receiver.deliveries("orders")[0];
    assert_eq!(webhook.timestamp, timestamp);
    let Verification::Failed(reason) = &webhook.verification else {
        panic!(
            "expected a failed verification, got {:?}",
            webhook.verification
        );
    };
    assert!(reason.contains("300s"), "{reason}");
}

#[tokio::test]
async fn missing_signature_header_fails() {
    let harness = start().await;
    harness
        .receiver
        .set_secret("orders", SigningSecret::generate());

    let response = harness
        .client
        .post(harness.receiver.endpoint_url("orders"))
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", common::now().to_string())
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let webhook = &harness.receiver.deliveries("orders")[0];
    let expected = Verification::Failed("missing webhook-signature header".to_owned());
    assert_eq!(webhook.verification, expected);
    assert_eq!(webhook.signature, "");
}

#[tokio::test]
async fn endpoint_without_secret_accepts() {
    let harness = start().await;
    let url = harness.receiver.endpoint_url("open");
    let response = harness.client.post(&url).body(BODY).send().await.unwrap();
    assert_eq!(response.status(), 204);

    let webhook = &harness.receiver.deliveries("open")[0];
    assert_eq!(webhook.verification, Verification::NoSecret);
    assert_eq!(webhook.webhook_id, "");
    assert_eq!(webhook.timestamp, 0);
    assert_eq!(harness.receiver.stats().no_secret, 1);
}

#[tokio::test]
async fn successful_redelivery_counts_as_duplicate() {
    let harness = start().await;
    let secret = SigningSecret::generate();
    harness.receiver.set_secret("orders", secret.clone());
    let url = harness.receiver.endpoint_url("orders");

    for webhook_id in ["msg_1", "msg_1", "msg_2", "msg_1"] {
        let response = signed_post(&harness.client, &url, &secret, webhook_id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    let stats = harness.receiver.stats();
    assert_eq!(stats.succeeded, 4);
    assert_eq!(stats.duplicates, 2);
    let attempts: Vec<u32> = harness
        .receiver
        .all()
        .iter()
        .map(|webhook| webhook.attempt_index)
        .collect();
    assert_eq!(attempts, [1, 2, 1, 3]);
}

#[tokio::test]
async fn same_id_on_other_endpoint_is_not_duplicate() {
    let harness = start().await;
    let secret = SigningSecret::generate();
    for endpoint in ["orders", "invoices"] {
        harness.receiver.set_secret(endpoint, secret.clone());
        let url = harness.receiver.endpoint_url(endpoint);
        let response = signed_post(&harness.client, &url, &secret, "msg_1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    assert_eq!(harness.receiver.stats().duplicates, 0);
    assert_eq!(harness.receiver.deliveries("invoices")[0].attempt_index, 1);
}
