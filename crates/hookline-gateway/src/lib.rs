//! The egress gateway, `hookline gateway`: the single point of egress.
//!
//! It serves two kinds of request, both authenticated with the bearer token
//! `gateway.token`, so the gateway is never an open relay:
//!
//! - `POST /v1/attempts` from dispatchers whose `dispatcher.gateway_url` is
//!   set ([`attempts`]). The request carries a delivery task without
//!   secrets. The gateway looks the endpoint and its secrets up in its own
//!   directory and runs the same egress chain that a dispatcher runs in
//!   process: sign, send with the SSRF-guarded client, capture the
//!   response. Metering stays in the dispatcher, and so does rate limiting
//!   unless the gateway has a limiter ([`Gateway::with_limiter`]). Then the
//!   gateway counts and responds with 429 and `Retry-After` over the limit.
//!   Either way each step runs once per attempt.
//! - Any other path: the proxied form of the 3scale reference deployment
//!   ([`proxy`]). A request carrying the headers `webhook-url` and
//!   `user_key` is signed with the body-HMAC scheme keyed with the
//!   `user_key`, stripped of both headers and forwarded to the URL.
//!
//! `GET /healthz` answers without authentication.

pub mod attempts;
mod auth;
mod error;
mod limit;
pub mod proxy;
mod settings;
mod spans;

pub use error::GatewayError;
pub use settings::{BodyHmacSettings, GatewaySettings};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use hookline_core::directory::Directory;
use hookline_core::limit::RateLimiter;
use hookline_core::webhook_url::AddressPolicy;
use hookline_delivery::gateway_protocol::ATTEMPTS_PATH;
use hookline_delivery::Egress;
use std::sync::Arc;
use std::time::Duration;

/// Everything a gateway request needs, shared by all requests.
pub struct Gateway {
    directory: Arc<dyn Directory>,
    /// The in-process egress chain: sign, send, capture.
    egress: Arc<dyn Egress>,
    /// The shared SSRF-guarded client, used by the proxied form.
    client: reqwest::Client,
    policy: AddressPolicy,
    limiter: Option<Arc<dyn RateLimiter>>,
    /// Replaces the window length of every plan (`limits.period_override`).
    period_override: Option<Duration>,
    settings: GatewaySettings,
}

impl Gateway {
    /// Creates a gateway. `egress` must send with `client`, the client that
    /// `hookline_delivery::build_client` builds for `policy`.
    pub fn new(
        directory: Arc<dyn Directory>,
        egress: Arc<dyn Egress>,
        client: reqwest::Client,
        policy: AddressPolicy,
        settings: GatewaySettings,
    ) -> Self {
        Self {
            directory,
            egress,
            client,
            policy,
            limiter: None,
            period_override: None,
            settings,
        }
    }

    /// Installs a limiter that counts every attempt against its plan before
    /// it is sent. Only for callers that do not limit themselves: a
    /// dispatcher counts unless its `GatewaySettings::counts_limits` is set.
    pub fn with_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Makes the limiter count in windows of `period` instead of each
    /// plan's own period, as `limits.period_override` does for dispatchers.
    pub fn with_period_override(mut self, period: Option<Duration>) -> Self {
        self.period_override = period;
        self
    }
}

/// Builds the gateway's router.
pub fn router(gateway: Arc<Gateway>) -> Router {
    // An attempt carries the payload as base64 inside JSON: 4/3 of the
    // payload plus the task's other fields.
    let payload_limit = gateway.settings.max_body_size;
    let attempt_limit = payload_limit / 3 * 4 + 64 * 1024;
    Router::new()
        .route(
            ATTEMPTS_PATH,
            post(attempts::handle).layer(DefaultBodyLimit::max(attempt_limit)),
        )
        .route("/healthz", get(healthz))
        .fallback(proxy::handle)
        .layer(DefaultBodyLimit::max(payload_limit))
        .with_state(gateway)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}
