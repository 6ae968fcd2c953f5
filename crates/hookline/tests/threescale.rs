//! End to end through `hookline serve` with `directory.kind = "threescale"`:
//! a fake 3scale Admin Portal on 127.0.0.1 serves the fixtures in
//! `fixtures/threescale/service-42` (three pages), and can fail with 500s
//! or stop responding to simulate an outage. 3scale itself cannot run in
//! these tests, so the fake serves the JSON shapes of 3scale's documented
//! Account Management API.

mod common;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use common::{order_event, Backend, Server, World};
use hookline_core::signing::SigningSecret;
use hookline_receiver::Verification;
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

const ACCESS_TOKEN: &str = "3scale-test-token";
const SERVICE_TOKEN: &str = "3scale-service-token";
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/threescale/service-42"
);

/// Response modes of the fake.
const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const HANGING: u8 = 2;

struct Fake {
    receiver_url: String,
    mode: AtomicU8,
    failures: AtomicU64,
    application_pages: AtomicU64,
    limit_reads: AtomicU64,
    /// Units of `usage[webhook]` reported through authrep, by `user_key`.
    reported: Mutex<HashMap<String, u64>>,
}

type Params = Query<HashMap<String, String>>;

/// Starts the fake on a free port and returns its base URL and state.
async fn start_fake(receiver_url: String) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        receiver_url,
        mode: AtomicU8::new(HEALTHY),
        failures: AtomicU64::new(0),
        application_pages: AtomicU64::new(0),
        limit_reads: AtomicU64::new(0),
        reported: Mutex::new(HashMap::new()),
    });
    let router = Router::new()
        .route("/admin/api/applications.json", get(applications))
        .route(
            "/admin/api/services/{service}/application_plans.json",
            get(plans),
        )
        .route("/admin/api/services/{service}/metrics.json", get(metrics))
        .route(
            "/admin/api/application_plans/{plan}/limits.json",
            get(limits),
        )
        .route("/transactions/authrep.xml", get(authrep))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}"), fake)
}

