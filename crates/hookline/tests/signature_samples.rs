//! The webhook document of a product validates as OpenAPI 3.1 with
//! `openapi-spec-validator` (PyPI), and the signature verification samples
//! of the developer portal accept a real delivery from `hookline serve` and
//! reject altered ones.
//!
//! Needs `python3` with `openapi-spec-validator`, `node` and `java` (17 or
//! newer, for single-file source launch) on the `PATH`.

mod common;

#[allow(unreachable_pub, dead_code)]
#[path = "../../hookline-portal/samples/verify.rs"]
mod verify_sample;

use common::{order_event, World};
use hookline_core::signing::SigningSecret;
use hookline_core::webhook_doc::{self, webhook_document};
use hookline_core::{ContentType, Product, RetryPolicy};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

const ORDER_SCHEMA: &str = include_str!("../../../fixtures/order-created.schema.json");

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hookline-portal/samples")
}

fn product(content_type: ContentType, schema: Option<&str>) -> Product {
    Product {
        name: "order-created".into(),
        topic: "order-created-event".into(),
        content_type,
        schema: schema.map(str::to_owned),
        validate: true,
        created_at: time::OffsetDateTime::now_utc(),
    }
}

/// Writes `document` to a temporary file and runs the OpenAPI validator on it.
fn run_openapi_validator(document: &Value) -> Output {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("webhook.json");
    std::fs::write(&path, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&path)
        .output()
        .expect("python3 runs; install Python 3")
}

fn assert_validator_installed() {
    let output = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .expect("python3 runs; install Python 3");
    assert!(
        output.status.success(),
        "openapi-spec-validator is missing; install it with `pip install openapi-spec-validator`: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn webhook_documents_are_valid_openapi() {
    assert_validator_installed();
    let draft7 = r##"{
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"money": {"type": "number"}},
        "type": "object",
        "properties": {"total": {"$ref": "#/definitions/money"}}
    }"##;
    let avro = r#"{"type":"record","name":"Order","fields":[{"name":"orderId","type":"string"}]}"#;
    let cases = [
        (
            "order-created JSON",
            product(ContentType::Json, Some(ORDER_SCHEMA)),
        ),
        ("draft-07 JSON", product(ContentType::Json, Some(draft7))),
        ("JSON without schema", product(ContentType::Json, None)),
        ("XML", product(ContentType::Xml, None)),
        ("Avro with schema", product(ContentType::Avro, Some(avro))),
        ("Avro wire format", product(ContentType::Avro, None)),
    ];
    for (label, product) in cases {
        let document = webhook_document(&product, &RetryPolicy::default());
        let output = run_openapi_validator(&document);
        assert!(
            output.status.success(),
            "{label}: document is not valid OpenAPI 3.1: {}",
            describe(&output)
        );
    }
}

#[test]
fn openapi_validator_rejects_broken_document() {
    assert_validator_installed();
    let mut document = webhook_document(
        &product(ContentType::Json, Some(ORDER_SCHEMA)),
        &RetryPolicy::default(),
    );
    // `body` is an OpenAPI 2.0 parameter location, invalid in 3.1.
    document["webhooks"]["order-created"]["post"]["parameters"][0]["in"] = "body".into();
    let output = run_openapi_validator(&document);
    assert!(
        !output.status.success(),
        "validator accepted a broken document: {}",
        describe(&output)
    );
    let report = describe(&output);
    assert!(
        report.contains("'body' is not one of"),
        "validator rejected the document for another reason: {report}"
    );
}

#[test]
fn schema_id_header_matches_egress() {
    assert_eq!(
        webhook_doc::SCHEMA_ID_HEADER,
        hookline_delivery::SCHEMA_ID_HEADER
    );
}

/// The parts of a webhook request that verification reads.
#[derive(Debug, Clone)]
struct SignedRequest {
    secret: String,
    webhook_id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

/// Result of running one sample on one request.
#[derive(Debug)]
struct Verdict {
    accepted: bool,
    message: String,
}

#[derive(Debug, Clone, Copy)]
enum Sample {
    Python,
    JavaScript,
    Java,
    Rust,
}

impl Sample {
    const ALL: [Self; 4] = [Self::Python, Self::JavaScript, Self::Java, Self::Rust];

