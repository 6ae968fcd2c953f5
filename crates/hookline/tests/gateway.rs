//! End to end through `hookline gateway` as a process: a `hookline serve`
//! whose dispatcher sends through it, and the 3scale proxied form.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{order_event, Server, World};
use hmac::{Hmac, Mac};
use hookline_receiver::Verification;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;

const GATEWAY_TOKEN: &str = "gateway-test-token";
const USER_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const BODY: &str = r#"{"orderId":"1001XYZ","total":42.5}"#;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A started gateway process and the base URL of its gateway listener.
struct Gateway {
    _process: Server,
    url: String,
}

async fn start_gateway(world: &World, extra: &[(&str, &str)]) -> Gateway {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = vec![
        ("HOOKLINE_GATEWAY__LISTEN", listen.as_str()),
        ("HOOKLINE_GATEWAY__TOKEN", GATEWAY_TOKEN),
    ];
    env.extend_from_slice(extra);
    let process = world.start("gateway", &env).await;
    Gateway {
        _process: process,
        url: format!("http://{listen}"),
    }
}

fn body_hmac_base64(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

fn body_hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Posts the proxied form: `webhook-url` and `user_key`, and the token.
async fn proxied(
    gateway: &Gateway,
    webhook_url: Option<&str>,
    user_key: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/", gateway.url))
        .header("content-type", "application/json")
        .body(BODY);
    if let Some(url) = webhook_url {
        request = request.header("webhook-url", url);
    }
    if let Some(key) = user_key {
        request = request.header("user_key", key);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("gateway responds");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_sends_through_gateway_once() {
    let world = World::new().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let gateway_url = format!("http://{listen}");
    let server = world
        .serve(&[
            ("HOOKLINE_DISPATCHER__GATEWAY_URL", gateway_url.as_str()),
            ("HOOKLINE_GATEWAY__TOKEN", GATEWAY_TOKEN),
        ])
        .await;
    let gateway = world
        .start(
            "gateway",
            &[
                ("HOOKLINE_GATEWAY__LISTEN", listen.as_str()),
                ("HOOKLINE_GATEWAY__TOKEN", GATEWAY_TOKEN),
            ],
        )
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let application = server
        .create_application(&world.receiver, "order-created", "alpha")
        .await;

    for n in 0..3 {
        let key = format!("gw-{n}");
        let (status, body) = server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        assert_eq!(status, 202, "ingest: {body}");
    }
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 3, Duration::from_secs(20))
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());

    let deliveries = server
        .wait_deliveries(&application, Duration::from_secs(5), |list| {
            list.len() == 3 && list.iter().all(|d| d["state"] == "delivered")
        })
        .await;
    for delivery in &deliveries {
        assert_eq!(delivery["state"], "delivered");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "one attempt recorded: {delivery}");
        assert_eq!(attempts[0]["status_code"], 204);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = world.receiver.deliveries("alpha");
    assert_eq!(received.len(), 3, "each attempt is sent once");
    assert!(received
        .iter()
        .all(|r| r.verification == Verification::Verified));

    let metrics = reqwest::get(format!("{}/metrics", gateway.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"hookline_gateway_attempts_total{outcome="sent"} 3"#),
        "the gateway sent all three:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_without_token_is_unauthorized() {
    let world = World::new().await;
    let gateway = start_gateway(&world, &[]).await;
    let attempts = format!("{}/v1/attempts", gateway.url);
    let client = reqwest::Client::new();
    let missing = client.post(&attempts).body("{}").send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    let wrong = client
        .post(&attempts)
        .bearer_auth("not-the-token")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_form_signs_body_and_strips_headers() {
    let world = World::new().await;
    let gateway = start_gateway(&world, &[]).await;
    let url = world.receiver.endpoint_url("proxied");

    let (status, _) = proxied(&gateway, Some(&url), Some(USER_KEY), Some(GATEWAY_TOKEN)).await;
    assert_eq!(status, 204, "the consumer's status comes back");
    let received = world.receiver.deliveries("proxied");
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].body.as_ref(),
        BODY.as_bytes(),
        "body byte for byte"
    );
    let headers = &world.receiver.request_headers("proxied")[0];
    let signature = headers["x-hmac-signature"].to_str().unwrap();
    assert_eq!(signature, body_hmac_base64(USER_KEY, BODY.as_bytes()));
    for removed in ["user_key", "webhook-url", "authorization"] {
        assert!(
            !headers.contains_key(removed),
            "{removed} reached the consumer"
        );
    }
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_form_names_missing_header() {
    let world = World::new().await;
    let gateway = start_gateway(&world, &[]).await;
    let url = world.receiver.endpoint_url("proxied");

    let (status, body) = proxied(&gateway, Some(&url), None, Some(GATEWAY_TOKEN)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "missing_header");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("user_key"));

    let (status, body) = proxied(&gateway, None, Some(USER_KEY), Some(GATEWAY_TOKEN)).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("webhook-url"));

    let (status, _) = proxied(&gateway, Some(&url), Some(USER_KEY), None).await;
    assert_eq!(status, 401, "no token, no relay");
    assert_eq!(world.receiver.stats().total, 0, "nothing was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_form_signs_github_style() {
    let world = World::new().await;
    let gateway = start_gateway(
        &world,
        &[
            ("HOOKLINE_GATEWAY__HMAC_HEADER", "X-Hub-Signature-256"),
            ("HOOKLINE_GATEWAY__HMAC_ENCODING", "hex"),
            ("HOOKLINE_GATEWAY__HMAC_PREFIX", "sha256="),
        ],
    )
    .await;
    let url = world.receiver.endpoint_url("github");
    let (status, _) = proxied(&gateway, Some(&url), Some(USER_KEY), Some(GATEWAY_TOKEN)).await;
    assert_eq!(status, 204);
    let headers = &world.receiver.request_headers("github")[0];
    let expected = format!("sha256={}", body_hmac_hex(USER_KEY, BODY.as_bytes()));
    assert_eq!(headers["x-hub-signature-256"].to_str().unwrap(), expected);
    assert!(!headers.contains_key("x-hmac-signature"));
}

#[test]
fn gateway_without_token_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"))
        .arg("gateway")
        .env_clear()
        .env("HOOKLINE_STORAGE__DATA_DIR", dir.path())
        .env("HOOKLINE_GATEWAY__LISTEN", "127.0.0.1:0")
        .env("HOOKLINE_API__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gateway.token must be set"), "{stderr}");
}

