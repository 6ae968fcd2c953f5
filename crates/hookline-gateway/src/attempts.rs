//! `POST /v1/attempts`: one delivery attempt on behalf of a dispatcher.
//!
//! The response is 200 with an [`AttemptResponse`] whenever the attempt was
//! sent, whatever the consumer returned. Every other status means nothing
//! was sent: 401 (token), 400 (request), 404 or 409 (application missing or
//! disabled), 429 with `Retry-After` (rate limit), 503 (directory or
//! limiter failure).

use crate::auth::authorize;
use crate::{spans, Gateway, GatewayError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use hookline_core::directory::Endpoint;
use hookline_core::queue::DeliveryTask;
use hookline_delivery::gateway_protocol::{AttemptRequest, AttemptResponse};
use std::sync::Arc;
use tracing::Instrument;

/// Handles one attempt request.
pub async fn handle(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AttemptResponse>, GatewayError> {
    let span = spans::attempt(&headers);
    let result = attempt(&gateway, &headers, &body)
        .instrument(span.clone())
        .await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(error) => error.status(),
    };
    spans::record_status(&span, status);
    let outcome = match &result {
        Ok(_) => "sent",
        Err(GatewayError::RateLimited { .. }) => "rate_limited",
        Err(_) => "rejected",
    };
    metrics::counter!("hookline_gateway_attempts_total", "outcome" => outcome).increment(1);
    result.map(Json)
}

async fn attempt(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<AttemptResponse, GatewayError> {
    authorize(headers, &gateway.settings.token)?;
    let request: AttemptRequest = serde_json::from_slice(body)
        .map_err(|error| GatewayError::InvalidRequest(error.to_string()))?;
    let task = request.task();
    let span = tracing::Span::current();
    span.record("hookline.delivery_id", task.delivery_id.as_str());
    span.record("hookline.application_id", task.application_id.as_str());
    span.record("hookline.attempt", task.attempts_made + 1);
    let endpoint = lookup(gateway, task).await?;
    if let Some(limiter) = &gateway.limiter {
        let period_override = gateway.period_override;
        crate::limit::admit(limiter.as_ref(), task, &endpoint, period_override).await?;
    }

    let report = gateway.egress.attempt(task, &endpoint).await;
    if let hookline_core::AttemptResult::Response { status } = report.result {
        span.record("hookline.consumer_status", status);
    }
    tracing::debug!(
        delivery_id = %task.delivery_id,
        application_id = %task.application_id,
        result = ?report.result,
        "Gateway attempt sent"
    );
    Ok(AttemptResponse::from(&report))
}

/// Looks the endpoint up in the gateway's own directory, so that secrets
/// never travel from the dispatcher.
async fn lookup(gateway: &Gateway, task: &DeliveryTask) -> Result<Arc<Endpoint>, GatewayError> {
    let application = &task.application_id;
    let endpoint = match gateway.directory.endpoint(application).await {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return Err(GatewayError::ApplicationNotFound(application.to_string())),
        Err(error) => {
            tracing::warn!(%error, delivery_id = %task.delivery_id, %application, "Gateway endpoint lookup failed");
            return Err(GatewayError::DirectoryUnavailable(error.to_string()));
        }
    };
    if !endpoint.active {
        return Err(GatewayError::ApplicationDisabled(application.to_string()));
    }
    Ok(endpoint)
}
