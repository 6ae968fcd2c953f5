//! Spans of gateway requests. Each span continues the caller's trace when
//! trace export is on and the request has a valid `traceparent` header. The
//! dispatcher sends the context of its attempt span with every
//! `POST /v1/attempts`.

use axum::http::{HeaderMap, Method, StatusCode};
use hookline_core::trace::{self, TraceParent};
use tracing::field::Empty;

/// Opens the span of one `POST /v1/attempts` request.
pub(crate) fn attempt(headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        target: trace::TARGET,
        "gateway.attempt",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = "POST",
        http.route = hookline_delivery::gateway_protocol::ATTEMPTS_PATH,
        http.response.status_code = Empty,
        hookline.delivery_id = Empty,
        hookline.application_id = Empty,
        hookline.attempt = Empty,
        hookline.consumer_status = Empty,
    );
    continue_caller_trace(&span, headers);
    span
}

/// Opens the span of one proxied request.
pub(crate) fn proxy(method: &Method, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        target: trace::TARGET,
        "gateway.proxy",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.response.status_code = Empty,
    );
    continue_caller_trace(&span, headers);
    span
}

/// Records the status code of the gateway's response and marks the span as
/// an error for a 5xx status.
pub(crate) fn record_status(span: &tracing::Span, status: StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

fn continue_caller_trace(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() || !trace::export_enabled() {
        return;
    }
    let parent = headers
        .get(trace::TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(TraceParent::parse);
    if let Some(parent) = parent {
        parent.adopt_into(span);
    }
}
