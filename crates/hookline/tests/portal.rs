//! End-to-end tests of the developer portal under `/portal`: access between
//! accounts, CSRF, escaping, the sign-in limit, and a headless Chromium run
//! through sign-up, subscription, a test event and secret rotation.

mod common;

use common::{Backend, World};
use hookline_core::signing::{verify, SigningSecret};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const PRODUCT: &str = "order-created";
const PASSWORD: &str = "portal-test-password";

/// A browser-like client of the portal that keeps its cookies by hand, so
/// that the `Secure` cookie also travels over the tests' plain HTTP.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

/// A response's status and body.
struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: base.to_owned(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        pairs.join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(existing, _)| existing != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        self.keep_cookies(&response);
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|value| value.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        Page {
            status,
            location,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode_form(form))
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    /// Posts a form with the CSRF token of the page at `form_page`.
    async fn submit(&mut self, form_page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(form_page).await;
        let token = csrf_token(&page.body);
        let mut form = vec![("csrf", token.as_str())];
        form.extend_from_slice(fields);
        self.post(action, &form).await
    }

    async fn sign_up(&mut self, email: &str) {
        let page = self
            .submit(
                "/portal/signup",
                "/portal/signup",
                &[("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(page.status, 303, "sign-up of {email}: {}", page.body);
    }

    async fn sign_in(&mut self, email: &str) {
        let page = self
            .submit(
                "/portal/signin",
                "/portal/signin",
                &[("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(page.status, 303, "sign-in of {email}: {}", page.body);
    }

    /// Subscribes an endpoint of the receiver; returns the application id.
    async fn subscribe(&mut self, name: &str, webhook_url: &str) -> String {
        let page = self
            .submit(
                "/portal/subscribe",
                "/portal/subscribe",
                &[
                    ("name", name),
                    ("product", PRODUCT),
                    ("plan", "paid"),
                    ("webhook_url", webhook_url),
                ],
            )
            .await;
        assert_eq!(page.status, 201, "subscribe: {}", page.body);
        let start = page
            .body
            .find("/portal/apps/app_")
            .expect("application link")
            + 13;
        let id: String = page.body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        id
    }
}

fn encode_form(fields: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// Returns the value of the first `csrf` field on a page.
fn csrf_token(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a form with a csrf field") + marker.len();
    body[start..].split('"').next().unwrap().to_owned()
}

async fn create_product(server: &common::Server) {
    let schema = include_str!("../../../fixtures/order-created.schema.json");
    let body = json!({"name": PRODUCT, "topic": "order-created-event",
        "content_type": "application/json", "schema": schema});
    let (status, body) = server
        .request(reqwest::Method::POST, "/api/v1/products", Some(body))
        .await;
    assert_eq!(status, 201, "create product: {body}");
}

both_backends!(other_consumers_application_is_not_found);

async fn other_consumers_application_is_not_found(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world.serve(&[]).await;
    create_product(&server).await;

    let mut owner = Browser::new(&server.api);
    owner.sign_up("owner@example.com").await;
    let id = owner
        .subscribe("Owner app", &world.receiver.endpoint_url("owner"))
        .await;
    let own = owner.get(&format!("/portal/apps/{id}")).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(own.body.contains("Owner app"));

    let mut other = Browser::new(&server.api);
    other.sign_up("other@example.com").await;
    let foreign = other.get(&format!("/portal/apps/{id}")).await;
    assert_eq!(foreign.status, 404);
    assert!(!foreign.body.contains("Owner app"));
    let home = other.get("/portal").await;
    assert!(
        !home.body.contains(&id),
        "another account's list shows {id}"
    );
    let provider_page = other.get("/portal/provider/applications").await;
    assert_eq!(provider_page.status, 404);

    let mut anonymous = Browser::new(&server.api);
    let signed_out = anonymous.get(&format!("/portal/apps/{id}")).await;
    assert_eq!(signed_out.status, 303);
    assert_eq!(signed_out.location.as_deref(), Some("/portal/signin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_without_csrf_token_is_rejected() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    create_product(&server).await;
    let mut browser = Browser::new(&server.api);
    browser.sign_up("csrf@example.com").await;
    let id = browser
        .subscribe("CSRF app", &world.receiver.endpoint_url("csrf"))
        .await;

    let missing = browser.post(&format!("/portal/apps/{id}/pause"), &[]).await;
    assert_eq!(missing.status, 403, "{}", missing.body);
    let wrong = browser
        .post(&format!("/portal/apps/{id}/pause"), &[("csrf", "forged")])
        .await;
    assert_eq!(wrong.status, 403);
    let page = browser.get(&format!("/portal/apps/{id}")).await;
    assert!(page.body.contains("Pause deliveries"), "the app was paused");

    let mut fresh = Browser::new(&server.api);
    let sign_in = fresh
        .post(
            "/portal/signin",
            &[("email", "csrf@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(sign_in.status, 403, "sign-in without the form cookie");

    let token = csrf_token(&page.body);
    let paused = browser
        .post(&format!("/portal/apps/{id}/pause"), &[("csrf", &token)])
        .await;
    assert_eq!(paused.status, 303, "{}", paused.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_in_application_name_is_escaped() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    create_product(&server).await;
    let mut browser = Browser::new(&server.api);
    browser.sign_up("escape@example.com").await;
    let name = "<script>alert('portal')</script>";
    let id = browser
        .subscribe(name, &world.receiver.endpoint_url("escape"))
        .await;

    for path in [format!("/portal/apps/{id}"), "/portal".to_owned()] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(
            page.body
                .contains("&lt;script&gt;alert('portal')&lt;/script&gt;"),
            "{path} does not show the escaped name"
        );
        assert!(
            !page.body.contains("<script>alert"),
            "{path} contains the raw script"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixth_wrong_password_is_rate_limited() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    let mut owner = Browser::new(&server.api);
    owner.sign_up("limited@example.com").await;

    let mut attacker = Browser::new(&server.api);
    for attempt in 1..=5 {
        let page = attacker
            .submit(
                "/portal/signin",
                "/portal/signin",
                &[
                    ("email", "limited@example.com"),
                    ("password", "wrong-password"),
                ],
            )
            .await;
        assert_eq!(page.status, 401, "attempt {attempt}");
        assert!(page.body.contains("The email or the password is wrong."));
    }
    let sixth = attacker
        .submit(
            "/portal/signin",
            "/portal/signin",
            &[
                ("email", "limited@example.com"),
                ("password", "wrong-password"),
            ],
        )
        .await;
    assert_eq!(sixth.status, 429);
    assert!(
        sixth
            .body
            .contains("Too many failed sign-in attempts for this email"),
        "{}",
        sixth.body
    );
    let right = attacker
        .submit(
            "/portal/signin",
            "/portal/signin",
            &[("email", "limited@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(right.status, 429, "the right password is also refused now");

    let mut other = Browser::new(&server.api);
    other.sign_up("unlimited@example.com").await;
}

/// Submits the sign-in form with a wrong password and returns the page.
async fn wrong_sign_in(browser: &mut Browser, email: &str) -> Page {
    browser
        .submit(
            "/portal/signin",
            "/portal/signin",
            &[("email", email), ("password", "wrong-password")],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_limit_spans_replicas() {
    let world = World::with_backend(Backend::Distributed).await;
    let first = world.start("api", &[]).await;
    let second = world.start("api", &[]).await;
    let mut owner = Browser::new(&first.api);
    owner.sign_up("shared@example.com").await;

    let mut attackers = [Browser::new(&first.api), Browser::new(&second.api)];
    for attempt in 0..5 {
        let attacker = &mut attackers[attempt % 2];
        let page = wrong_sign_in(attacker, "shared@example.com").await;
        assert_eq!(page.status, 401, "attempt {} of 5", attempt + 1);
    }
    for (replica, attacker) in attackers.iter_mut().enumerate() {
        let page = wrong_sign_in(attacker, "shared@example.com").await;
        assert_eq!(
            page.status, 429,
            "replica {replica} allowed a sixth attempt"
        );
        assert!(page.body.contains("Too many failed sign-in attempts"));
    }
    let right = attackers[1]
        .submit(
            "/portal/signin",
            "/portal/signin",
            &[("email", "shared@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(right.status, 429, "the right password is also refused now");

    let mut other = Browser::new(&second.api);
    other.sign_up("unlimited@example.com").await;
    let mut other_again = Browser::new(&first.api);
    other_again.sign_in("unlimited@example.com").await;
}

/// Returns the directory that keeps test artifacts: `target/` of the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_up_subscribes_and_rotates() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hookline-portal/browser");
    assert!(
        PathBuf::from("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing; install it with `apt-get install -y chromium` (.ci/run does)"
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing; run `npm ci` in crates/hookline-portal/browser (.ci/run does)"
    );
    let world = World::new().await;
    let server = world
        .serve(&[("HOOKLINE_PORTAL__PROVIDER_EMAILS", "provider@example.com")])
        .await;
    create_product(&server).await;
    let screenshots = target_dir().join("portal-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let profile = world.dir.path().join("chromium-profile");

    let output = tokio::process::Command::new("node")
        .arg(browser_dir.join("portal.e2e.mjs"))
        .current_dir(&browser_dir)
        .env("PORTAL_URL", format!("{}/portal", server.api))
        .env("WEBHOOK_URL", world.receiver.endpoint_url("browser"))
        .env("PRODUCT", PRODUCT)
        .env("PASSWORD", PASSWORD)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("USER_DATA_DIR", &profile)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser script failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log_text()
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("no JSON result ({error}):\n{stdout}"));
    let old = SigningSecret::parse(result["firstSecret"].as_str().unwrap()).unwrap();
    let new = SigningSecret::parse(result["rotatedSecret"].as_str().unwrap()).unwrap();
    assert_ne!(old.expose(), new.expose());
    assert_eq!(result["revealedSecret"], result["rotatedSecret"]);

    let arrived = world
        .receiver
        .wait_for_deliveries(
            |records| records.iter().filter(|r| r.endpoint == "browser").count() >= 2,
            Duration::from_secs(20),
        )
        .await;
    assert!(arrived, "two test events did not reach the receiver");
    let received = world.receiver.deliveries("browser");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let check = |secret: &SigningSecret, index: usize| {
        let webhook = &received[index];
        verify(
            secret,
            &webhook.webhook_id,
            webhook.timestamp,
            &webhook.signature,
            &webhook.body,
            now,
            600,
        )
    };
    assert!(
        check(&old, 0).is_ok(),
        "the first test event verifies with the first secret"
    );
    assert!(
        check(&new, 0).is_err(),
        "the first test event predates the rotation"
    );
    let last = received.len() - 1;
    assert_eq!(
        received[last].signature.split(' ').count(),
        2,
        "during the overlap a webhook carries two signatures: {}",
        received[last].signature
    );
    assert!(
        check(&old, last).is_ok(),
        "the old secret verifies during the overlap"
    );
    assert!(
        check(&new, last).is_ok(),
        "the new secret verifies after rotation"
    );
    assert!(received[last].json().is_ok(), "the test event is JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_url_problems_are_explained() {
    let world = World::new().await;
    let server = world.serve_strict().await;
    create_product(&server).await;
    let mut browser = Browser::new(&server.api);
    browser.sign_up("urls@example.com").await;

    let cases = [
        (
            "http://hooks.example.com/orders",
            "must start with https://",
        ),
        ("https://127.0.0.1/hooks", "private, loopback, link-local"),
        ("https://10.1.2.3/hooks", "private, loopback, link-local"),
        ("not a url", "Enter a full URL"),
    ];
    for (url, message) in cases {
        let page = browser
            .submit(
                "/portal/subscribe",
                "/portal/subscribe",
                &[
                    ("name", "URL check"),
                    ("product", PRODUCT),
                    ("plan", "free"),
                    ("webhook_url", url),
                ],
            )
            .await;
        assert_eq!(page.status, 422, "{url}");
        assert!(
            page.body.contains(message),
            "{url}: no {message:?} in the page"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_rejected() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    create_product(&server).await;
    let mut browser = Browser::new(&server.api);
    browser.sign_up("unreachable@example.com").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);

    let page = browser
        .submit(
            "/portal/subscribe",
            "/portal/subscribe",
            &[
                ("name", "Closed port"),
                ("product", PRODUCT),
                ("plan", "free"),
                ("webhook_url", &format!("https://127.0.0.1:{port}/hooks")),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("is unreachable"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_application_gets_kept_events_on_resume() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    create_product(&server).await;
    let mut browser = Browser::new(&server.api);
    browser.sign_up("pause@example.com").await;
    let id = browser
        .subscribe("Paused app", &world.receiver.endpoint_url("paused"))
        .await;
    let app = format!("/portal/apps/{id}");

    let paused = browser.submit(&app, &format!("{app}/pause"), &[]).await;
    assert_eq!(paused.status, 303);
    let page = browser.get(&app).await;
    assert!(
        page.body.contains("paused by the consumer"),
        "{}",
        page.body
    );
    let sent = browser
        .submit(&app, &format!("{app}/test-event"), &[])
        .await;
    assert_eq!(sent.status, 303);
    let early = world
        .receiver
        .wait_for(|stats| stats.total > 0, Duration::from_secs(2))
        .await;
    assert!(!early, "a paused application received a webhook");

    let resumed = browser.submit(&app, &format!("{app}/resume"), &[]).await;
    assert_eq!(resumed.status, 303);
    let delivered = world
        .receiver
        .wait_for(|stats| stats.succeeded >= 1, Duration::from_secs(15))
        .await;
    assert!(
        delivered,
        "the kept test event was not delivered after resume"
    );
}

/// Polls the admin API until the application has `count` deliveries, none of
/// them pending, and returns them newest first.
async fn settled_deliveries(
    server: &common::Server,
    application: &str,
    count: usize,
) -> Vec<Value> {
    let path = format!("/api/v1/applications/{application}/deliveries");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.request(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "list deliveries: {body}");
        let deliveries = body.as_array().unwrap().clone();
        let settled = deliveries.len() == count
            && deliveries
                .iter()
                .all(|delivery| delivery["state"] != "pending");
        if settled {
            return deliveries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{application} did not settle with {count} deliveries: {body}\nserver log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

both_backends!(delivered_delivery_is_replayed);

async fn delivered_delivery_is_replayed(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world.serve(&[]).await;
    create_product(&server).await;
    let mut browser = Browser::new(&server.api);
    browser.sign_up("replay@example.com").await;
    let id = browser
        .subscribe("Replay app", &world.receiver.endpoint_url("replay"))
        .await;
    let app = format!("/portal/apps/{id}");
    let sent = browser
        .submit(&app, &format!("{app}/test-event"), &[])
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let first = settled_deliveries(&server, &id, 1).await;
    assert_eq!(first[0]["state"], "delivered");
    let original = first[0]["id"].as_str().unwrap().to_owned();
    let original_webhook_id = first[0]["webhook_id"].as_str().unwrap().to_owned();

    let (status, replay) = server
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/deliveries/{original}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 202, "replay through the admin API: {replay}");
    assert_eq!(replay["replay_of"], original.as_str());
    assert_eq!(replay["state"], "pending");
    assert_ne!(replay["id"], original.as_str());
    assert_ne!(replay["webhook_id"], original_webhook_id.as_str());

    let page = browser.get(&app).await;
    let action = format!("{app}/deliveries/{original}/replay");
    assert!(
        page.body.contains(&action),
        "no replay form for the delivered delivery"
    );
    let replayed = browser.submit(&app, &action, &[]).await;
    assert_eq!(replayed.status, 303, "{}", replayed.body);
    assert_eq!(
        replayed.location.as_deref(),
        Some(format!("{app}?notice=replayed-new").as_str())
    );
    let forged = browser.post(&action, &[("csrf", "forged")]).await;
    assert_eq!(forged.status, 403, "replay with a forged CSRF token");

    let arrived = world
        .receiver
        .wait_for_deliveries(
            |records| records.iter().filter(|r| r.endpoint == "replay").count() >= 3,
            Duration::from_secs(20),
        )
        .await;
    assert!(
        arrived,
        "the two replays did not reach the receiver\nserver log:\n{}",
        server.log_text()
    );
    let received = world.receiver.deliveries("replay");
    assert_eq!(received.len(), 3, "the forged replay was sent");
    assert_eq!(received[0].webhook_id, original_webhook_id);
    for replay in &received[1..] {
        assert_eq!(replay.body, received[0].body, "a replay changed the body");
        assert_ne!(replay.webhook_id, original_webhook_id);
    }
    assert_ne!(received[1].webhook_id, received[2].webhook_id);

    let all = settled_deliveries(&server, &id, 3).await;
    let kept = all.iter().find(|d| d["id"] == original.as_str()).unwrap();
    assert_eq!(kept["state"], "delivered");
    assert_eq!(kept["attempts"].as_array().unwrap().len(), 1);
    let replays = all.iter().filter(|d| d["replay_of"] == original.as_str());
    assert_eq!(replays.count(), 2);
    assert!(all.iter().all(|d| d["state"] == "delivered"));

    let (status, missing) = server
        .request(
            reqwest::Method::POST,
            "/api/v1/deliveries/dlv_missing/replay",
            None,
        )
        .await;
    assert_eq!(status, 404, "{missing}");
}

both_backends!(provider_role_follows_configured_emails);

async fn provider_role_follows_configured_emails(backend: Backend) {
    let world = World::with_backend(backend).await;
    let unlisted = world.serve(&[]).await;
    let mut first = Browser::new(&unlisted.api);
    first.sign_up("staff@example.com").await;
    let page = first.get("/portal/provider").await;
    assert_eq!(page.status, 404, "an unlisted account is a consumer");
    unlisted.terminate();

    let listed = world
        .serve(&[("HOOKLINE_PORTAL__PROVIDER_EMAILS", "Staff@Example.com")])
        .await;
    let mut second = Browser::new(&listed.api);
    second.sign_in("staff@example.com").await;
    let page = second.get("/portal/provider").await;
    assert_eq!(
        page.status, 200,
        "a listed account becomes provider at sign-in"
    );
    let page = second.get("/portal/account").await;
    assert!(page.body.contains("API provider: sees every application"));
    listed.terminate();

    let removed = world.serve(&[]).await;
    second.base = removed.api.clone();
    let page = second.get("/portal/provider").await;
    assert_eq!(
        page.status, 200,
        "the role changes at the next sign-in only"
    );
    let mut third = Browser::new(&removed.api);
    third.sign_in("staff@example.com").await;
    let page = third.get("/portal/provider").await;
    assert_eq!(page.status, 404, "a removed account is a consumer again");
    let page = second.get("/portal/provider").await;
    assert_eq!(page.status, 404, "the older session lost the role too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_test_event_decodes_with_schema() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    let schema = r#"{"type": "record", "name": "OrderCreated", "fields": [
        {"name": "orderId", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "placedAt", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]}"#;
    let body = json!({"name": "orders-avro", "topic": "orders-avro",
        "content_type": "application/avro", "schema": schema, "validate": true});
    let (status, body) = server
        .request(reqwest::Method::POST, "/api/v1/products", Some(body))
        .await;
    assert_eq!(status, 201, "create product: {body}");

    let mut browser = Browser::new(&server.api);
    browser.sign_up("avro@example.com").await;
    let page = browser
        .submit(
            "/portal/subscribe",
            "/portal/subscribe",
            &[
                ("name", "Avro app"),
                ("product", "orders-avro"),
                ("plan", "paid"),
                ("webhook_url", &world.receiver.endpoint_url("avro")),
            ],
        )
        .await;
    assert_eq!(page.status, 201, "subscribe: {}", page.body);
    let start = page.body.find("/portal/apps/app_").unwrap() + 13;
    let id: String = page.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let app = format!("/portal/apps/{id}");
    let sent = browser
        .submit(&app, &format!("{app}/test-event"), &[])
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(
        sent.location.as_deref(),
        Some(format!("{app}?notice=test-sent").as_str())
    );

    let arrived = world
        .receiver
        .wait_for_deliveries(
            |records| records.iter().any(|r| r.endpoint == "avro"),
            Duration::from_secs(15),
        )
        .await;
    assert!(arrived, "the Avro test event did not arrive");
    let received = world.receiver.deliveries("avro");
    let parsed = apache_avro::Schema::parse_str(schema).unwrap();
    let mut rest: &[u8] = &received[0].body;
    let value = apache_avro::from_avro_datum(&parsed, &mut rest, None).unwrap();
    assert!(rest.is_empty(), "bytes follow the datum");
    assert!(
        value.validate(&parsed),
        "the datum does not match the schema"
    );
}

/// Housekeeping deletes portal sessions once they expire and keeps the
/// others. The sessions are written while the server is stopped, and the
/// first housekeeping pass runs when it starts.
#[tokio::test]
async fn housekeeping_deletes_expired_sessions() {
    use hookline_core::portal::{Account, PortalSession, PortalStore, Role};
    use hookline_sqlite::SqliteBackend;
    use time::OffsetDateTime;

    let world = World::new().await;
    world.serve(&[]).await.terminate();
    let now = OffsetDateTime::now_utc();
    let long_ago = now - time::Duration::days(30);
    let session = |token_hash: &str, expires_at| PortalSession {
        token_hash: token_hash.to_owned(),
        account_id: "acct-housekeeping".to_owned(),
        csrf_token: "csrf".to_owned(),
        created_at: long_ago,
        expires_at,
    };
    let backend = SqliteBackend::open(&world.data_dir()).await.unwrap();
    let store = backend.store();
    store
        .create_account(&Account {
            id: "acct-housekeeping".to_owned(),
            email: "housekeeping@example.com".to_owned(),
            password_hash: "not-a-real-hash".to_owned(),
            role: Role::Consumer,
            created_at: long_ago,
        })
        .await
        .unwrap();
    let expired = session("expired-session", now - time::Duration::hours(1));
    let current = session("current-session", now + time::Duration::hours(1));
    store.create_session(&expired).await.unwrap();
    store.create_session(&current).await.unwrap();

    let _server = world.serve(&[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Reading at `long_ago` also finds expired sessions, so `Some` means
    // the row is still there.
    while store
        .session(&expired.token_hash, long_ago)
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired session is still stored 20 s after the start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let current_after = store.session(&current.token_hash, now).await.unwrap();
    assert!(current_after.is_some(), "the current session was deleted");
}
