//! End to end through `hookline serve` with `directory.kind = "threescale"`:
//! a fake 3scale Admin Portal on 127.0.0.1 serves the fixtures in
//! `fixtures/threescale/service-42` (three pages), and can fail with 500s
//! or stop responding to simulate an outage.

mod common;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use common::{order_event, Server, World};
use hookline_core::signing::SigningSecret;
use hookline_receiver::Verification;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ACCESS_TOKEN: &str = "3scale-test-token";
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
}

type Params = Query<HashMap<String, String>>;

/// Starts the fake on a free port; returns its base URL and state.
async fn start_fake(receiver_url: String) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        receiver_url,
        mode: AtomicU8::new(HEALTHY),
        failures: AtomicU64::new(0),
        application_pages: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/admin/api/applications.json", get(applications))
        .route(
            "/admin/api/services/{service}/application_plans.json",
            get(plans),
        )
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

/// Writes the directory configuration and starts `hookline serve` with it.
async fn serve_with_threescale(world: &World, admin_url: &str) -> Server {
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
plans = {{ "basic" = "free", "unlimited" = "paid" }}
"#
    );
    std::fs::write(&path, config).unwrap();
    world
        .serve(&[("HOOKLINE_CONFIG", path.to_str().unwrap())])
        .await
}

/// Registers the Standard Webhooks key of each live application (its
/// `user_key`'s bytes) with the receiver.
fn register_keys(world: &World) {
    let keys = [
        ("acme", "a1b2c3d4e5f60718293a4b5c6d7e8f90"),
        ("page3", "5f4dcc3b5aa765d61d8327deb882cf99"),
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
