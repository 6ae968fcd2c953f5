//! Liveness and readiness probes.

use crate::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// Reports that the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Reports whether the state store and the delivery queue respond.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready"), (status = 503, description = "A backend is unavailable")))]
pub(crate) async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let store = state.store.ping().await;
    let queue = state.queue.depth().await;
    match (store, queue) {
        (Ok(()), Ok(depth)) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "queue": depth})),
        ),
        (store, queue) => {
            let store_error = store.err().map(|error| error.to_string());
            let queue_error = queue.err().map(|error| error.to_string());
            tracing::warn!(?store_error, ?queue_error, "Readiness check failed");
            let body = json!({"status": "unavailable", "store_error": store_error, "queue_error": queue_error});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}
