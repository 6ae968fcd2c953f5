//! Plans, per-application rate limits and usage analytics through real
//! processes.
//!
//! Every test sets `limits.period_override`, so a plan's window lasts
//! seconds instead of an hour. Windows are aligned to multiples of their
//! length since the Unix epoch, so a test waits for the start of a window
//! before it sends events, and can then tell which deliveries arrived
//! within that window and which after it.

mod common;

use common::{order_event, Backend, Server, World};
use hookline_core::signing::SigningSecret;
use hookline_receiver::{ReceivedWebhook, Receiver};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Length of every plan's window in these tests.
const WINDOW: Duration = Duration::from_secs(15);
const WINDOW_SETTING: (&str, &str) = ("HOOKLINE_LIMITS__PERIOD_OVERRIDE", "15s");

/// Returns the window of length `window` that contains `at`, as `[start, end)`.
fn window_of(at: OffsetDateTime, window: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let length = window.as_millis() as i128;
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    let start = millis - millis.rem_euclid(length);
    let start = OffsetDateTime::from_unix_timestamp_nanos(start * 1_000_000).unwrap();
    (start, start + window)
}

/// Waits, if needed, until a window of length `window` has at least
/// `needed` left, and returns that window.
async fn window_with_room(window: Duration, needed: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let (_, end) = window_of(OffsetDateTime::now_utc(), window);
    let left = end - OffsetDateTime::now_utc();
    if left < needed {
        let wait = Duration::try_from(left).unwrap_or_default() + Duration::from_millis(50);
        tokio::time::sleep(wait).await;
    }
    window_of(OffsetDateTime::now_utc(), window)
}

async fn create_plan(server: &Server, body: Value) {
    let (status, response) = server
        .request(Method::POST, "/api/v1/plans", Some(body))
        .await;
    assert_eq!(status, 201, "create plan: {response}");
}

/// Creates an application on `plan` for the receiver's `endpoint`.
async fn create_app_on_plan(
    server: &Server,
    receiver: &Receiver,
    endpoint: &str,
    plan: &str,
) -> String {
    let body = json!({"name": endpoint, "product": "order-created", "plan": plan,
        "webhook_url": receiver.endpoint_url(endpoint)});
    let (status, body) = server
        .request(Method::POST, "/api/v1/applications", Some(body))
        .await;
    assert_eq!(status, 201, "create application: {body}");
    let secret = SigningSecret::parse(body["secret"].as_str().unwrap()).unwrap();
    receiver.set_secret(endpoint, secret);
    body["id"].as_str().unwrap().to_owned()
}