/// Applies the outage mode and the token check of both endpoints.
async fn gate(fake: &Fake, params: &HashMap<String, String>) -> Option<Response> {
    match fake.mode.load(Ordering::SeqCst) {
        FAILING => {
            fake.failures.fetch_add(1, Ordering::SeqCst);
            return Some((StatusCode::INTERNAL_SERVER_ERROR, "outage").into_response());
        }
        HANGING => {
            fake.failures.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        _ => {}
    }
    if params.get("access_token").map(String::as_str) != Some(ACCESS_TOKEN) {
        return Some((StatusCode::UNAUTHORIZED, r#"{"error":"Access denied"}"#).into_response());
    }
    None
}

fn fixture(fake: &Fake, name: &str) -> Response {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
    let body = text.replace("RECEIVER_URL", &fake.receiver_url);
    ([("content-type", "application/json")], body).into_response()
}

async fn applications(State(fake): State<Arc<Fake>>, Query(params): Params) -> Response {
    if let Some(refused) = gate(&fake, &params).await {
        return refused;
    }
    if params.get("service_id").map(String::as_str) != Some("42") {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    fake.application_pages.fetch_add(1, Ordering::SeqCst);
    let page = params.get("page").map(String::as_str).unwrap_or("1");
    fixture(&fake, &format!("applications.page{page}.json"))
}

async fn plans(
    State(fake): State<Arc<Fake>>,
    Path(service): Path<u64>,
    Query(params): Params,
) -> Response {
    if let Some(refused) = gate(&fake, &params).await {
        return refused;
    }
    if service != 42 {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    fixture(&fake, "application_plans.json")
}

async fn metrics(
    State(fake): State<Arc<Fake>>,
    Path(service): Path<u64>,
    Query(params): Params,
) -> Response {
    if let Some(refused) = gate(&fake, &params).await {
        return refused;
    }
    if service != 42 {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    fixture(&fake, "metrics.json")
}

async fn limits(
    State(fake): State<Arc<Fake>>,
    Path(plan): Path<u64>,
    Query(params): Params,
) -> Response {
    if let Some(refused) = gate(&fake, &params).await {
        return refused;
    }
    if plan != 601 {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    fake.limit_reads.fetch_add(1, Ordering::SeqCst);
    fixture(&fake, "limits.601.json")
}

/// Serves the Service Management API's authrep: checks the service token
/// and service id, and adds the reported usage to the `user_key`'s total.
async fn authrep(State(fake): State<Arc<Fake>>, Query(params): Params) -> Response {
    if params.get("service_token").map(String::as_str) != Some(SERVICE_TOKEN) {
        let body = r#"<error code="access_denied">service_token is invalid</error>"#;
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    if params.get("service_id").map(String::as_str) != Some("42") {
        let body = r#"<error code="service_id_invalid">service id is invalid</error>"#;
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    let user_key = params.get("user_key").cloned().unwrap_or_default();
    let units: u64 = match params.get("usage[webhook]").map(|value| value.parse()) {
        Some(Ok(units)) => units,
        _ => return (StatusCode::UNPROCESSABLE_ENTITY, "usage missing").into_response(),
    };
    *fake.reported.lock().unwrap().entry(user_key).or_default() += units;
    let body = "<status><authorized>true</authorized><plan>Basic</plan></status>";
    ([("content-type", "application/vnd.3scale-v2.0+xml")], body).into_response()
}

/// Writes the directory configuration and starts `hookline serve` with it.
async fn serve_with_threescale(world: &World, admin_url: &str) -> Server {
    let plans = r#"plans = { "basic" = "free", "unlimited" = "paid" }"#;
    serve_with_directory(world, admin_url, plans, &[]).await
}

/// Starts `hookline serve` with the 3scale directory, the `directory.*`
/// TOML lines `directory` (at least `plans`) and the `extra` variables.
async fn serve_with_directory(
    world: &World,
    admin_url: &str,
    directory: &str,
    extra: &[(&str, &str)],
) -> Server {
    let path = world.dir.path().join("threescale.toml");
    let config = format!(
        r#"[directory]
kind = "threescale"
admin_url = "{admin_url}"
access_token = "{ACCESS_TOKEN}"
services = {{ "order-created" = 42 }}
cache_ttl = "300ms"
stale_for = "1h"
request_timeout = "300ms"
{directory}
"#
    );
    std::fs::write(&path, config).unwrap();
    let mut env = vec![("HOOKLINE_CONFIG", path.to_str().unwrap())];
    env.extend_from_slice(extra);
    world.serve(&env).await
}

const ACME_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const PAGE3_KEY: &str = "5f4dcc3b5aa765d61d8327deb882cf99";

/// Registers the Standard Webhooks key of each live application (its
/// `user_key`'s bytes) with the receiver.
fn register_keys(world: &World) {
    let keys = [
        ("acme", ACME_KEY),
        ("page3", PAGE3_KEY),
        ("suspended", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        ("pending", "11223344556677889900aabbccddeeff"),
    ];
    for (endpoint, user_key) in keys {
        let secret = SigningSecret::from_raw_key(user_key.as_bytes());
        world.receiver.set_secret(endpoint, secret);
    }
}

async fn ingest_one(server: &Server, key: &str) {
    let (status, body) = server
        .ingest("order-created", Some(key), &order_event(key))
        .await;
    assert_eq!(status, 202, "ingest {key}: {body}");
    assert_eq!(
        body["deliveries"], 2,
        "two live applications with a URL and a key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_applications_of_every_page_receive_webhooks() {
    let world = World::new().await;
    let (admin_url, fake) = start_fake(world.receiver.base_url()).await;
    let server = serve_with_threescale(&world, &admin_url).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    register_keys(&world);

    ingest_one(&server, "order-1").await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 2, Duration::from_secs(15))
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());
    assert!(
        fake.application_pages.load(Ordering::SeqCst) >= 3,
        "all three pages read"
    );

    let page3 = world.receiver.deliveries("page3");
    assert_eq!(
        page3.len(),
        1,
        "the application on page 3 of 3 receives the event"
    );
    assert_eq!(page3[0].verification, Verification::Verified);
    assert_eq!(world.receiver.deliveries("acme").len(), 1);
    for silent in ["suspended", "pending", "no-key"] {
        assert!(
            world.receiver.deliveries(silent).is_empty(),
            "{silent} gets nothing"
        );
    }

    let deliveries = server
        .wait_deliveries("app_3s42_7105", Duration::from_secs(5), |list| {
            list.first().is_some_and(|d| d["state"] == "delivered")
        })
        .await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["attempts"].as_array().unwrap().len(), 1);
    assert!(
        server.deliveries("app_3s42_7102").await.is_empty(),
        "suspended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_keeps_deliveries_flowing_from_cache() {
    let world = World::new().await;
    let (admin_url, fake) = start_fake(world.receiver.base_url()).await;
    let server = serve_with_threescale(&world, &admin_url).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    register_keys(&world);
    ingest_one(&server, "before-outage").await;

    // Past the 300 ms TTL every lookup tries 3scale again and fails.
    fake.mode.store(FAILING, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    ingest_one(&server, "during-500s").await;

    fake.mode.store(HANGING, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    ingest_one(&server, "during-timeouts").await;

    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 6, Duration::from_secs(20))
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());
    assert_eq!(world.receiver.deliveries("page3").len(), 3);
    assert_eq!(world.receiver.deliveries("acme").len(), 3);
    assert!(
        fake.failures.load(Ordering::SeqCst) >= 2,
        "3scale was asked during the outage"
    );
    assert!(
        server
            .log_text()
            .contains("Reading applications from 3scale failed"),
        "the outage is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_without_cached_list_rejects_for_retry() {
    let world = World::new().await;
    let (admin_url, fake) = start_fake(world.receiver.base_url()).await;
    fake.mode.store(FAILING, Ordering::SeqCst);
    let server = serve_with_threescale(&world, &admin_url).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    register_keys(&world);

    let (status, body) = server
        .ingest("order-created", Some("first"), &order_event("first"))
        .await;
    assert_eq!(status, 503, "the producer retries: {body}");

    fake.mode.store(HEALTHY, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    ingest_one(&server, "first").await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 2, Duration::from_secs(15))
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());
}

/// Length of a plan's window in the limit test, through
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_plan_gets_threescale_limit() {
    let world = World::new().await;
    let (admin_url, fake) = start_fake(world.receiver.base_url()).await;
    // `basic` (plan 601) maps to no Hookline plan, so its limits in 3scale
    // apply: 3 webhooks per hour, here per 10 s window.
    let window = ("HOOKLINE_LIMITS__PERIOD_OVERRIDE", "10s");
    let plans = r#"plans = { "unlimited" = "paid" }"#;
    let server = serve_with_directory(&world, &admin_url, plans, &[window]).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    register_keys(&world);

    let end = window_end_with_room(Duration::from_secs(7)).await;
    for n in 0..5 {
        ingest_one(&server, &format!("limited-{n}")).await;
    }
    let until_end = Duration::try_from(end - OffsetDateTime::now_utc()).unwrap_or_default();
    tokio::time::sleep(until_end).await;
    let within = |endpoint: &str| {
        world
            .receiver
            .deliveries(endpoint)
            .iter()
            .filter(|r| r.received_at < end)
            .count()
    };
    assert_eq!(within("acme"), 3, "plan basic allows 3 per window");
    assert_eq!(within("page3"), 5, "plan unlimited maps to paid");
    assert!(
        fake.limit_reads.load(Ordering::SeqCst) >= 1,
        "the limits of plan 601 were read"
    );

    let arrived = world
        .receiver
        .wait_for(
            |stats| stats.verified >= 10,
            WINDOW + Duration::from_secs(5),
        )
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());
    let acme = world.receiver.deliveries("acme");
    assert_eq!(acme.len(), 5, "each event arrives once");
    let late = acme.iter().filter(|r| r.received_at >= end).count();
    assert_eq!(late, 2, "the 2 over the limit arrive after the window");
    let deliveries = server
        .wait_deliveries("app_3s42_7101", Duration::from_secs(5), |list| {
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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_notifications_are_reported() {
    let world = World::new().await;
    let (admin_url, fake) = start_fake(world.receiver.base_url()).await;
    let directory = format!(
        r#"plans = {{ "basic" = "free", "unlimited" = "paid" }}
report_url = "{admin_url}"
service_tokens = {{ "order-created" = "{SERVICE_TOKEN}" }}"#
    );
    let server = serve_with_directory(&world, &admin_url, &directory, &[]).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    register_keys(&world);

    for n in 0..3 {
        ingest_one(&server, &format!("reported-{n}")).await;
    }
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 6, Duration::from_secs(15))
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());

    let reported = |user_key: &str| {
        let totals = fake.reported.lock().unwrap();
        totals.get(user_key).copied().unwrap_or(0)
    };
    for _ in 0..50 {
        if reported(ACME_KEY) + reported(PAGE3_KEY) >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reported(ACME_KEY), 3, "each delivery to acme is reported");
    assert_eq!(reported(PAGE3_KEY), 3, "each delivery to page3 is reported");
    let totals = fake.reported.lock().unwrap().clone();
    assert_eq!(totals.len(), 2, "only delivered applications: {totals:?}");
}

/// Redis key prefix whose keys are deleted on drop, so also when the test
/// fails.
struct RedisKeys(String);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        delete_redis_keys(&self.0);
    }
}

/// Deletes the Redis keys that start with `prefix`, with `redis-cli`, on
/// the server that the test servers use (`HOOKLINE_TEST_REDIS_URL`). Does
/// nothing when `redis-cli` cannot run.
fn delete_redis_keys(prefix: &str) {
    let url = std::env::var("HOOKLINE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let Ok(listing) = Command::new("redis-cli")
        .args(["-u", &url, "--scan", "--pattern"])
        .arg(format!("{prefix}*"))
        .output()
    else {
        return;
    };
    let listing = String::from_utf8_lossy(&listing.stdout);
    let keys: Vec<&str> = listing.lines().filter(|key| !key.is_empty()).collect();
    if keys.is_empty() {
        return;
    }
    // Best effort, because a panic here would abort a failing test.
    let _ = Command::new("redis-cli")
        .args(["-u", &url, "DEL"])
        .args(&keys)
        .output();
}

/// Two distributed replicas share the list through Redis: the second one
/// starts while 3scale fails, sends no request to 3scale within the TTL,
/// and still delivers to every live application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_started_during_outage_uses_redis_list() {
    let world = World::with_backend(Backend::Distributed).await;
    let (admin_url, fake) = start_fake(world.receiver.base_url()).await;
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let prefix = format!("hltest-3s-e2e-{nanos:x}:");
    let _cleanup = RedisKeys(prefix.clone());
    let environment = [
        ("HOOKLINE_REDIS__KEY_PREFIX", prefix.as_str()),
        ("HOOKLINE_DIRECTORY__CACHE_TTL", "60s"),
        ("HOOKLINE_DIRECTORY__STALE_FOR", "5m"),
    ];
    let plans = r#"plans = { "basic" = "free", "unlimited" = "paid" }"#;
    let first = serve_with_directory(&world, &admin_url, plans, &environment).await;
    first
        .create_product("order-created", "order-created-event")
        .await;
    register_keys(&world);
    ingest_one(&first, "from-first").await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 2, Duration::from_secs(15))
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());
    let pages = fake.application_pages.load(Ordering::SeqCst);
    assert!(
        pages >= 3,
        "the first replica read all three pages: {pages}"
    );
    assert!(
        first.log_text().contains("shared through Redis"),
        "the Redis tier is on"
    );
    // A graceful stop records and acknowledges the deliveries, so the
    // second replica gets no redelivered copy.
    let stopped = first.terminate();
    assert!(
        stopped.success(),
        "the first replica stops cleanly: {stopped}"
    );

    fake.mode.store(FAILING, Ordering::SeqCst);
    let second = serve_with_directory(&world, &admin_url, plans, &environment).await;
    ingest_one(&second, "from-second").await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 4, Duration::from_secs(15))
        .await;
    assert!(arrived, "got {:?}", world.receiver.stats());
    assert_eq!(world.receiver.deliveries("acme").len(), 2);
    assert_eq!(world.receiver.deliveries("page3").len(), 2);
    assert_eq!(
        fake.failures.load(Ordering::SeqCst),
        0,
        "the second replica sent no request to 3scale; log:\n{}",
        second.log_text()
    );
    assert_eq!(fake.application_pages.load(Ordering::SeqCst), pages);
    second.kill();
}
