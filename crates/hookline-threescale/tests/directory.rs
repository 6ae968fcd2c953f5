//! The 3scale directory against a fake Admin Portal on 127.0.0.1 that
//! serves `fixtures/threescale/service-42` (three pages), with a SQLite
//! store for the application rows.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hookline_core::directory::Directory;
use hookline_core::store::Store;
use hookline_core::{ApplicationState, ContentType, Product, SigningSecret};
use hookline_sqlite::SqliteBackend;
use hookline_threescale::{application_id, ThreescaleDirectory, ThreescaleSettings};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "3scale-token";
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/threescale/service-42"
);
const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const HANGING: u8 = 2;

type Params = Query<HashMap<String, String>>;

async fn start_fake() -> (String, Arc<AtomicU8>) {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let router = Router::new()
        .route("/admin/api/applications.json", get(applications))
        .route(
            "/admin/api/services/{service}/application_plans.json",
            get(plans),
        )
        .with_state(mode.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}"), mode)
}

async fn refuse(mode: &AtomicU8, params: &HashMap<String, String>) -> Option<Response> {
    match mode.load(Ordering::SeqCst) {
        FAILING => return Some(StatusCode::SERVICE_UNAVAILABLE.into_response()),
        HANGING => tokio::time::sleep(Duration::from_secs(30)).await,
        _ => {}
    }
    (params.get("access_token").map(String::as_str) != Some(TOKEN))
        .then(|| StatusCode::UNAUTHORIZED.into_response())
}

fn fixture(name: &str) -> Response {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
    let body = text.replace("RECEIVER_URL", "https://hooks.example");
    ([("content-type", "application/json")], body).into_response()
}

async fn applications(State(mode): State<Arc<AtomicU8>>, Query(params): Params) -> Response {
    if let Some(refused) = refuse(&mode, &params).await {
        return refused;
    }
    let page = params.get("page").cloned().unwrap_or_else(|| "1".into());
    fixture(&format!("applications.page{page}.json"))
}

async fn plans(
    State(mode): State<Arc<AtomicU8>>,
    Path(_service): Path<u64>,
    Query(params): Params,
) -> Response {
    if let Some(refused) = refuse(&mode, &params).await {
        return refused;
    }
    fixture("application_plans.json")
}

struct Setup {
    directory: ThreescaleDirectory,
    store: Arc<dyn Store>,
    mode: Arc<AtomicU8>,
    _backend: SqliteBackend,
    _dir: tempfile::TempDir,
}

async fn setup(token: &str) -> Setup {
    let (admin_url, mode) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path()).await.unwrap();
    let store: Arc<dyn Store> = backend.store();
    let product = Product {
        name: "order-created".into(),
        topic: "order-created-event".into(),
        content_type: ContentType::Json,
        schema: None,
        validate: false,
        created_at: time::OffsetDateTime::now_utc(),
    };
    store.create_product(&product).await.unwrap();

    let services = [("order-created".to_owned(), 42)].into();
    let mut settings = ThreescaleSettings::new(admin_url.parse().unwrap(), token.into(), services);
    settings.cache_ttl = Duration::from_millis(200);
    settings.request_timeout = Duration::from_millis(200);
    settings.plans.insert("basic".into(), "free".into());
    settings.plans.insert("unlimited".into(), "paid".into());
    let directory = ThreescaleDirectory::new(settings, store.clone()).unwrap();
    Setup {
        directory,
        store,
        mode,
        _backend: backend,
        _dir: dir,
    }
}

#[tokio::test]
async fn subscribers_are_live_applications_of_all_pages() {
    let setup = setup(TOKEN).await;
    let subscribers = setup.directory.subscribers("order-created").await.unwrap();
    let expected = [application_id(42, 7101), application_id(42, 7105)];
    assert_eq!(subscribers.as_ref(), expected.as_slice());
}

