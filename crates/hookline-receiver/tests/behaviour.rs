//! Scripted behaviours, routing and waiting, over real HTTPS.

mod common;

use common::{signed_post, start, BODY};
use hookline_core::signing::SigningSecret;
use hookline_receiver::{Behaviour, Receiver, Verification};
use hyper::Method;
use std::time::{Duration, Instant};

async fn post_statuses(
    harness: &common::Harness,
    secret: &SigningSecret,
    webhook_id: &str,
    count: usize,
) -> Vec<u16> {
    let url = harness.receiver.endpoint_url("orders");
    let mut statuses = Vec::new();
    for _ in 0..count {
        let response = signed_post(&harness.client, &url, secret, webhook_id)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

fn scripted(harness: &common::Harness, behaviour: Behaviour) -> SigningSecret {
    let secret = SigningSecret::generate();
    harness.receiver.set_secret("orders", secret.clone());
    harness.receiver.script("orders", behaviour);
    secret
}

#[tokio::test]
async fn fail_times_then_succeeds() {
    let harness = start().await;
    let secret = scripted(
        &harness,
        Behaviour::FailTimes {
            failures: 2,
            status: 500,
        },
    );

    assert_eq!(
        post_statuses(&harness, &secret, "msg_1", 3).await,
        [500, 500, 204]
    );

    let deliveries = harness.receiver.deliveries("orders");
    let attempts: Vec<u32> = deliveries
        .iter()
        .map(|webhook| webhook.attempt_index)
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let recorded: Vec<u16> = deliveries
        .iter()
        .map(|webhook| webhook.responded_status)
        .collect();
    assert_eq!(recorded, [500, 500, 204]);
    assert!(deliveries
        .iter()
        .all(|webhook| webhook.verification == Verification::Verified));

    let stats = harness.receiver.stats();
    assert_eq!(stats.verified, 3);
    assert_eq!(stats.succeeded, 1);
    assert_eq!(stats.duplicates, 0);
}

#[tokio::test]
async fn fail_times_counts_per_webhook() {
    let harness = start().await;
    let secret = scripted(
        &harness,
        Behaviour::FailTimes {
            failures: 1,
            status: 502,
        },
    );

    assert_eq!(
        post_statuses(&harness, &secret, "msg_1", 2).await,
        [502, 204]
    );
    assert_eq!(
        post_statuses(&harness, &secret, "msg_2", 2).await,
        [502, 204]
    );
}

#[tokio::test]
async fn always_fail_never_succeeds() {
    let harness = start().await;
    let secret = scripted(&harness, Behaviour::AlwaysFail { status: 410 });
    assert_eq!(
        post_statuses(&harness, &secret, "msg_1", 3).await,
        [410, 410, 410]
    );
    assert_eq!(harness.receiver.stats().succeeded, 0);
}

#[tokio::test]
async fn retry_after_sends_header_then_succeeds() {
    let harness = start().await;
    let secret = scripted(
        &harness,
        Behaviour::RetryAfter {
            failures: 1,
            seconds: 7,
        },
    );
    let url = harness.receiver.endpoint_url("orders");

    let first = signed_post(&harness.client, &url, &secret, "msg_1")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "7");

    let second = signed_post(&harness.client, &url, &secret, "msg_1")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 204);
    assert!(second.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn fail_ratio_is_repeatable_across_receivers() {
    let behaviour = Behaviour::FailRatio {
        ratio: 0.5,
        status: 500,
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let harness = start().await;
        let secret = scripted(&harness, behaviour.clone());
        let mut statuses = Vec::new();
        for index in 0..20 {
            statuses.extend(post_statuses(&harness, &secret, &format!("msg_{index}"), 1).await);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&500), "{:?}", runs[0]);
    assert!(runs[0].contains(&204), "{:?}", runs[0]);
}

#[tokio::test]
async fn delay_holds_the_response() {
    let harness = start().await;
    let delay = Duration::from_millis(300);
    let secret = scripted(&harness, Behaviour::Delay(delay));

    let started = Instant::now();
    assert_eq!(post_statuses(&harness, &secret, "msg_1", 1).await, [204]);
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
}

/// Posts one signed request to a `Hang` endpoint with a client that gives up
/// after 300 ms, then checks what the receiver recorded and that shutdown does
/// not wait for the abandoned request.
async fn check_hang(http1_only: bool, expected_version: hyper::Version) {
    let harness = start().await;
    let secret = scripted(&harness, Behaviour::Hang);
    let mut builder = common::client_builder(&harness.pki).timeout(Duration::from_millis(300));
    if http1_only {
        builder = builder.http1_only();
    }
    let client = builder.build().unwrap();
    let url = harness.receiver.endpoint_url("orders");

    let error = signed_post(&client, &url, &secret, "msg_1")
        .send()
        .await
        .expect_err("a Hang endpoint must not respond");
    assert!(error.is_timeout(), "expected a timeout, got {error:?}");

    let deliveries = harness.receiver.deliveries("orders");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].responded_status, 0);
    assert_eq!(deliveries[0].verification, Verification::Verified);
    assert_eq!(deliveries[0].version, expected_version);
    let stats = harness.receiver.stats();
    assert_eq!(stats.total, 1);
    assert_eq!(stats.succeeded, 0);

    // The receiver gives open requests 5 s on shutdown, so a quick stop shows
    // that the abandoned request no longer keeps its connection busy.
    let started = Instant::now();
    harness.receiver.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hang_never_responds_over_http2() {
    check_hang(false, hyper::Version::HTTP_2).await;
}

#[tokio::test]
async fn hang_never_responds_over_http1() {
    check_hang(true, hyper::Version::HTTP_11).await;
}

#[tokio::test]
#[should_panic(expected = "invalid HTTP status 99")]
async fn script_rejects_invalid_status() {
    let harness = start().await;
    harness
        .receiver
        .script("orders", Behaviour::AlwaysFail { status: 99 });
}

#[tokio::test]
async fn unknown_path_is_404_and_recorded() {
    let harness = start().await;
    let url = format!("{}/other/path?x=1", harness.receiver.base_url());
    let response = harness.client.post(&url).body(BODY).send().await.unwrap();
    assert_eq!(response.status(), 404);

    let deliveries = harness.receiver.deliveries("/other/path");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].responded_status, 404);
    assert_eq!(harness.receiver.stats().total, 1);
}