    fn verify(self, request: &SignedRequest) -> Verdict {
        let (program, file) = match self {
            Self::Python => ("python3", "verify.py"),
            Self::JavaScript => ("node", "verify.js"),
            Self::Java => ("java", "Verify.java"),
            Self::Rust => return verify_in_process(request),
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let body_file = dir.path().join("body");
        std::fs::write(&body_file, &request.body).unwrap();
        let output = Command::new(program)
            .arg(samples_dir().join(file))
            .args([&request.webhook_id, &request.timestamp, &request.signature])
            .arg(&body_file)
            .env("WEBHOOK_SECRET", &request.secret)
            .output()
            .unwrap_or_else(|error| panic!("{program} does not run ({error}); install it"));
        let message = describe(&output);
        match output.status.code() {
            Some(0) => Verdict {
                accepted: true,
                message,
            },
            Some(1) => Verdict {
                accepted: false,
                message,
            },
            _ => panic!("{self:?} sample failed to run: {message}"),
        }
    }
}

fn verify_in_process(request: &SignedRequest) -> Verdict {
    let result = verify_sample::verify(
        &request.secret,
        &request.webhook_id,
        &request.timestamp,
        &request.signature,
        &request.body,
        SystemTime::now(),
    );
    Verdict {
        accepted: result.is_ok(),
        message: format!("{result:?}"),
    }
}

/// Delivers one order-created event through `hookline serve` to the
/// receiver and returns the request as it arrived.
async fn capture_real_delivery() -> SignedRequest {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "samples")
        .await;
    let (status, body) = server
        .ingest("order-created", Some("sample-1"), &order_event("SAMPLE1"))
        .await;
    assert_eq!(status, 202, "ingest: {body}");

    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 1, Duration::from_secs(20))
        .await;
    assert!(
        arrived,
        "no verified delivery arrived: {:?}\nserver log:\n{}",
        world.receiver.stats(),
        server.log_text()
    );
    let delivery = world.receiver.deliveries("samples").remove(0);
    let headers = world.receiver.request_headers("samples").remove(0);
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} header missing"))
            .to_str()
            .expect("header is ASCII")
            .to_owned()
    };
    let secrets = world.receiver_secrets();
    assert_eq!(secrets.len(), 1, "one application secret");
    SignedRequest {
        secret: secrets[0].clone(),
        webhook_id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: delivery.body.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_verify_real_delivery() {
    let genuine = capture_real_delivery().await;
    assert!(
        genuine.signature.starts_with("v1,"),
        "{}",
        genuine.signature
    );
    let secret = SigningSecret::parse(&genuine.secret).expect("whsec_ secret");
    let other_secret = SigningSecret::generate();

    let mut tampered = genuine.clone();
    tampered.body = String::from_utf8(genuine.body.clone())
        .unwrap()
        .replace("SAMPLE1", "SAMPLE2")
        .into_bytes();
    assert_ne!(tampered.body, genuine.body);

    // Signed correctly, but 10 minutes ago.
    let mut stale = genuine.clone();
    let stale_timestamp = genuine.timestamp.parse::<i64>().unwrap() - 600;
    stale.timestamp = stale_timestamp.to_string();
    stale.signature = secret.sign(&genuine.webhook_id, stale_timestamp, &genuine.body);

    let mut wrong_secret = genuine.clone();
    wrong_secret.secret = other_secret.expose().to_owned();

    // As during secret rotation: a signature of another secret comes first.
    let mut rotated = genuine.clone();
    let old_signature = other_secret.sign(
        &genuine.webhook_id,
        genuine.timestamp.parse().unwrap(),
        &genuine.body,
    );
    rotated.signature = format!("{old_signature} {}", genuine.signature);

    let cases = [
        ("genuine", &genuine, true),
        ("rotated", &rotated, true),
        ("tampered body", &tampered, false),
        ("stale timestamp", &stale, false),
        ("wrong secret", &wrong_secret, false),
    ];
    for sample in Sample::ALL {
        for (label, request, expected) in cases {
            let verdict = sample.verify(request);
            assert_eq!(
                verdict.accepted, expected,
                "{sample:?} sample, {label} request: {}",
                verdict.message
            );
        }
        let stale_verdict = sample.verify(&stale);
        assert!(
            stale_verdict.message.to_lowercase().contains("timestamp"),
            "{sample:?} sample must reject the stale request for its timestamp: {}",
            stale_verdict.message
        );
    }
}
