//! Tests of the Redis tier of the 3scale directory. They need the machine's
//! Redis at 127.0.0.1:6379 (or `HOOKLINE_TEST_REDIS_URL`). A fake Admin
//! Portal on 127.0.0.1 serves `fixtures/threescale/service-42` and counts
//! the requests it receives. Each test uses a key prefix of its own and
//! deletes its keys at the end. Keys left by a failed test expire within a
//! minute. Replicas are `ThreescaleDirectory` values, each with its own
//! in-process cache, over one shared SQLite store. It stands in for the
//! PostgreSQL store that real replicas share.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hookline_core::cipher::{SecretCipher, SecretKey};
use hookline_core::directory::Directory;
use hookline_core::store::Store;
use hookline_core::{ContentType, Product, SigningSecret};
use hookline_redis::{RedisClient, RedisSettings};
use hookline_sqlite::SqliteBackend;
use hookline_threescale::{application_id, ThreescaleDirectory, ThreescaleSettings};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "3scale-token";
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/threescale/service-42"
);
const HEALTHY: u8 = 0;
const FAILING: u8 = 1;

/// The `user_key` of every application in the fixtures.
const USER_KEYS: [&str; 5] = [
    "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "11223344556677889900aabbccddeeff",
    "99887766554433221100ffeeddccbbaa",
    "5f4dcc3b5aa765d61d8327deb882cf99",
];
const PAGE3_KEY: &str = "5f4dcc3b5aa765d61d8327deb882cf99";
const STALE_FOR: Duration = Duration::from_secs(60);