/// Length of a plan's window in the rate-limit test, through
/// `limits.period_override`.
const WINDOW: Duration = Duration::from_secs(10);

/// Waits, if needed, until the current window of length `WINDOW` has at
/// least `needed` left, and returns the end of that window. Windows are
/// aligned to multiples of their length since the Unix epoch.
async fn window_end_with_room(needed: Duration) -> OffsetDateTime {
    let window_ms = WINDOW.as_millis() as i128;
    let end_of = |at: OffsetDateTime| {
        let millis = at.unix_timestamp_nanos() / 1_000_000;
        let end = millis - millis.rem_euclid(window_ms) + window_ms;
        OffsetDateTime::from_unix_timestamp_nanos(end * 1_000_000).unwrap()
    };
    let now = OffsetDateTime::now_utc();
    let left = end_of(now) - now;
    if left < needed {
        let wait = Duration::try_from(left).unwrap_or_default() + Duration::from_millis(50);
        tokio::time::sleep(wait).await;
    }
    end_of(OffsetDateTime::now_utc())
}

/// Sums one counter of the usage report of `application`.
async fn usage_total(server: &Server, application: &str, counter: &str) -> u64 {
    let path = format!("/api/v1/analytics/usage?application={application}");
    let (status, body) = server.request(Method::GET, &path, None).await;
    assert_eq!(status, 200, "usage: {body}");
    body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket[counter].as_u64().unwrap())
        .sum()
}

