//! Hostile endpoints and hostile input through `hookline serve`: endpoints
//! that are gone, keep failing or hang, and a token that may only ingest.

mod common;

use common::{order_event, Backend, World, TOKEN};
use hookline_receiver::{Behaviour, Receiver, Verification};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn application(server: &common::Server, id: &str) -> Value {
    let (status, body) = server
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/applications/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "GET application {id}: {body}");
    body
}

/// Polls the application until `condition` is true or `timeout` passes.
async fn wait_application(
    server: &common::Server,
    id: &str,
    timeout: Duration,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let body = application(server, id).await;
        if condition(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics(server: &common::Server) -> String {
    reqwest::get(format!("{}/metrics", server.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_endpoint_disabled_until_enabled() {
    let world = World::new().await;
    // The recheck is long, so only enabling can bring the kept deliveries back soon.
    let server = world
        .serve(&[
            ("HOOKLINE_RETRY__INTERVAL", "50ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "1ms"),
            ("HOOKLINE_RETRY__MAX_RETRIES", "1"),
            ("HOOKLINE_DELIVERY__DISABLED_RECHECK", "1h"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let app = server
        .create_application(&world.receiver, "order-created", "gone")
        .await;
    world
        .receiver
        .script("gone", Behaviour::AlwaysFail { status: 410 });

    let (status, _) = server
        .ingest("order-created", Some("gone-1"), &order_event("G1"))
        .await;
    assert_eq!(status, 202);
    let disabled = wait_application(&server, &app, Duration::from_secs(10), |body| {
        body["state"] == "disabled"
    })
    .await;
    assert_eq!(disabled["state"], "disabled", "{disabled}");
    let reason = disabled["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("410"), "reason: {disabled}");
    assert!(
        disabled["disabled_at"].as_str().is_some(),
        "disabled_at: {disabled}"
    );
    let log = server.log_text();
    assert!(log.contains("endpoint.disabled"), "log:\n{log}");
    let metrics = metrics(&server).await;
    assert!(
        metrics.contains("hookline_endpoints_disabled_total{cause=\"gone\"} 1"),
        "metrics:\n{metrics}"
    );

    for n in 2..=3 {
        let key = format!("gone-{n}");
        let (status, _) = server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        assert_eq!(status, 202);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        world.receiver.deliveries("gone").len(),
        1,
        "a disabled endpoint was sent more attempts"
    );
    let deliveries = server.deliveries(&app).await;
    assert_eq!(deliveries.len(), 3, "every later event is kept");
    assert!(
        deliveries.iter().all(|d| d["state"] == "pending"),
        "kept deliveries stay pending: {deliveries:?}"
    );
    let (_, dead) = server
        .request(reqwest::Method::GET, "/api/v1/dead-letters", None)
        .await;
    assert_eq!(
        dead.as_array().map(Vec::len),
        Some(0),
        "dead letters: {dead}"
    );

    world.receiver.script("gone", Behaviour::Succeed);
    let enabled_at = Instant::now();
    let (status, body) = server
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/applications/{app}/enable"),
            None,
        )
        .await;
    assert_eq!(status, 200, "enable: {body}");
    assert_eq!(body["state"], "active");
    assert_eq!(body["rescheduled_deliveries"], 3, "{body}");
    let delivered = server
        .wait_deliveries(&app, Duration::from_secs(5), |d| {
            d.len() == 3 && d.iter().all(|d| d["state"] == "delivered")
        })
        .await;
    assert!(
        delivered.iter().all(|d| d["state"] == "delivered"),
        "kept deliveries were not delivered after enabling: {delivered:?}"
    );
    assert!(
        enabled_at.elapsed() < Duration::from_secs(5),
        "kept deliveries took {:?} after enabling",
        enabled_at.elapsed()
    );
    let received = world.receiver.deliveries("gone");
    assert_eq!(received.len(), 4, "one 410 and three deliveries");
    assert!(received
        .iter()
        .all(|r| r.verification == Verification::Verified));
    let shown = application(&server, &app).await;
    assert_eq!(shown["state"], "active");
    assert!(shown.get("disabled_reason").is_none(), "{shown}");
}

/// Gets the endpoint disabled with a 410 and ingests `later` more events,
/// which are kept. Returns the application id.
async fn disable_with_kept_deliveries(
    world: &World,
    server: &common::Server,
    later: usize,
) -> String {
    server
        .create_product("order-created", "order-created-event")
        .await;
    let app = server
        .create_application(&world.receiver, "order-created", "gone")
        .await;
    world
        .receiver
        .script("gone", Behaviour::AlwaysFail { status: 410 });
    let (status, _) = server
        .ingest("order-created", Some("gone-0"), &order_event("G0"))
        .await;
    assert_eq!(status, 202);
    let disabled = wait_application(server, &app, Duration::from_secs(10), |body| {
        body["state"] == "disabled"
    })
    .await;
    assert_eq!(disabled["state"], "disabled", "{disabled}");

    for n in 1..=later {
        let key = format!("gone-{n}");
        let (status, _) = server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        assert_eq!(status, 202);
    }
    let kept = server
        .wait_deliveries(&app, Duration::from_secs(5), |d| d.len() == later + 1)
        .await;
    assert_eq!(kept.len(), later + 1, "every later event is kept: {kept:?}");
    // Give the dispatcher time to see and postpone the later tasks.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        world.receiver.deliveries("gone").len(),
        1,
        "a disabled endpoint was sent more attempts"
    );
    app
}

/// Enables the application, with the endpoint succeeding again, and waits
/// up to `within` for all `count` deliveries to be delivered.
async fn enable_and_wait(
    world: &World,
    server: &common::Server,
    app: &str,
    count: usize,
    within: Duration,
) {
    world.receiver.script("gone", Behaviour::Succeed);
    let enabled_at = Instant::now();
    let (status, body) = server
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/applications/{app}/enable"),
            None,
        )
        .await;
    assert_eq!(status, 200, "enable: {body}");
    let delivered = server
        .wait_deliveries(app, within, |d| {
            d.len() == count && d.iter().all(|d| d["state"] == "delivered")
        })
        .await;
    assert!(
        delivered.iter().all(|d| d["state"] == "delivered"),
        "kept deliveries were not delivered {:?} after enabling: {delivered:?}",
        enabled_at.elapsed()
    );
    assert!(
        enabled_at.elapsed() < within,
        "kept deliveries took {:?} after enabling",
        enabled_at.elapsed()
    );
}

/// With `delivery.disabled_recheck` at its default of 15 minutes, only
/// enabling can bring the kept deliveries back within seconds, with the
/// RabbitMQ queue as with the SQLite one.
async fn enable_resumes_kept_deliveries(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world.serve(&[]).await;
    let app = disable_with_kept_deliveries(&world, &server, 3).await;

    enable_and_wait(&world, &server, &app, 4, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = world.receiver.deliveries("gone");
    assert_eq!(received.len(), 5, "one 410 and four deliveries");
    assert!(received
        .iter()
        .all(|r| r.verification == Verification::Verified));
}

/// A short recheck brings the kept copies back after the enable delivered
/// them; the dispatcher must drop them instead of sending them again.
async fn kept_copies_not_resent_after_enable(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world
        .serve(&[("HOOKLINE_DELIVERY__DISABLED_RECHECK", "6s")])
        .await;
    let app = disable_with_kept_deliveries(&world, &server, 3).await;

    enable_and_wait(&world, &server, &app, 4, Duration::from_secs(3)).await;
    // Every kept copy has come due by now.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let received = world.receiver.deliveries("gone");
    let ids: HashSet<_> = received.iter().map(|r| r.webhook_id.clone()).collect();
    assert_eq!(ids.len(), 4, "four events reached the endpoint");
    assert_eq!(received.len(), 5, "one 410 and four deliveries, no copies");
}

both_backends!(enable_resumes_kept_deliveries);
both_backends!(kept_copies_not_resent_after_enable);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_errors_retry_on_schedule() {
    let world = World::new().await;
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
    for status in [400u16, 401, 403, 404, 409, 422, 429] {
        let name = format!("client-error-{status}");
        let app = server
            .create_application(&world.receiver, "order-created", &name)
            .await;
        world
            .receiver
            .script(&name, Behaviour::AlwaysFail { status });
        let key = format!("ce-{status}");
        server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        let deliveries = server
            .wait_deliveries(&app, Duration::from_secs(10), |d| {
                d.first().is_some_and(|d| d["state"] == "dead")
            })
            .await;
        assert_eq!(deliveries[0]["state"], "dead", "HTTP {status}");
        let attempts = deliveries[0]["attempts"].as_array().unwrap();
        assert_eq!(
            attempts.len(),
            3,
            "HTTP {status}: first attempt + 2 retries"
        );
        assert_eq!(application(&server, &app).await["state"], "active");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_failing_past_limit_is_disabled() {
    let world = World::new().await;
    let server = world
        .serve(&[
            ("HOOKLINE_RETRY__INTERVAL", "100ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "1ms"),
            ("HOOKLINE_RETRY__MAX_RETRIES", "100"),
            ("HOOKLINE_DELIVERY__DISABLE_AFTER", "1500ms"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let failing = server
        .create_application(&world.receiver, "order-created", "failing")
        .await;
    let flaky = server
        .create_application(&world.receiver, "order-created", "flaky")
        .await;
    world
        .receiver
        .script("failing", Behaviour::AlwaysFail { status: 503 });
    // Every webhook fails twice and then succeeds, so the streak keeps ending.
    world.receiver.script(
        "flaky",
        Behaviour::FailTimes {
            failures: 2,
            status: 500,
        },
    );

    let started = Instant::now();
    for n in 0..8 {
        let key = format!("fail-{n}");
        server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let disabled = wait_application(&server, &failing, Duration::from_secs(10), |body| {
        body["state"] == "disabled"
    })
    .await;
    assert_eq!(disabled["state"], "disabled", "{disabled}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "disabled before delivery.disable_after passed"
    );
    let reason = disabled["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("delivery.disable_after"), "{disabled}");
    assert_eq!(
        application(&server, &flaky).await["state"],
        "active",
        "an endpoint that recovers between failures stays enabled"
    );
    let deliveries = server.deliveries(&failing).await;
    assert!(
        deliveries.iter().all(|d| d["state"] == "pending"),
        "deliveries of the disabled endpoint are kept: {deliveries:?}"
    );
    let metrics = metrics(&server).await;
    assert!(
        metrics.contains("hookline_endpoints_disabled_total{cause=\"failing\"} 1"),
        "metrics:\n{metrics}"
    );
}

/// Milliseconds from each ingest request to the webhook's arrival at
/// `endpoint`, for `count` events sent one after another.
async fn delivery_latencies(
    server: &common::Server,
    receiver: &Receiver,
    endpoint: &str,
    prefix: &str,
    count: usize,
) -> Vec<u128> {
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        let key = format!("{prefix}-{n}");
        let sent = Instant::now();
        let (status, _) = server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        assert_eq!(status, 202);
        let arrived = receiver
            .wait_for_deliveries(
                |received| {
                    received
                        .iter()
                        .any(|r| r.idempotency_key.as_deref() == Some(&key))
                },
                Duration::from_secs(10),
            )
            .await;
        assert!(arrived, "{key} did not arrive within 10 s");
        let received = receiver.deliveries(endpoint);
        let record = received
            .iter()
            .find(|r| r.idempotency_key.as_deref() == Some(&key))
            .unwrap();
        latencies.push(record.received_instant.duration_since(sent).as_millis());
    }
    latencies.sort_unstable();
    latencies
}

/// Ingests `count` order events keyed `<prefix>-<n>` and checks each is
/// accepted.
async fn ingest_events(server: &common::Server, prefix: &str, count: usize) {
    for n in 0..count {
        let key = format!("{prefix}-{n}");
        let (status, _) = server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        assert_eq!(status, 202, "{key}");
    }
}

fn p99(sorted: &[u128]) -> u128 {
    let index = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
    sorted[index]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_endpoint_does_not_slow_others() {
    let world = World::new().await;
    let healthy = Receiver::start(&world.pki, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let server = world
        .serve(&[
            ("HOOKLINE_DELIVERY__TIMEOUT", "5s"),
            ("HOOKLINE_RETRY__INTERVAL", "100ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "1ms"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    // Both applications receive every event; the hanging one never responds
    // within the deadline.
    let hanging = server
        .create_application(&world.receiver, "order-created", "hang")
        .await;
    world
        .receiver
        .script("hang", Behaviour::Delay(Duration::from_secs(60)));
    server
        .create_application(&healthy, "order-created", "healthy")
        .await;

    let baseline = delivery_latencies(&server, &healthy, "healthy", "calm", 10).await;

    ingest_events(&server, "flood", 50).await;
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.total >= 32, Duration::from_secs(10))
            .await,
        "the hanging endpoint did not fill its concurrency cap"
    );
    let loaded = delivery_latencies(&server, &healthy, "healthy", "loaded", 30).await;
    let (calm_p99, loaded_p99) = (p99(&baseline), p99(&loaded));
    eprintln!("healthy endpoint p99: {calm_p99} ms alone, {loaded_p99} ms beside 50 hanging");
    assert!(
        loaded_p99 < 1000,
        "p99 latency {loaded_p99} ms beside a hanging endpoint (alone: {calm_p99} ms); all: {loaded:?}"
    );

    let deliveries = server
        .wait_deliveries(&hanging, Duration::from_secs(15), |d| {
            d.iter()
                .any(|d| d["attempts"].as_array().is_some_and(|a| a.len() >= 2))
        })
        .await;
    let attempts: Vec<Value> = deliveries
        .iter()
        .flat_map(|d| d["attempts"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        deliveries
            .iter()
            .any(|d| d["attempts"].as_array().is_some_and(|a| a.len() >= 2)),
        "timed-out attempts were not retried"
    );
    assert!(!attempts.is_empty());
    for attempt in &attempts {
        assert_eq!(attempt["error_class"], "timeout", "{attempt}");
        let duration = attempt["duration_ms"].as_u64().unwrap();
        assert!(
            (5000..8000).contains(&duration),
            "attempt took {duration} ms with a 5 s deadline"
        );
    }
}

/// An endpoint that stalls long enough to be marked congested gets the
/// deliveries postponed meanwhile as soon as it responds again, not at their
/// places of the congestion schedule, which lie up to 28 s ahead here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_endpoint_gets_postponed_deliveries_at_once() {
    let world = World::new().await;
    let server = world
        .serve(&[
            ("HOOKLINE_DELIVERY__TIMEOUT", "2s"),
            ("HOOKLINE_DELIVERY__PER_ENDPOINT_CONCURRENCY", "2"),
            ("HOOKLINE_RETRY__INTERVAL", "100ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "1ms"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "stall")
        .await;
    world.receiver.script("stall", Behaviour::Hang);

    // Two attempts hang in the endpoint's two slots, and the other tasks are
    // postponed one second apart (timeout / per-endpoint concurrency).
    const EVENTS: usize = 30;
    ingest_events(&server, "stall", EVENTS).await;
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.total >= 2, Duration::from_secs(10))
            .await,
        "the endpoint's slots did not fill"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.receiver.script("stall", Behaviour::Succeed);
    let responding = Instant::now();

    let delivered = |received: &[hookline_receiver::ReceivedWebhook]| {
        received
            .iter()
            .filter(|webhook| webhook.responded_status == 204)
            .map(|webhook| webhook.webhook_id.as_str())
            .collect::<HashSet<_>>()
            .len()
    };
    let all = world
        .receiver
        .wait_for_deliveries(
            |received| delivered(received) == EVENTS,
            Duration::from_secs(40),
        )
        .await;
    let took = responding.elapsed();
    let count = delivered(&world.receiver.deliveries("stall"));
    assert!(all, "{count} of {EVENTS} delivered within 40 s");
    assert!(
        took < Duration::from_secs(10),
        "all {EVENTS} arrived {took:?} after the endpoint responded again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_token_ingests_and_nothing_else() {
    let world = World::new().await;
    let token_file = world.dir.path().join("ingest-token");
    std::fs::write(&token_file, "ingest-only-token\n").unwrap();
    let server = world
        .serve(&[(
            "HOOKLINE_API__INGEST_TOKEN_FILE",
            token_file.to_str().unwrap(),
        )])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let client = reqwest::Client::new();
    let ingest = |token: &'static str, key: &'static str| {
        client
            .post(format!(
                "{}/api/v1/products/order-created/events",
                server.api
            ))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(order_event(key))
            .send()
    };
    assert_eq!(
        ingest("ingest-only-token", "tok-1").await.unwrap().status(),
        202
    );
    assert_eq!(
        ingest(TOKEN, "tok-2").await.unwrap().status(),
        202,
        "the admin token still ingests"
    );
    assert_eq!(ingest("wrong-token", "tok-3").await.unwrap().status(), 401);

    let forbidden: [(reqwest::Method, &str, Option<Value>); 5] = [
        (reqwest::Method::GET, "/api/v1/applications", None),
        (reqwest::Method::GET, "/api/v1/products/order-created", None),
        (reqwest::Method::GET, "/api/v1/dead-letters", None),
        (
            reqwest::Method::POST,
            "/api/v1/products",
            Some(json!({"name": "sneaky", "content_type": "application/json"})),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/applications/app_0000/enable",
            None,
        ),
    ];
    for (method, path, body) in forbidden {
        let mut request = client
            .request(method.clone(), format!("{}{path}", server.api))
            .bearer_auth("ingest-only-token");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            403,
            "{method} {path} with the ingest token"
        );
        let (status, _) = server.request(method.clone(), path, None).await;
        assert_ne!(status, 401, "{method} {path} with the admin token");
        assert_ne!(status, 403, "{method} {path} with the admin token");
    }
    let (_, products) = server
        .request(reqwest::Method::GET, "/api/v1/products", None)
        .await;
    assert_eq!(products.as_array().map(Vec::len), Some(1), "{products}");
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["config", "check"])
        .env_clear()
        .env("HOOKLINE_API__INGEST_TOKEN", "ingest-only-token")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{shown}");
    assert!(!shown.contains("ingest-only-token"), "{shown}");
    assert!(shown.contains("ingest_token = \"<redacted>\""), "{shown}");
}
