//! Signing-secret rotation through the admin API: during the overlap, every
//! delivery carries one `v1` signature per secret, newest first.

mod common;

use common::{order_event, Backend, Server, World};
use hookline_core::signing::SigningSecret;
use hookline_receiver::ReceivedWebhook;
use serde_json::json;
use std::time::Duration;
use time::OffsetDateTime;

const ENDPOINT: &str = "shop";

/// Starts the processes of `backend`: one `serve` for the embedded mode,
/// and separate `api` and `dispatcher` processes for the distributed mode,
/// so that the dispatcher learns of the rotation only through Redis.
async fn start(world: &World) -> (Server, Option<Server>) {
    match world.backend {
        Backend::Embedded => (world.serve(&[]).await, None),
        Backend::Distributed => {
            let api = world.start("api", &[]).await;
            let dispatcher = world.start("dispatcher", &[]).await;
            (api, Some(dispatcher))
        }
    }
}

/// Waits for the `count`-th delivery to the endpoint and returns it.
async fn nth_delivery(world: &World, count: usize) -> ReceivedWebhook {
    let arrived = world
        .receiver
        .wait_for_deliveries(
            |records| records.iter().filter(|r| r.endpoint == ENDPOINT).count() >= count,
            Duration::from_secs(20),
        )
        .await;
    assert!(arrived, "delivery {count} did not arrive");
    world.receiver.deliveries(ENDPOINT).swap_remove(count - 1)
}

/// Checks that exactly `secrets` signed the delivery, in that order.
fn assert_signed_by(delivery: &ReceivedWebhook, secrets: &[&SigningSecret]) {
    let signatures: Vec<&str> = delivery.signature.split(' ').collect();
    assert_eq!(
        signatures.len(),
        secrets.len(),
        "signatures in {:?}",
        delivery.signature
    );
    for (index, (signature, secret)) in signatures.iter().zip(secrets).enumerate() {
        let expected = secret.sign(&delivery.webhook_id, delivery.timestamp, &delivery.body);
        assert_eq!(*signature, expected, "signature {index}");
    }
}

async fn rotation_signs_with_both_secrets(backend: Backend) {
    let world = World::with_backend(backend).await;
    let (server, _dispatcher) = start(&world).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let id = server
        .create_application(&world.receiver, "order-created", ENDPOINT)
        .await;
    let old_secret = world
        .receiver_secrets()
        .pop()
        .expect("the secret was noted");
    let old_secret = SigningSecret::parse(&old_secret).unwrap();

    // The first delivery puts the endpoint with only the old secret into
    // the dispatcher's cache.
    server
        .ingest("order-created", Some("before"), &order_event("before"))
        .await;
    let before = nth_delivery(&world, 1).await;
    assert_signed_by(&before, &[&old_secret]);

    let path = format!("/api/v1/applications/{id}/secret/rotate");
    let (status, body) = server
        .request(reqwest::Method::POST, &path, Some(json!({"overlap": "1h"})))
        .await;
    assert_eq!(status, 200, "rotate: {body}");
    assert_eq!(body["id"], id.as_str());
    let new_secret = SigningSecret::parse(body["secret"].as_str().unwrap()).unwrap();
    assert_ne!(new_secret, old_secret);
    let expires_at = OffsetDateTime::parse(
        body["previous_secret_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let overlap = expires_at - OffsetDateTime::now_utc();
    assert!(
        overlap > time::Duration::minutes(59) && overlap <= time::Duration::hours(1),
        "previous secret expires in {overlap}"
    );
    world.receiver.set_secret(ENDPOINT, new_secret.clone());

    // The directory cache lives 5 seconds, so a delivery sent at once shows
    // that the rotation invalidated it (through Redis when distributed).
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .ingest("order-created", Some("after"), &order_event("after"))
        .await;
    let after = nth_delivery(&world, 2).await;
    assert_eq!(after.idempotency_key.as_deref(), Some("after"));
    assert_signed_by(&after, &[&new_secret, &old_secret]);
    assert!(after.succeeded(), "the receiver verifies the new secret");

    let stats = world.receiver.stats();
    assert_eq!(stats.failed_verification, 0);
}

both_backends!(rotation_signs_with_both_secrets);

async fn rotation_rejects_bad_requests(backend: Backend) {
    let world = World::with_backend(backend).await;
    let (server, _dispatcher) = start(&world).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let id = server
        .create_application(&world.receiver, "order-created", ENDPOINT)
        .await;
    let path = format!("/api/v1/applications/{id}/secret/rotate");

    let (status, body) = server
        .request(
            reqwest::Method::POST,
            &path,
            Some(json!({"overlap": "forever"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "overlap");

    let (status, body) = server
        .request(
            reqwest::Method::POST,
            &path,
            Some(json!({"overlap": "31days"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let missing = "/api/v1/applications/app_0000/secret/rotate";
    let (status, body) = server.request(reqwest::Method::POST, missing, None).await;
    assert_eq!(status, 404, "{body}");

    // Without a body the default overlap of a day applies.
    let (status, body) = server.request(reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 200, "{body}");
    let expires_at = OffsetDateTime::parse(
        body["previous_secret_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let overlap = expires_at - OffsetDateTime::now_utc();
    assert!(
        overlap > time::Duration::hours(23),
        "previous secret expires in {overlap}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rejects_bad_requests_embedded() {
    rotation_rejects_bad_requests(Backend::Embedded).await;
}