fn redis_url() -> String {
    std::env::var("HOOKLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

type Params = Query<HashMap<String, String>>;

struct Fake {
    mode: AtomicU8,
    /// Every request received, including failed ones.
    requests: AtomicU64,
}

impl Fake {
    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn start_fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        mode: AtomicU8::new(HEALTHY),
        requests: AtomicU64::new(0),
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

/// Counts the request and returns the error response for it, if any: 503
/// while the fake is failing, 401 without the expected access token.
fn refuse(fake: &Fake, params: &HashMap<String, String>) -> Option<Response> {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    if fake.mode.load(Ordering::SeqCst) == FAILING {
        return Some(StatusCode::SERVICE_UNAVAILABLE.into_response());
    }
    (params.get("access_token").map(String::as_str) != Some(TOKEN))
        .then(|| StatusCode::UNAUTHORIZED.into_response())
}

fn fixture(name: &str) -> Response {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
    let body = text.replace("RECEIVER_URL", "https://hooks.example");
    ([("content-type", "application/json")], body).into_response()
}

async fn applications(State(fake): State<Arc<Fake>>, Query(params): Params) -> Response {
    if let Some(rejection) = refuse(&fake, &params) {
        return rejection;
    }
    let page = params.get("page").cloned().unwrap_or_else(|| "1".into());
    fixture(&format!("applications.page{page}.json"))
}

async fn plans(
    State(fake): State<Arc<Fake>>,
    Path(_service): Path<u64>,
    Query(params): Params,
) -> Response {
    if let Some(rejection) = refuse(&fake, &params) {
        return rejection;
    }
    fixture("application_plans.json")
}

/// Per-test state: the fake 3scale, the state store, a Redis key prefix and
/// the cipher that replicas share.
struct Setup {
    admin_url: String,
    fake: Arc<Fake>,
    store: Arc<dyn Store>,
    prefix: String,
    cipher: SecretCipher,
    _backend: SqliteBackend,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let (admin_url, fake) = start_fake().await;
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
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    Setup {
        admin_url,
        fake,
        store,
        prefix: format!("hltest-3s-{nanos:x}-{}:", std::process::id()),
        cipher: cipher(),
        _backend: backend,
        _dir: dir,
    }
}

fn cipher() -> SecretCipher {
    SecretCipher::new(vec![SecretKey::generate("k1").unwrap()]).unwrap()
}

fn redis_client(url: &str, prefix: &str) -> RedisClient {
    RedisClient::connect_lazy(RedisSettings {
        url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        command_timeout: Duration::from_millis(500),
    })
    .unwrap()
}

impl Setup {
    /// Builds a replica: a new directory with an empty in-process cache.
    fn replica(&self, ttl: Duration) -> ThreescaleDirectory {
        self.replica_with(ttl, &redis_url(), self.cipher.clone())
    }

    fn replica_with(&self, ttl: Duration, url: &str, cipher: SecretCipher) -> ThreescaleDirectory {
        let services = [("order-created".to_owned(), 42)].into();
        let admin_url = self.admin_url.parse().unwrap();
        let mut settings = ThreescaleSettings::new(admin_url, TOKEN.into(), services);
        settings.cache_ttl = ttl;
        settings.stale_for = STALE_FOR;
        settings.request_timeout = Duration::from_millis(500);
        settings.plans.insert("basic".into(), "free".into());
        settings.plans.insert("unlimited".into(), "paid".into());
        ThreescaleDirectory::new(settings, self.store.clone())
            .unwrap()
            .with_redis(redis_client(url, &self.prefix), cipher)
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(redis_url()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// Returns the names of this test's keys in Redis, sorted.
    async fn keys(&self) -> Vec<String> {
        let mut connection = self.connection().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut connection)
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// Returns the name of the list key of service 42, asserting that it is
    /// the only list key.
    async fn list_key(&self) -> String {
        let keys = self.keys().await;
        let lists: Vec<&String> = keys
            .iter()
            .filter(|key| !key.ends_with(":refresh"))
            .collect();
        assert_eq!(lists.len(), 1, "expected exactly one list key: {keys:?}");
        assert!(lists[0].ends_with(":42"), "{}", lists[0]);
        lists[0].clone()
    }

    async fn clean(self) {
        let keys = self.keys().await;
        if keys.is_empty() {
            return;
        }
        let mut connection = self.connection().await;
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

fn expected_subscribers() -> [hookline_core::ApplicationId; 2] {
    [application_id(42, 7101), application_id(42, 7105)]
}

async fn assert_serves_fixtures(directory: &ThreescaleDirectory, replica_name: &str) {
    let subscribers = directory.subscribers("order-created").await;
    let subscribers = subscribers.unwrap_or_else(|error| panic!("{replica_name}: {error}"));
    assert_eq!(
        subscribers.as_ref(),
        expected_subscribers().as_slice(),
        "{replica_name}"
    );
    let endpoint = directory.endpoint(&application_id(42, 7105)).await.unwrap();
    let endpoint = endpoint.unwrap_or_else(|| panic!("{replica_name}: application 7105"));
    assert_eq!(
        endpoint.url, "https://hooks.example/hooks/page3",
        "{replica_name}"
    );
    assert_eq!(endpoint.plan, "paid", "{replica_name}");
    let key = SigningSecret::from_raw_key(PAGE3_KEY.as_bytes());
    assert_eq!(endpoint.secrets, vec![key], "{replica_name}");
}

#[tokio::test]
async fn replica_starting_during_outage_uses_redis_list() {
    let setup = setup().await;
    let replica_a = setup.replica(Duration::from_secs(30));
    assert_serves_fixtures(&replica_a, "replica A").await;
    let after_a = setup.fake.requests();
    assert!(after_a >= 4, "A read plans and three pages: {after_a}");

    setup.fake.mode.store(FAILING, Ordering::SeqCst);
    let replica_b = setup.replica(Duration::from_secs(30));
    assert_serves_fixtures(&replica_b, "replica B").await;
    assert_serves_fixtures(&replica_b, "replica B again").await;
    assert_eq!(
        setup.fake.requests(),
        after_a,
        "B sent no request to 3scale within the TTL"
    );
    setup.clean().await;
}

#[tokio::test]
async fn redis_value_is_encrypted() {
    let setup = setup().await;
    let replica = setup.replica(Duration::from_secs(30));
    assert_serves_fixtures(&replica, "replica").await;

    let key = setup.list_key().await;
    let mut connection = setup.connection().await;
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(value.starts_with("enc1:k1:"), "{value}");
    for user_key in USER_KEYS {
        assert!(
            !value.contains(user_key),
            "user_key {user_key} in clear text"
        );
    }
    assert!(
        !value.contains("hooks.example"),
        "webhook URLs are encrypted"
    );
    let expiry_ms: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(expiry_ms > 0, "the list expires: {expiry_ms}");
    assert!(expiry_ms <= STALE_FOR.as_millis() as i64, "{expiry_ms}");
    setup.clean().await;
}

#[tokio::test]
async fn unreachable_redis_falls_back_to_threescale() {
    let setup = setup().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("redis://127.0.0.1:{port}");
    let replica = setup.replica_with(Duration::from_secs(30), &url, setup.cipher.clone());

    let started = Instant::now();
    assert_serves_fixtures(&replica, "replica without Redis").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(setup.fake.requests() >= 4, "the list came from 3scale");
    setup.clean().await;
}

#[tokio::test]
async fn outage_serves_list_older_than_ttl() {
    let setup = setup().await;
    let replica_a = setup.replica(Duration::from_millis(200));
    assert_serves_fixtures(&replica_a, "replica A").await;
    let after_a = setup.fake.requests();
    tokio::time::sleep(Duration::from_millis(300)).await;

    setup.fake.mode.store(FAILING, Ordering::SeqCst);
    let replica_b = setup.replica(Duration::from_millis(200));
    assert_serves_fixtures(&replica_b, "replica B").await;
    assert!(
        setup.fake.requests() > after_a,
        "B requested the list from 3scale because the list in Redis was past the TTL"
    );
    setup.clean().await;
}

#[tokio::test]
async fn list_encrypted_with_other_key_ignored() {
    let setup = setup().await;
    let replica_a = setup.replica(Duration::from_secs(30));
    assert_serves_fixtures(&replica_a, "replica A").await;

    setup.fake.mode.store(FAILING, Ordering::SeqCst);
    let other_key = setup.replica_with(Duration::from_secs(30), &redis_url(), cipher());
    let error = other_key.subscribers("order-created").await.unwrap_err();
    assert!(error.message.contains("HTTP 503"), "{}", error.message);

    setup.fake.mode.store(HEALTHY, Ordering::SeqCst);
    // A new replica, so no backoff from the failure delays the read.
    let other_key = setup.replica_with(Duration::from_secs(30), &redis_url(), cipher());
    assert_serves_fixtures(&other_key, "replica with another key").await;
    setup.clean().await;
}

#[tokio::test]
async fn expired_list_is_refreshed_once() {
    let setup = setup().await;
    let ttl = Duration::from_millis(300);
    assert_serves_fixtures(&setup.replica(ttl), "replica A").await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let before_b = setup.fake.requests();
    assert_serves_fixtures(&setup.replica(ttl), "replica B").await;
    let after_b = setup.fake.requests();
    assert!(after_b > before_b, "B refreshed the expired list");
    assert_serves_fixtures(&setup.replica(ttl), "replica C").await;
    assert_eq!(setup.fake.requests(), after_b, "C used B's list");
    setup.clean().await;
}

#[tokio::test]
async fn claimed_refresh_serves_older_list() {
    let setup = setup().await;
    let ttl = Duration::from_millis(200);
    assert_serves_fixtures(&setup.replica(ttl), "replica A").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Simulates another replica holding the refresh claim.
    let claim = format!("{}:refresh", setup.list_key().await);
    let mut connection = setup.connection().await;
    let _: () = redis::cmd("SET")
        .arg(&claim)
        .arg("1")
        .arg("PX")
        .arg(10_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    let before_b = setup.fake.requests();
    assert_serves_fixtures(&setup.replica(ttl), "replica B").await;
    assert_eq!(
        setup.fake.requests(),
        before_b,
        "B left the refresh to the claim holder"
    );
    setup.clean().await;
}

async fn limit_of(directory: &ThreescaleDirectory, application: u64) -> Option<u64> {
    let endpoint = directory.endpoint(&application_id(42, application)).await;
    let endpoint = endpoint.unwrap().expect("a known application");
    endpoint.limit.map(|limit| limit.limit)
}

#[tokio::test]
async fn redis_list_uses_current_plan_limits() {
    let setup = setup().await;
    let ttl = Duration::from_secs(30);
    assert_serves_fixtures(&setup.replica(ttl), "replica A").await;
    let replica_b = setup.replica(ttl);
    let before_b = setup.fake.requests();
    assert_eq!(
        limit_of(&replica_b, 7101).await,
        Some(100),
        "seeded free plan"
    );

    let mut free = setup.store.plan("free").await.unwrap().unwrap();
    free.limit = Some(7);
    assert!(setup.store.update_plan(&free).await.unwrap());
    replica_b.invalidate();
    assert_eq!(
        limit_of(&replica_b, 7101).await,
        Some(7),
        "changed free plan"
    );
    assert_eq!(
        limit_of(&setup.replica(ttl), 7101).await,
        Some(7),
        "replica C"
    );
    assert_eq!(
        setup.fake.requests(),
        before_b,
        "B and C used the list in Redis"
    );
    setup.clean().await;
}
