//! HTTP ingest: `POST /api/v1/products/{name}/events`.

use crate::error::ApiError;
use crate::ApiState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use hookline_core::trace::{self, TraceParent};
use hookline_core::EventSource;
use hookline_creator::{Accepted, IncomingEvent, IngestError, Rejected};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestResponse {
    /// Event id; for a duplicate, the id of the event first accepted with the key.
    id: String,
    duplicate: bool,
    /// Deliveries created, one per active application (absent for duplicates).
    #[serde(skip_serializing_if = "Option::is_none")]
    deliveries: Option<usize>,
}

/// Accepts one event. The body is the payload, kept byte for byte.
#[utoipa::path(post, path = "/api/v1/products/{name}/events", tag = "events",
    params(
        ("name" = String, Path, description = "Product name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Deduplication key; a second event with the same key is not delivered again"),
    ),
    request_body(content = String, description = "Event payload in the product's format", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted and enqueued", body = IngestResponse),
        (status = 200, description = "Duplicate of an accepted event", body = IngestResponse),
        (status = 404, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody),
        (status = 415, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub(crate) async fn ingest(
    State(state): State<ApiState>,
    Path(product): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    let span = request_span(&headers, &product);
    let result = accept(state, product, headers, body, span.clone()).await;
    let status = match &result {
        Ok((status, _)) => *status,
        Err(error) => error.status,
    };
    span.record("http.response.status_code", status.as_u16());
    result
}

/// Opens the span of one ingest request. It continues the caller's trace
/// when the request has a valid `traceparent` header.
fn request_span(headers: &HeaderMap, product: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: trace::TARGET,
        "POST /api/v1/products/{name}/events",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/api/v1/products/{name}/events",
        hookline.product = product,
        http.response.status_code = tracing::field::Empty,
    );
    if span.is_disabled() || !trace::export_enabled() {
        return span;
    }
    let parent = headers
        .get(trace::TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(TraceParent::parse);
    if let Some(parent) = parent {
        parent.adopt_into(&span);
    }
    span
}

async fn accept(
    state: ApiState,
    product: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    span: tracing::Span,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    let payload = body.map_err(|rejection| too_large(rejection, state.max_payload_size))?;
    let idempotency_key = header_text(&headers, "idempotency-key")?;
    if idempotency_key.as_deref() == Some("") {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "the Idempotency-Key header is empty; omit it or send a non-empty key",
        ));
    }
    let content_type = header_text(&headers, header::CONTENT_TYPE.as_str())?;
    let incoming = IncomingEvent {
        product,
        idempotency_key,
        content_type,
        payload,
        source: EventSource::Http,
        span,
    };
    match state.ingest.submit(incoming).await {
        Ok(Accepted::Created {
            event_id,
            deliveries,
        }) => {
            let response = IngestResponse {
                id: event_id.to_string(),
                duplicate: false,
                deliveries: Some(deliveries),
            };
            Ok((StatusCode::ACCEPTED, Json(response)))
        }
        Ok(Accepted::Duplicate { event_id }) => {
            let response = IngestResponse {
                id: event_id.to_string(),
                duplicate: true,
                deliveries: None,
            };
            Ok((StatusCode::OK, Json(response)))
        }
        Err(IngestError::Rejected(rejected)) => Err(rejection_error(rejected)),
        Err(IngestError::Unavailable(message)) => Err(ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            message,
        )),
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.to_owned()))
            .map_err(|_| {
                ApiError::invalid(name, format!("the {name} header is not visible ASCII text"))
            }),
    }
}

fn too_large(rejection: BytesRejection, max: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the event body is larger than {max} bytes; raise ingest.max_payload_size or send a smaller event"),
        );
    }
    ApiError::with_status(rejection.status(), "invalid_body", rejection.body_text())
}

pub(crate) fn rejection_error(rejected: Rejected) -> ApiError {
    let message = rejected.to_string();
    match rejected {
        Rejected::UnknownProduct(_) => ApiError::not_found(message),
        Rejected::ContentTypeMismatch { .. } => ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message,
            field: Some("Content-Type".into()),
        },
        Rejected::TooLarge { .. } => {
            ApiError::with_status(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
        }
        Rejected::KeyTooLong(_) => ApiError::invalid("Idempotency-Key", message),
        Rejected::InvalidPayload(_) | Rejected::NoSchemaRegistry { .. } => {
            ApiError::invalid("body", message)
        }
        Rejected::InvalidSchema { .. } => {
            ApiError::with_status(StatusCode::CONFLICT, "invalid_product_schema", message)
        }
    }
}