/// Polls the usage report until `counter` reaches `expected`, and returns the last total.
async fn wait_usage(server: &Server, application: &str, counter: &str, expected: u64) -> u64 {
    for _ in 0..100 {
        let total = usage_total(server, application, counter).await;
        if total >= expected {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    usage_total(server, application, counter).await
}

async fn gateway_metrics(gateway: &Server) -> String {
    reqwest::get(format!("{}/metrics", gateway.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_rate_limit_defers_without_attempts() {
    let world = World::new().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let gateway_url = format!("http://{listen}");
    let shared = [
        ("HOOKLINE_GATEWAY__TOKEN", GATEWAY_TOKEN),
        ("HOOKLINE_GATEWAY__COUNT_LIMITS", "true"),
        ("HOOKLINE_LIMITS__PERIOD_OVERRIDE", "10s"),
    ];
    let mut serve_env = vec![("HOOKLINE_DISPATCHER__GATEWAY_URL", gateway_url.as_str())];
    serve_env.extend_from_slice(&shared);
    let server = world.serve(&serve_env).await;
    let mut gateway_env = vec![("HOOKLINE_GATEWAY__LISTEN", listen.as_str())];
    gateway_env.extend_from_slice(&shared);
    let gateway = world.start("gateway", &gateway_env).await;

    server
        .create_product("order-created", "order-created-event")
        .await;
    let plan = json!({"name": "tiny", "limit": 3, "period": "hour", "over_limit": "defer"});
    let (status, body) = server
        .request(Method::POST, "/api/v1/plans", Some(plan))
        .await;
    assert_eq!(status, 201, "create plan: {body}");
    let application = server
        .create_application(&world.receiver, "order-created", "limited")
        .await;
    let (status, body) = server
        .request(
            Method::PATCH,
            &format!("/api/v1/applications/{application}"),
            Some(json!({"plan": "tiny"})),
        )
        .await;
    assert_eq!(status, 200, "move to the tiny plan: {body}");

    let end = window_end_with_room(Duration::from_secs(7)).await;
    for n in 0..5 {
        let key = format!("limited-{n}");
        let (status, body) = server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        assert_eq!(status, 202, "ingest: {body}");
    }
    let until_end = Duration::try_from(end - OffsetDateTime::now_utc()).unwrap_or_default();
    tokio::time::sleep(until_end).await;
    let within = world
        .receiver
        .deliveries("limited")
        .iter()
        .filter(|r| r.received_at < end)
        .count();
    assert_eq!(within, 3, "the plan allows 3 per window");

    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 5, WINDOW + Duration::from_secs(5))
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());
    let received = world.receiver.deliveries("limited");
    assert_eq!(received.len(), 5, "each event arrives once");
    let late = received.iter().filter(|r| r.received_at >= end).count();
    assert_eq!(late, 2, "the 2 over the limit arrive after the window");

    let deliveries = server
        .wait_deliveries(&application, Duration::from_secs(5), |list| {
            list.len() == 5 && list.iter().all(|d| d["state"] == "delivered")
        })
        .await;
    for delivery in &deliveries {
        assert_eq!(delivery["state"], "delivered");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(
            attempts.len(),
            1,
            "a deferral is not an attempt: {delivery}"
        );
        assert_eq!(attempts[0]["status_code"], 204);
    }
    assert_eq!(wait_usage(&server, &application, "throttled", 2).await, 2);
    assert_eq!(wait_usage(&server, &application, "delivered", 5).await, 5);
    assert_eq!(
        usage_total(&server, &application, "failed_attempts").await,
        0
    );

    let metrics = gateway_metrics(&gateway).await;
    assert!(
        metrics.contains(r#"hookline_gateway_attempts_total{outcome="rate_limited"} 2"#),
        "the gateway rejected the two over the limit:\n{metrics}"
    );
    assert!(
        metrics.contains(r#"hookline_gateway_attempts_total{outcome="sent"} 5"#),
        "the gateway sent all five:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_outage_uses_no_retries() {
    let world = World::new().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let gateway_url = format!("http://{listen}");
    let server = world
        .serve(&[
            ("HOOKLINE_DISPATCHER__GATEWAY_URL", gateway_url.as_str()),
            ("HOOKLINE_GATEWAY__TOKEN", GATEWAY_TOKEN),
        ])
        .await;
    let gateway_env = [
        ("HOOKLINE_GATEWAY__LISTEN", listen.as_str()),
        ("HOOKLINE_GATEWAY__TOKEN", GATEWAY_TOKEN),
    ];
    let gateway = world.start("gateway", &gateway_env).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let application = server
        .create_application(&world.receiver, "order-created", "alpha")
        .await;

    let (status, body) = server
        .ingest("order-created", Some("before"), &order_event("before"))
        .await;
    assert_eq!(status, 202, "ingest: {body}");
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 1, Duration::from_secs(10))
        .await;
    assert!(arrived, "delivered while the gateway runs");

    gateway.kill();
    let (status, body) = server
        .ingest("order-created", Some("during"), &order_event("during"))
        .await;
    assert_eq!(status, 202, "ingest: {body}");
    // Long enough for the dispatcher to find the gateway down more than once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pending = server.deliveries(&application).await;
    let during = pending
        .iter()
        .find(|d| d["state"] != "delivered")
        .expect("the delivery made during the outage is pending");
    assert_eq!(
        during["attempts"].as_array().unwrap().len(),
        0,
        "nothing was sent, so no attempt is recorded: {during}"
    );
    assert_eq!(
        world.receiver.stats().total,
        1,
        "nothing was sent meanwhile"
    );

    let _gateway = world.start("gateway", &gateway_env).await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 2, Duration::from_secs(15))
        .await;
    assert!(arrived, "delivered after the gateway is back");
    let deliveries = server
        .wait_deliveries(&application, Duration::from_secs(5), |list| {
            list.len() == 2 && list.iter().all(|d| d["state"] == "delivered")
        })
        .await;
    for delivery in &deliveries {
        assert_eq!(delivery["state"], "delivered");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "the outage used no retry: {delivery}");
        assert_eq!(attempts[0]["status_code"], 204);
    }
    assert_eq!(
        usage_total(&server, &application, "failed_attempts").await,
        0
    );
}