#[tokio::test]
async fn endpoint_signs_with_user_key_and_maps_plan() {
    let setup = setup(TOKEN).await;
    let endpoint = setup
        .directory
        .endpoint(&application_id(42, 7105))
        .await
        .unwrap()
        .expect("the live application on page 3");
    assert_eq!(endpoint.url, "https://hooks.example/hooks/page3");
    assert_eq!(endpoint.plan, "paid");
    assert!(endpoint.active);
    let key = SigningSecret::from_raw_key(b"5f4dcc3b5aa765d61d8327deb882cf99");
    assert_eq!(endpoint.secrets, vec![key]);

    let free = setup.directory.endpoint(&application_id(42, 7101)).await;
    let free = free.unwrap().unwrap();
    assert_eq!(free.plan, "free");
    assert_eq!(
        free.limit.map(|limit| limit.limit),
        Some(100),
        "the seeded free plan"
    );
}

#[tokio::test]
async fn suspended_and_incomplete_applications_are_excluded() {
    let setup = setup(TOKEN).await;
    let suspended = setup.directory.endpoint(&application_id(42, 7102)).await;
    assert!(!suspended.unwrap().expect("known but suspended").active);
    let pending = setup.directory.endpoint(&application_id(42, 7103)).await;
    assert!(!pending.unwrap().expect("known but pending").active);
    for missing in [7104, 7106, 9999] {
        let endpoint = setup.directory.endpoint(&application_id(42, missing)).await;
        assert!(endpoint.unwrap().is_none(), "application {missing}");
    }
    let other_service = setup.directory.endpoint(&application_id(43, 7101)).await;
    assert!(other_service.unwrap().is_none());
}

#[tokio::test]
async fn applications_are_written_to_the_store() {
    let setup = setup(TOKEN).await;
    setup.directory.subscribers("order-created").await.unwrap();
    let live = setup.store.application(&application_id(42, 7105)).await;
    let live = live.unwrap().expect("row of the live application");
    assert_eq!(live.product, "order-created");
    assert_eq!(live.state, ApplicationState::Active);
    assert_eq!(live.name, "Hooli warehouse");
    let suspended = setup.store.application(&application_id(42, 7102)).await;
    assert_eq!(
        suspended.unwrap().unwrap().state,
        ApplicationState::Disabled
    );
    let rows = setup
        .store
        .applications(Some("order-created"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "7101, 7102, 7103 and 7105");
}

#[tokio::test]
async fn outage_serves_last_good_list() {
    let setup = setup(TOKEN).await;
    let before = setup.directory.subscribers("order-created").await.unwrap();
    for mode in [FAILING, HANGING] {
        setup.mode.store(mode, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let during = setup.directory.subscribers("order-created").await.unwrap();
        assert_eq!(during, before, "mode {mode}");
        let endpoint = setup.directory.endpoint(&application_id(42, 7105)).await;
        assert!(endpoint.unwrap().is_some(), "mode {mode}");
    }
}

#[tokio::test]
async fn outage_without_list_is_an_error() {
    let setup = setup(TOKEN).await;
    setup.mode.store(FAILING, Ordering::SeqCst);
    let error = setup
        .directory
        .subscribers("order-created")
        .await
        .unwrap_err();
    assert!(error.message.contains("HTTP 503"), "{}", error.message);
}

#[tokio::test]
async fn wrong_token_is_an_error() {
    let setup = setup("not-the-token").await;
    let error = setup
        .directory
        .subscribers("order-created")
        .await
        .unwrap_err();
    assert!(error.message.contains("HTTP 401"), "{}", error.message);
    assert!(
        !error.message.contains("not-the-token"),
        "the token is not shown"
    );
}

#[tokio::test]
async fn unmapped_product_has_no_subscribers() {
    let setup = setup(TOKEN).await;
    let subscribers = setup.directory.subscribers("order-shipped").await.unwrap();
    assert!(subscribers.is_empty());
}
