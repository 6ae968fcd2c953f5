//! Helpers shared by the integration tests: a started receiver and HTTPS
//! clients that trust (or do not trust) its CA.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use hookline_core::signing::SigningSecret;
use hookline_receiver::{Receiver, TestPki};
use std::time::Duration;

pub(crate) const BODY: &str = r#"{"type":"order.created","data":{"id":42}}"#;

pub(crate) struct Harness {
    pub(crate) pki: TestPki,
    pub(crate) receiver: Receiver,
    pub(crate) client: reqwest::Client,
}

/// Starts a receiver on 127.0.0.1 with a client that trusts its CA and
/// negotiates the HTTP version by ALPN.
pub(crate) async fn start() -> Harness {
    start_on("127.0.0.1:0").await
}

pub(crate) async fn start_on(listen: &str) -> Harness {
    let pki = TestPki::generate().expect("generate test certificates");
    let receiver = Receiver::start(&pki, listen.parse().unwrap())
        .await
        .expect("start receiver");
    let client = client_builder(&pki).build().unwrap();
    Harness {
        pki,
        receiver,
        client,
    }
}

/// Builds a client that trusts only `pki`'s CA.
pub(crate) fn client_builder(pki: &TestPki) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Builds a POST with the Standard Webhooks headers, signed with `secret`.
pub(crate) fn signed_post(
    client: &reqwest::Client,
    url: &str,
    secret: &SigningSecret,
    webhook_id: &str,
) -> reqwest::RequestBuilder {
    let timestamp = now();
    let signature = secret.sign(webhook_id, timestamp, BODY.as_bytes());
    post_with_headers(client, url, webhook_id, timestamp, &signature)
}

pub(crate) fn post_with_headers(
    client: &reqwest::Client,
    url: &str,
    webhook_id: &str,
    timestamp: i64,
    signature: &str,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(BODY)
}
