//! The span of one delivery attempt. When the task carries the context of
//! the event's span through the queue, that span becomes the parent, so the
//! attempt joins the trace that began at the Kafka record or the ingest
//! request.

use crate::egress::EgressOutcome;
use hookline_core::queue::DeliveryTask;
use hookline_core::trace;
use hookline_core::AttemptResult;
use tracing::field::Empty;

/// Opens the span of the next attempt of `task`.
pub(super) fn open(task: &DeliveryTask) -> tracing::Span {
    let span = tracing::info_span!(
        target: trace::TARGET,
        "webhook.attempt",
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = "POST",
        http.response.status_code = Empty,
        error.type = Empty,
        hookline.delivery_id = %task.delivery_id,
        hookline.application_id = %task.application_id,
        hookline.event_id = %task.event_id,
        hookline.product = %task.product,
        hookline.attempt = task.attempts_made + 1,
        hookline.duration_ms = Empty,
        hookline.sent = Empty,
    );
    if let Some(parent) = &task.traceparent {
        parent.adopt_into(&span);
    }
    span
}

/// Records the outcome of the attempt: the response status and duration,
/// the error class, or the reason that nothing was sent.
pub(super) fn record(span: &tracing::Span, outcome: &EgressOutcome) {
    if span.is_disabled() {
        return;
    }
    let report = match outcome {
        EgressOutcome::Attempted(report) => report,
        EgressOutcome::NotSent(not_sent) => {
            span.record("hookline.sent", false);
            span.record("error.type", not_sent.class);
            return;
        }
    };
    span.record("hookline.sent", true);
    let duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
    span.record("hookline.duration_ms", duration_ms);
    match &report.result {
        AttemptResult::Response { status } => {
            span.record("http.response.status_code", *status);
            if !report.result.is_success() {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", status.to_string());
            }
        }
        AttemptResult::Error { class, .. } => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", class.as_str());
        }
    }
}