#[tokio::test]
async fn get_is_405() {
    let harness = start().await;
    let response = harness
        .client
        .get(harness.receiver.endpoint_url("orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");

    let webhook = &harness.receiver.deliveries("orders")[0];
    assert_eq!(webhook.method, Method::GET);
    assert_eq!(webhook.responded_status, 405);
}

#[tokio::test]
async fn wait_for_sees_later_requests() {
    let harness = start().await;
    let url = harness.receiver.endpoint_url("orders");
    let client = harness.client.clone();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..3 {
            client.post(&url).body(BODY).send().await.unwrap();
        }
    });

    let receiver: &Receiver = &harness.receiver;
    let timeout = Duration::from_secs(10);
    assert!(
        receiver
            .wait_for(|stats| stats.succeeded >= 3, timeout)
            .await
    );
    assert!(
        receiver
            .wait_for_deliveries(|all| all.len() >= 3, timeout)
            .await
    );
    sender.await.unwrap();
}

#[tokio::test]
async fn wait_for_times_out() {
    let harness = start().await;
    let started = Instant::now();
    let met = harness
        .receiver
        .wait_for(|stats| stats.total > 0, Duration::from_millis(200))
        .await;
    assert!(!met);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn clear_resets_log_and_attempts() {
    let harness = start().await;
    let secret = scripted(
        &harness,
        Behaviour::FailTimes {
            failures: 1,
            status: 500,
        },
    );
    assert_eq!(
        post_statuses(&harness, &secret, "msg_1", 2).await,
        [500, 204]
    );

    harness.receiver.clear();
    assert_eq!(harness.receiver.stats().total, 0);
    assert!(harness.receiver.all().is_empty());

    assert_eq!(post_statuses(&harness, &secret, "msg_1", 1).await, [500]);
    assert_eq!(harness.receiver.all()[0].attempt_index, 1);
}

#[tokio::test]
async fn oversized_body_is_413_and_not_recorded() {
    let harness = start().await;
    let body = vec![b'x'; hookline_receiver::MAX_BODY_BYTES + 1];
    let response = harness
        .client
        .post(harness.receiver.endpoint_url("orders"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(harness.receiver.stats().total, 0);
}