/// Posts `count` events with keys `<prefix>-<n>`, eight at a time.
async fn ingest_all(server: &Arc<Server>, prefix: &str, count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let server = server.clone();
        let prefix = prefix.to_owned();
        tasks.spawn(async move {
            for n in (worker..count).step_by(8) {
                let key = format!("{prefix}-{n}");
                let (status, body) = server
                    .ingest("order-created", Some(&key), &order_event(&key))
                    .await;
                assert_eq!(status, 202, "ingest {key}: {body}");
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("ingest worker");
    }
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

/// Polls the usage report until `counter` reaches `expected`; returns the last total.
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

async fn over_limit_report(server: &Server) -> Vec<Value> {
    let (status, body) = server
        .request(Method::GET, "/api/v1/analytics/over-limit", None)
        .await;
    assert_eq!(status, 200, "over-limit report: {body}");
    body["applications"].as_array().unwrap().clone()
}

fn distinct_ids(received: &[ReceivedWebhook]) -> usize {
    received
        .iter()
        .map(|r| r.webhook_id.as_str())
        .collect::<HashSet<_>>()
        .len()
}

async fn start_with_product(world: &World) -> Arc<Server> {
    let server = world.serve(&[WINDOW_SETTING]).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    Arc::new(server)
}

async fn free_plan_defers_overflow_to_next_window(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = start_with_product(&world).await;
    let app = create_app_on_plan(&server, &world.receiver, "limited", "free").await;

    let (_, end) = window_with_room(WINDOW, Duration::from_secs(10)).await;
    ingest_all(&server, "defer", 150).await;
    tokio::time::sleep(Duration::try_from(end - OffsetDateTime::now_utc()).unwrap_or_default())
        .await;
    let within: Vec<_> = world
        .receiver
        .deliveries("limited")
        .into_iter()
        .filter(|r| r.received_at < end)
        .collect();
    assert_eq!(within.len(), 100, "the free plan allows 100 per window");

    let all_arrived = world
        .receiver
        .wait_for(
            |stats| stats.succeeded >= 150,
            WINDOW + Duration::from_secs(15),
        )
        .await;
    let received = world.receiver.deliveries("limited");
    assert!(all_arrived, "{} of 150 arrived", received.len());
    assert_eq!(received.len(), 150, "each event arrives once");
    assert_eq!(distinct_ids(&received), 150, "no event is lost");
    let late = received.iter().filter(|r| r.received_at >= end).count();
    assert_eq!(late, 50, "the 50 over the limit arrive after the window");

    let deliveries = server
        .wait_deliveries(&app, Duration::from_secs(10), |d| {
            d.len() == 150 && d.iter().all(|d| d["state"] == "delivered")
        })
        .await;
    assert!(deliveries.iter().all(|d| d["state"] == "delivered"));
    let attempts: Vec<usize> = deliveries
        .iter()
        .map(|d| d["attempts"].as_array().unwrap().len())
        .collect();
    assert!(
        attempts.iter().all(|&n| n == 1),
        "a deferral is not an attempt: {attempts:?}"
    );

    assert_eq!(wait_usage(&server, &app, "throttled", 50).await, 50);
    assert_eq!(wait_usage(&server, &app, "delivered", 150).await, 150);
    assert_eq!(usage_total(&server, &app, "failed_attempts").await, 0);
    let report = over_limit_report(&server).await;
    assert_eq!(report.len(), 1, "one application went over: {report:?}");
    assert_eq!(report[0]["application_id"], app.as_str());
    assert_eq!(report[0]["application_name"], "limited");
    assert_eq!(report[0]["over"], 50);
    let windows = report[0]["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0]["limit"], 100);
    assert_eq!(windows[0]["plan"], "free");
}

async fn dead_letter_plan_dead_letters_overflow(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = start_with_product(&world).await;
    create_plan(
        &server,
        json!({"name": "strict", "limit": 100, "over_limit": "dead_letter"}),
    )
    .await;
    let app = create_app_on_plan(&server, &world.receiver, "strict", "strict").await;

    let (_, end) = window_with_room(WINDOW, Duration::from_secs(10)).await;
    ingest_all(&server, "dead", 150).await;
    let deliveries = server
        .wait_deliveries(&app, Duration::from_secs(20), |d| {
            d.len() == 150 && d.iter().all(|d| d["state"] != "pending")
        })
        .await;
    let delivered = deliveries
        .iter()
        .filter(|d| d["state"] == "delivered")
        .count();
    assert_eq!(delivered, 100);
    let dead: Vec<_> = deliveries.iter().filter(|d| d["state"] == "dead").collect();
    assert_eq!(dead.len(), 50);
    assert!(
        OffsetDateTime::now_utc() < end,
        "the test outran its window"
    );

    let (status, letters) = server
        .request(Method::GET, "/api/v1/dead-letters?limit=500", None)
        .await;
    assert_eq!(status, 200);
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 50);
    assert!(
        letters
            .iter()
            .all(|letter| letter["reason"] == "rate_limited"),
        "every dead letter has the reason rate_limited"
    );
    let attempt = &dead[0]["attempts"][0];
    assert_eq!(attempt["error_class"], "rate_limited");

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(world.receiver.deliveries("strict").len(), 100);
    assert_eq!(wait_usage(&server, &app, "dead_lettered", 50).await, 50);
    assert_eq!(usage_total(&server, &app, "throttled").await, 50);
    let report = over_limit_report(&server).await;
    assert_eq!(report.len(), 1);
    assert_eq!(report[0]["over"], 50);
}

async fn paid_plan_is_never_deferred(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = start_with_product(&world).await;
    let app = create_app_on_plan(&server, &world.receiver, "paying", "paid").await;

    ingest_all(&server, "paid", 150).await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.succeeded >= 150, Duration::from_secs(20))
        .await;
    assert!(arrived, "all 150 events arrive");
    assert_eq!(wait_usage(&server, &app, "delivered", 150).await, 150);
    assert_eq!(usage_total(&server, &app, "throttled").await, 0);
    assert!(over_limit_report(&server).await.is_empty());
}

async fn plan_api_validates_and_moves_applications(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = start_with_product(&world).await;

    let (status, plans) = server.request(Method::GET, "/api/v1/plans", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["free", "paid"]);
    let free = &plans[0];
    assert_eq!(free["limit"], 100);
    assert_eq!(free["period"], "hour");
    assert_eq!(free["over_limit"], "defer");
    assert_eq!(plans[1]["limit"], Value::Null);

    let tiny = json!({"name": "tiny", "limit": 2, "over_limit": "dead_letter",
        "monthly_fee": 9.5, "currency": "EUR", "trial_days": 14});
    create_plan(&server, tiny.clone()).await;
    let (status, _) = server
        .request(Method::POST, "/api/v1/plans", Some(tiny))
        .await;
    assert_eq!(status, 409, "a plan name is unique");
    let (status, body) = server
        .request(
            Method::POST,
            "/api/v1/plans",
            Some(json!({"name": "bad", "period": "week"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "period");

    let update = json!({"limit": 2, "over_limit": "dead_letter", "monthly_fee": "12.50"});
    let (status, body) = server
        .request(Method::PUT, "/api/v1/plans/tiny", Some(update.clone()))
        .await;
    assert_eq!(status, 200, "update plan: {body}");
    assert_eq!(body["monthly_fee"], "12.5");
    assert_eq!(body["currency"], "USD", "PUT replaces every term");
    let (status, _) = server
        .request(Method::PUT, "/api/v1/plans/missing", Some(update))
        .await;
    assert_eq!(status, 404);

    let body = json!({"name": "x", "product": "order-created", "plan": "gold",
        "webhook_url": world.receiver.endpoint_url("x")});
    let (status, body) = server
        .request(Method::POST, "/api/v1/applications", Some(body))
        .await;
    assert_eq!(status, 422, "an unknown plan is rejected");
    assert_eq!(body["error"]["field"], "plan");

    let app = create_app_on_plan(&server, &world.receiver, "mover", "paid").await;
    let path = format!("/api/v1/applications/{app}");
    let (status, body) = server
        .request(Method::PATCH, &path, Some(json!({"plan": "gold"})))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "plan");
    let (status, body) = server
        .request(Method::PATCH, &path, Some(json!({"plan": "tiny"})))
        .await;
    assert_eq!(status, 200, "move application: {body}");
    assert_eq!(body["plan"], "tiny");

    let (_, end) = window_with_room(WINDOW, Duration::from_secs(8)).await;
    for n in 0..3 {
        let key = format!("move-{n}");
        let (status, _) = server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        assert_eq!(status, 202);
    }
    let deliveries = server
        .wait_deliveries(&app, Duration::from_secs(10), |d| {
            d.len() == 3 && d.iter().all(|d| d["state"] != "pending")
        })
        .await;
    let dead = deliveries.iter().filter(|d| d["state"] == "dead").count();
    assert_eq!(dead, 1, "the new plan's limit of 2 applies at once");
    assert!(
        OffsetDateTime::now_utc() < end,
        "the test outran its window"
    );
}

/// Three dispatcher processes share one free application's limit through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_dispatchers_never_exceed_the_limit() {
    const EVENTS: usize = 250;
    let window = Duration::from_secs(10);
    let setting = ("HOOKLINE_LIMITS__PERIOD_OVERRIDE", "10s");
    let world = World::with_backend(Backend::Distributed).await;
    let api = Arc::new(world.start("api", &[setting]).await);
    api.create_product("order-created", "order-created-event")
        .await;
    let app = create_app_on_plan(&api, &world.receiver, "shared", "free").await;
    let mut dispatchers = Vec::new();
    for _ in 0..3 {
        dispatchers.push(world.start("dispatcher", &[setting]).await);
    }

    window_with_room(window, Duration::from_secs(7)).await;
    ingest_all(&api, "shared", EVENTS).await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.succeeded >= EVENTS as u64, window * 4)
        .await;
    let received = world.receiver.deliveries("shared");
    assert!(arrived, "{} of {EVENTS} arrived", received.len());
    assert_eq!(distinct_ids(&received), EVENTS, "no event is lost");

    let mut per_window = std::collections::BTreeMap::new();
    for webhook in &received {
        *per_window
            .entry(window_of(webhook.received_at, window).0)
            .or_insert(0) += 1;
    }
    let counts: Vec<usize> = per_window.values().copied().collect();
    assert!(
        counts.iter().all(|&count| count <= 100),
        "no window gets more than the limit of 100: {counts:?}"
    );
    assert_eq!(counts[0], 100, "the first window is full: {counts:?}");

    // 150 are over in the first window; 100 of them go out in the second,
    // where the other 50 are over again.
    let throttled = wait_usage(&api, &app, "throttled", 200).await;
    assert_eq!(throttled, 200);
    let report = over_limit_report(&api).await;
    assert_eq!(report.len(), 1);
    assert_eq!(report[0]["over"], 200);
    let first = &report[0]["windows"][0];
    assert_eq!(
        first["over"],
        EVENTS - 100,
        "all events tried in the first window"
    );
    drop(dispatchers);
}

both_backends!(free_plan_defers_overflow_to_next_window);
both_backends!(dead_letter_plan_dead_letters_overflow);
both_backends!(paid_plan_is_never_deferred);
both_backends!(plan_api_validates_and_moves_applications);
