//! The gateway's router without a socket: authentication, lookups, the rate
//! limit, and the proxied form against a real HTTPS receiver.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use hookline_core::directory::{Directory, DirectoryError, Endpoint};
use hookline_core::limit::LocalRateLimiter;
use hookline_core::queue::DeliveryTask;
use hookline_core::webhook_url::AddressPolicy;
use hookline_core::{
    ApplicationId, ContentType, DeliveryId, EventId, LimitPeriod, OverLimit, PlanLimit,
    SigningSecret, WebhookId,
};
use hookline_delivery::gateway_protocol::{AttemptRequest, AttemptResponse};
use hookline_delivery::{build_client, ClientSettings, HttpEgress};
use hookline_gateway::{router, BodyHmacSettings, Gateway, GatewaySettings};
use hookline_receiver::{Receiver, TestPki};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "gateway-test-token";

/// A directory with one application at `url`.
struct OneApplication {
    endpoint: Arc<Endpoint>,
}

#[async_trait]
impl Directory for OneApplication {
    async fn subscribers(&self, _: &str) -> Result<Arc<[ApplicationId]>, DirectoryError> {
        Ok(Arc::from([self.endpoint.application_id.clone()]))
    }

    async fn endpoint(&self, id: &ApplicationId) -> Result<Option<Arc<Endpoint>>, DirectoryError> {
        Ok((id == &self.endpoint.application_id).then(|| self.endpoint.clone()))
    }

    fn invalidate(&self) {}
}

struct Setup {
    receiver: Receiver,
    endpoint: Arc<Endpoint>,
    gateway: Arc<Gateway>,
    _dir: tempfile::TempDir,
}

