//! Invalid requests and configuration get clear errors that name the value
//! and the fix.

mod common;

use common::{order_event, World, TOKEN};
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn invalid_requests_get_clear_4xx() {
    let world = World::new().await;
    let server = world
        .serve(&[("HOOKLINE_INGEST__MAX_PAYLOAD_SIZE", "2048")])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;

    let (status, body) = server
        .ingest("order-created", Some("bad-json"), "{\"orderId\": ")
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "body");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{body}"
    );

    let (status, body) = server
        .ingest("no-such-product", None, &order_event("U1"))
        .await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-product"),
        "{body}"
    );

    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(4096));
    let (status, body) = server.ingest("order-created", None, &big).await;
    assert_eq!(status, 413);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ingest.max_payload_size"),
        "{body}"
    );

    let cases = [
        ("http://hooks.example.com/orders", "https"),
        ("https://10.0.0.8/orders", "private"),
        ("https://169.254.169.254/latest", "private"),
        ("not a url", "valid absolute URL"),
    ];
    let strict = world.serve_strict().await;
    strict
        .create_product("order-created", "order-created-event")
        .await;
    for (url, words) in cases {
        let request =
            json!({"name": "x", "product": "order-created", "plan": "free", "webhook_url": url});
        let (status, body) = strict
            .request(Method::POST, "/api/v1/applications", Some(request))
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "webhook_url", "{url}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(words),
            "{url}: {body}"
        );
    }

    let request = json!({"name": "x", "product": "order-created", "plan": "gold", "webhook_url": "https://hooks.example.com/"});
    let (status, body) = strict
        .request(Method::POST, "/api/v1/applications", Some(request))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "plan");

    let request = json!({"name": "x", "product": "order-created", "plan": "free"});
    let (status, body) = strict
        .request(Method::POST, "/api/v1/applications", Some(request))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["error"]["field"], "webhook_url",
        "missing field is named: {body}"
    );
}

#[tokio::test]
async fn api_requires_the_admin_token() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    let client = reqwest::Client::new();
    let missing = client
        .get(format!("{}/api/v1/products", server.api))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let wrong = client
        .get(format!("{}/api/v1/products", server.api))
        .bearer_auth(format!("{TOKEN}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let open = client
        .get(format!("{}/openapi.json", server.api))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let document: serde_json::Value = open.json().await.unwrap();
    assert!(document["paths"]["/api/v1/products/{name}/events"]["post"].is_object());
}

#[test]
fn invalid_configuration_names_the_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["config", "check"])
        .env("HOOKLINE_RETRY__BACKOFF_UNIT", "fast")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("retry.backoff_unit"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["config", "check"])
        .env("HOOKLINE_RETRY__BACKOFF_UNIT", "2ms")
        .env("HOOKLINE_API__ADMIN_TOKEN", "very-secret-token")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("backoff_unit = \"2ms\""), "{stdout}");
    assert!(
        !stdout.contains("very-secret-token"),
        "secrets are redacted"
    );
}

/// Writes a configuration file with `kafka.brokers` and these
/// `[kafka.properties]` lines, and runs `hookline config check` on it.
fn check_kafka_properties(dir: &Path, properties: &str) -> (std::path::PathBuf, Output) {
    let config = dir.join("hookline.toml");
    std::fs::write(
        &config,
        format!("[kafka]\nbrokers = \"127.0.0.1:9\"\n\n[kafka.properties]\n{properties}"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    (config, output)
}

#[test]
fn kafka_session_timeout_property_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, output) = check_kafka_properties(dir.path(), "\"session.timeout.ms\" = \"6000\"\n");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("session.timeout.ms"), "{stderr}");
    assert!(stderr.contains("kafka.session_timeout"), "{stderr}");
}

#[test]
fn kafka_property_names_reach_librdkafka() {
    let dir = tempfile::tempdir().unwrap();
    let (config, check) = check_kafka_properties(
        dir.path(),
        "\"no.such.property\" = \"1\"\n\"sasl.password\" = \"kafka-secret-value\"\n",
    );
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(
        printed.contains("\"no.such.property\" = \"1\""),
        "{printed}"
    );
    assert!(
        printed.contains("\"sasl.password\" = \"<redacted>\""),
        "{printed}"
    );
    assert!(!printed.contains("kafka-secret-value"), "{printed}");

    let mut serve = Command::new(env!("CARGO_BIN_EXE_hookline"));
    serve
        .args(["serve", "--config"])
        .arg(&config)
        .env("HOOKLINE_STORAGE__DATA_DIR", dir.path().join("data"))
        .env("HOOKLINE_API__LISTEN", "127.0.0.1:0")
        .env("HOOKLINE_API__ADMIN_TOKEN", "kafka-properties-test-token");
    let (status, stderr) = exit_within(serve, dir.path(), Duration::from_secs(30));
    assert!(!status.success());
    assert!(stderr.contains("no.such.property"), "{stderr}");
    assert!(!stderr.contains("kafka-secret-value"), "{stderr}");
}

#[test]
fn kafka_sasl_password_is_read_from_file() {
    let printed = check_with_secret_file("HOOKLINE_KAFKA__SASL_PASSWORD_FILE", "scram-secret\n");
    assert!(
        printed.contains("sasl_password = \"<redacted>\""),
        "{printed}"
    );
    assert!(!printed.contains("scram-secret"), "{printed}");
}

/// Runs `command` with its standard error in a file under `dir` and returns
/// its exit status and standard error. A process still running after
/// `limit` is killed and fails the test, so a server that should have
/// refused to start cannot hang it.
fn exit_within(
    mut command: Command,
    dir: &Path,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let path = dir.join("stderr.log");
    let file = std::fs::File::create(&path).unwrap();
    let mut child = command.stdout(Stdio::null()).stderr(file).spawn().unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            let stderr = std::fs::read_to_string(&path).unwrap();
            panic!("the process still ran after {limit:?}; its standard error:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&path).unwrap())
}

/// Runs `hookline config check` with `variable` naming a file that holds
/// `contents`, checks that it passed, and returns its output.
fn check_with_secret_file(variable: &str, contents: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, contents).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["config", "check"])
        .env(variable, &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn admin_token_is_read_from_file() {
    let printed = check_with_secret_file("HOOKLINE_API__ADMIN_TOKEN_FILE", "from-a-file\n");
    assert!(
        printed.contains("admin_token = \"<redacted>\""),
        "{printed}"
    );

    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["config", "check"])
        .env("HOOKLINE_API__ADMIN_TOKEN_FILE", dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("api.admin_token"));
}
