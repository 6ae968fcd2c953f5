//! Gateway errors and their JSON responses,
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hookline_delivery::gateway_protocol::GatewayErrorBody;
use std::time::Duration;

/// A request the gateway did not carry out.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("missing or invalid bearer token; send Authorization: Bearer <gateway.token>")]
    Unauthorized,
    #[error("invalid attempt request: {0}")]
    InvalidRequest(String),
    #[error("missing header {0}; the proxied form needs both webhook-url and user_key")]
    MissingHeader(&'static str),
    #[error("invalid header {name}: {reason}")]
    InvalidHeader { name: &'static str, reason: String },
    #[error("application {0} does not exist")]
    ApplicationNotFound(String),
    #[error("application {0} is disabled")]
    ApplicationDisabled(String),
    #[error("{reason}; retry after {} s", retry_after.as_secs())]
    RateLimited {
        retry_after: Duration,
        reason: String,
    },
    #[error("subscription directory failed: {0}; retry later")]
    DirectoryUnavailable(String),
    #[error("{0}; nothing was sent, retry later")]
    LimiterUnavailable(String),
    #[error("request to {url} timed out")]
    UpstreamTimeout { url: String },
    #[error("request to {url} failed: {message}")]
    UpstreamFailed { url: String, message: String },
}

/// Seconds a dispatcher waits after a directory or limiter failure.
const BACKEND_RETRY_SECS: u64 = 5;

impl GatewayError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) | Self::MissingHeader(_) | Self::InvalidHeader { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::ApplicationNotFound(_) => StatusCode::NOT_FOUND,
            Self::ApplicationDisabled(_) => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DirectoryUnavailable(_) | Self::LimiterUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::InvalidRequest(_) => "invalid_request",
            Self::MissingHeader(_) => "missing_header",
            Self::InvalidHeader { .. } => "invalid_header",
            Self::ApplicationNotFound(_) => "application_not_found",
            Self::ApplicationDisabled(_) => "application_disabled",
            Self::RateLimited { .. } => "rate_limited",
            Self::DirectoryUnavailable(_) => "directory_unavailable",
            Self::LimiterUnavailable(_) => "limiter_unavailable",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamFailed { .. } => "upstream_failed",
        }
    }

    /// `Retry-After` in whole seconds, rounded up so a client never asks
    /// again before the window has room.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => {
                let whole = retry_after.as_secs();
                Some(if retry_after.subsec_nanos() > 0 {
                    whole + 1
                } else {
                    whole.max(1)
                })
            }
            Self::DirectoryUnavailable(_) | Self::LimiterUnavailable(_) => Some(BACKEND_RETRY_SECS),
            _ => None,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = GatewayErrorBody::new(self.code(), self.to_string());
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(seconds) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        let limited = |millis| GatewayError::RateLimited {
            retry_after: Duration::from_millis(millis),
            reason: String::new(),
        };
        assert_eq!(limited(1500).retry_after_secs(), Some(2));
        assert_eq!(limited(2000).retry_after_secs(), Some(2));
        assert_eq!(limited(0).retry_after_secs(), Some(1));
    }

    #[test]
    fn missing_header_names_it() {
        let error = GatewayError::MissingHeader("user_key");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert!(error.to_string().starts_with("missing header user_key"));
    }
}
