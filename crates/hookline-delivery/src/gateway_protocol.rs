//! The wire format between a dispatcher and the egress gateway
//! (`POST /v1/attempts`).
//!
//! The request carries the delivery task, which contains ids and the payload
//! but never a secret: the gateway looks the endpoint and its secrets up in
//! its own directory. The response carries the consumer's status, the
//! duration and the start of the response body, as [`AttemptReport`] holds
//! them.

use crate::egress::AttemptReport;
use hookline_core::queue::DeliveryTask;
use hookline_core::AttemptResult;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// Path of the attempt endpoint on the gateway.
pub const ATTEMPTS_PATH: &str = "/v1/attempts";

/// One attempt that a dispatcher requests from the gateway. Versioned and
/// tagged like queue messages, so dispatchers and gateways of adjacent
/// releases understand each other during a rolling upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum AttemptRequest {
    #[serde(rename = "1")]
    V1(DeliveryTask),
}

impl AttemptRequest {
    /// Returns the task of any version.
    pub fn task(&self) -> &DeliveryTask {
        match self {
            Self::V1(task) => task,
        }
    }
}

/// The outcome of an attempt the gateway made, sent with status 200 whatever
/// the consumer returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptResponse {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    pub result: AttemptResult,
    pub response_excerpt: Option<String>,
    pub response_truncated: bool,
    /// `Retry-After` in seconds of the consumer's 429 or 503 response.
    pub retry_after_secs: Option<u64>,
}

impl From<&AttemptReport> for AttemptResponse {
    fn from(report: &AttemptReport) -> Self {
        Self {
            started_at: report.started_at,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            result: report.result.clone(),
            response_excerpt: report.response_excerpt.clone(),
            response_truncated: report.response_truncated,
            retry_after_secs: report.retry_after.map(|wait| wait.as_secs()),
        }
    }
}

impl From<AttemptResponse> for AttemptReport {
    fn from(response: AttemptResponse) -> Self {
        Self {
            started_at: response.started_at,
            duration: Duration::from_millis(response.duration_ms),
            result: response.result,
            response_excerpt: response.response_excerpt,
            response_truncated: response.response_truncated,
            retry_after: response.retry_after_secs.map(Duration::from_secs),
        }
    }
}

/// The body of every gateway response other than 200:
/// `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayErrorBody {
    pub error: GatewayErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayErrorDetail {
    /// A stable, machine-readable code such as `rate_limited`.
    pub code: String,
    pub message: String,
}

impl GatewayErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: GatewayErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hookline_core::{ApplicationId, ContentType, DeliveryId, EventId, WebhookId};

    #[test]
    fn request_is_tagged_and_carries_no_secret() {
        let task = DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            application_id: ApplicationId::generate(),
            product: "order-created".into(),
            webhook_id: WebhookId::derive("order-created", "k"),
            idempotency_key: "k".into(),
            content_type: ContentType::Json,
            payload: Bytes::from_static(b"{}"),
            attempts_made: 2,
            traceparent: None,
        };
        let json = serde_json::to_value(AttemptRequest::V1(task.clone())).unwrap();
        assert_eq!(json["version"], "1");
        assert_eq!(json["payload"], "e30=");
        assert!(json.get("secret").is_none());
        let back: AttemptRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.task(), &task);
    }

    #[test]
    fn response_round_trips_a_report() {
        let report = AttemptReport {
            started_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            duration: Duration::from_millis(42),
            result: AttemptResult::Response { status: 503 },
            response_excerpt: Some("busy".into()),
            response_truncated: false,
            retry_after: Some(Duration::from_secs(30)),
        };
        let wire = serde_json::to_string(&AttemptResponse::from(&report)).unwrap();
        let back: AttemptReport = serde_json::from_str::<AttemptResponse>(&wire)
            .unwrap()
            .into();
        assert_eq!(back.started_at, report.started_at);
        assert_eq!(back.duration, report.duration);
        assert_eq!(back.result, report.result);
        assert_eq!(back.response_excerpt, report.response_excerpt);
        assert_eq!(back.retry_after, report.retry_after);
    }
}