async fn setup(limit: Option<PlanLimit>, with_limiter: bool) -> Setup {
    let pki = TestPki::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    pki.write_ca(&ca_file).unwrap();
    let receiver = Receiver::start(&pki, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let secret = SigningSecret::generate();
    receiver.set_secret("app", secret.clone());
    let endpoint = Arc::new(Endpoint {
        application_id: ApplicationId::generate(),
        url: receiver.endpoint_url("app"),
        plan: "free".into(),
        limit,
        secrets: vec![secret],
        active: true,
    });

    let policy = AddressPolicy {
        allow_private: true,
        ..AddressPolicy::default()
    };
    let client = build_client(&ClientSettings {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        policy: policy.clone(),
        ca_file: Some(ca_file),
        max_idle_per_host: 4,
    })
    .unwrap();
    let egress = Arc::new(HttpEgress::new(client.clone(), policy.clone()));
    let directory = Arc::new(OneApplication {
        endpoint: endpoint.clone(),
    });
    let settings = GatewaySettings {
        token: TOKEN.into(),
        hmac: BodyHmacSettings::default(),
        max_body_size: 1 << 20,
    };
    let mut gateway = Gateway::new(directory, egress, client, policy, settings);
    if with_limiter {
        gateway = gateway.with_limiter(Arc::new(LocalRateLimiter::new()));
    }
    Setup {
        receiver,
        endpoint,
        gateway: Arc::new(gateway),
        _dir: dir,
    }
}

fn task(application: &ApplicationId) -> DeliveryTask {
    DeliveryTask {
        delivery_id: DeliveryId::generate(),
        event_id: EventId::generate(),
        application_id: application.clone(),
        product: "order-created".into(),
        webhook_id: WebhookId::derive("order-created", "k-1"),
        idempotency_key: "k-1".into(),
        content_type: ContentType::Json,
        payload: Bytes::from_static(br#"{"order":1}"#),
        attempts_made: 0,
        traceparent: None,
    }
}

fn attempt_request(task: DeliveryTask, token: Option<&str>) -> Request<Body> {
    let body = serde_json::to_vec(&AttemptRequest::V1(task)).unwrap();
    let mut request = Request::post("/v1/attempts").header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::from(body)).unwrap()
}

async fn body_json(response: axum::response::Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn attempt_is_signed_and_reported() {
    let setup = setup(None, false).await;
    let request = attempt_request(task(&setup.endpoint.application_id), Some(TOKEN));
    let response = router(setup.gateway.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let report: AttemptResponse = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        report.result,
        hookline_core::AttemptResult::Response { status: 204 }
    );

    let stats = setup.receiver.stats();
    assert_eq!(stats.total, 1);
    assert_eq!(
        stats.verified, 1,
        "the gateway signs with the directory's secret"
    );
}

#[tokio::test]
async fn attempt_without_token_is_unauthorized() {
    let setup = setup(None, false).await;
    for token in [None, Some("wrong")] {
        let request = attempt_request(task(&setup.endpoint.application_id), token);
        let response = router(setup.gateway.clone())
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "token {token:?}"
        );
    }
    assert_eq!(setup.receiver.stats().total, 0, "nothing is sent");
}

#[tokio::test]
async fn attempt_for_unknown_application_is_not_found() {
    let setup = setup(None, false).await;
    let request = attempt_request(task(&ApplicationId::generate()), Some(TOKEN));
    let response = router(setup.gateway.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body_json(response).await["error"]["code"],
        "application_not_found"
    );
}

#[tokio::test]
async fn invalid_attempt_body_is_bad_request() {
    let setup = setup(None, false).await;
    let request = Request::post("/v1/attempts")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from("{\"version\":\"9\"}"))
        .unwrap();
    let response = router(setup.gateway.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn full_window_answers_429_with_retry_after() {
    let limit = PlanLimit {
        limit: 1,
        period: LimitPeriod::Hour,
        over_limit: OverLimit::Defer,
    };
    let setup = setup(Some(limit), true).await;
    let app = setup.endpoint.application_id.clone();
    let first = router(setup.gateway.clone())
        .oneshot(attempt_request(task(&app), Some(TOKEN)))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);

    let second = router(setup.gateway.clone())
        .oneshot(attempt_request(task(&app), Some(TOKEN)))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(body_json(second).await["error"]["code"], "rate_limited");
    assert_eq!(
        setup.receiver.stats().total,
        1,
        "the limited attempt is not sent"
    );
}

fn proxied(url: Option<&str>, user_key: Option<&str>, token: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/")
        .header("content-type", "application/json")
        .header("x-request-id", "r-1");
    if let Some(url) = url {
        request = request.header("webhook-url", url);
    }
    if let Some(key) = user_key {
        request = request.header("user_key", key);
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::from(r#"{"order":"1001XYZ"}"#)).unwrap()
}

#[tokio::test]
async fn proxied_form_signs_strips_and_forwards() {
    let setup = setup(None, false).await;
    let url = setup.receiver.endpoint_url("proxied");
    let request = proxied(Some(&url), Some("a1b2c3"), Some(TOKEN));
    let response = router(setup.gateway.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "the consumer's status"
    );

    let received = setup.receiver.deliveries("proxied");
    assert_eq!(received.len(), 1);
    let headers = &setup.receiver.request_headers("proxied")[0];
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"a1b2c3").unwrap();
    mac.update(br#"{"order":"1001XYZ"}"#);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(headers["x-hmac-signature"].to_str().unwrap(), expected);
    assert_eq!(
        headers["x-request-id"], "r-1",
        "other headers are forwarded"
    );
    for removed in ["webhook-url", "user_key", "authorization"] {
        assert!(
            !headers.contains_key(removed),
            "{removed} must not be forwarded"
        );
    }
    assert_eq!(received[0].body.as_ref(), br#"{"order":"1001XYZ"}"#);
}

#[tokio::test]
async fn proxied_form_rejects_missing_headers_and_token() {
    let setup = setup(None, false).await;
    let url = setup.receiver.endpoint_url("proxied");
    let cases = [
        (
            proxied(Some(&url), None, Some(TOKEN)),
            StatusCode::BAD_REQUEST,
            "user_key",
        ),
        (
            proxied(None, Some("k"), Some(TOKEN)),
            StatusCode::BAD_REQUEST,
            "webhook-url",
        ),
        (
            proxied(Some(&url), Some("k"), None),
            StatusCode::UNAUTHORIZED,
            "bearer token",
        ),
    ];
    for (request, status, named) in cases {
        let response = router(setup.gateway.clone())
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let message = body_json(response).await["error"]["message"].to_string();
        assert!(message.contains(named), "{message} names {named}");
    }
    assert_eq!(setup.receiver.stats().total, 0);
}

#[tokio::test]
async fn proxied_form_applies_url_rules() {
    let setup = setup(None, false).await;
    let request = proxied(Some("ftp://files.example/"), Some("k"), Some(TOKEN));
    let response = router(setup.gateway.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(response).await["error"]["code"], "invalid_header");
}
