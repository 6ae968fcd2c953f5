//! TLS trust, HTTP versions, connection reuse and shutdown.

mod common;

use common::{client_builder, start, start_on, BODY};
use hookline_receiver::TestPki;
use reqwest::Version;
use std::collections::HashSet;

#[tokio::test]
async fn client_without_ca_fails_handshake() {
    let harness = start().await;
    let other_pki = TestPki::generate().unwrap();
    let stranger = client_builder(&other_pki).build().unwrap();

    let error = stranger
        .post(harness.receiver.endpoint_url("orders"))
        .body(BODY)
        .send()
        .await
        .expect_err("a client that does not trust the CA must fail");
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(harness.receiver.stats().total, 0);
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let harness = start().await;
    let response = harness
        .client
        .post(harness.receiver.endpoint_url("orders"))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(harness.receiver.all()[0].version, Version::HTTP_2);
}

#[tokio::test]
async fn http1_keeps_connection_alive() {
    let harness = start().await;
    let client = client_builder(&harness.pki).http1_only().build().unwrap();
    for _ in 0..3 {
        let response = client
            .post(harness.receiver.endpoint_url("orders"))
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        assert_eq!(response.version(), Version::HTTP_11);
    }

    let peers: HashSet<_> = harness
        .receiver
        .all()
        .iter()
        .map(|webhook| webhook.peer_addr)
        .collect();
    assert_eq!(peers.len(), 1, "requests came over {peers:?}");
}

#[tokio::test]
async fn concurrent_http2_requests_are_all_recorded() {
    let harness = start().await;
    let url = harness.receiver.endpoint_url("orders");
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..100 {
        let request = harness
            .client
            .post(&url)
            .header("webhook-id", format!("msg_{index}"))
            .body(BODY);
        tasks.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 204);
    }

    let stats = harness.receiver.stats();
    assert_eq!(stats.total, 100);
    assert_eq!(stats.succeeded, 100);
    assert_eq!(stats.duplicates, 0);
}

#[tokio::test]
async fn localhost_name_is_trusted() {
    let harness = start().await;
    let port = harness.receiver.local_addr().port();
    let url = format!("https://localhost:{port}/hooks/orders");
    let response = harness.client.post(&url).body(BODY).send().await.unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn ipv6_loopback_is_served() {
    let harness = start_on("[::1]:0").await;
    let base_url = harness.receiver.base_url();
    assert!(base_url.starts_with("https://[::1]:"), "{base_url}");

    let response = harness
        .client
        .post(harness.receiver.endpoint_url("orders"))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn wildcard_listen_reports_loopback_url() {
    let harness = start_on("0.0.0.0:0").await;
    let port = harness.receiver.local_addr().port();
    assert_eq!(
        harness.receiver.base_url(),
        format!("https://127.0.0.1:{port}")
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let harness = start().await;
    let url = harness.receiver.endpoint_url("orders");
    let observer = harness.receiver.clone();
    harness.client.post(&url).body(BODY).send().await.unwrap();

    harness.receiver.shutdown().await;

    let fresh_client = client_builder(&harness.pki).build().unwrap();
    let error = fresh_client
        .post(&url)
        .body(BODY)
        .send()
        .await
        .expect_err("server is stopped");
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(observer.stats().total, 1);
}
