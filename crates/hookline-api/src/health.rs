//! Liveness, readiness and metrics, served by every Hookline process.

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hookline_core::queue::DeliveryQueue;
use hookline_core::store::Store;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// A backend that must answer for the process to be ready.
#[async_trait]
pub trait ReadinessProbe: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

/// Renders the Prometheus text exposition of the process's metrics.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// State of the operational endpoints.
#[derive(Clone)]
pub struct OpsState {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn DeliveryQueue>,
    /// Further backends checked by `/readyz`, such as Redis.
    pub probes: Vec<Arc<dyn ReadinessProbe>>,
    pub metrics: MetricsRenderer,
}

/// Builds the router of `/healthz`, `/readyz` and `/metrics`.
pub fn ops_router(ops: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// Reports that the process is up, without touching any backend.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Reports whether the state store, the delivery queue and every other
/// required backend respond.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready"), (status = 503, description = "A backend is unavailable")))]
pub(crate) async fn readyz(State(ops): State<OpsState>) -> (StatusCode, Json<Value>) {
    let mut failures = Map::new();
    if let Err(error) = ops.store.ping().await {
        failures.insert("store".into(), error.to_string().into());
    }
    let depth = match ops.queue.depth().await {
        Ok(depth) => Some(depth),
        Err(error) => {
            failures.insert("queue".into(), error.to_string().into());
            None
        }
    };
    for probe in &ops.probes {
        if let Err(error) = probe.check().await {
            failures.insert(probe.name().into(), error.into());
        }
    }
    if failures.is_empty() {
        return (
            StatusCode::OK,
            Json(json!({"status": "ready", "queue": depth})),
        );
    }
    let summary = Value::Object(failures.clone()).to_string();
    tracing::warn!(failures = %summary, "Readiness check failed");
    let body = json!({"status": "unavailable", "failures": failures});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

/// Serves the metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text exposition")))]
pub(crate) async fn metrics(State(ops): State<OpsState>) -> impl IntoResponse {
    let body = (ops.metrics)();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
