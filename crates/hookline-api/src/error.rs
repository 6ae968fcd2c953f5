//! The API's error type: a status, a machine-readable code, the field at
//! fault and a message that says what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// JSON error body: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable identifier such as `invalid_field` or `not_found`.
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error returned to the caller.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            field: None,
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
        }
    }

    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A backend failure: logged here with its cause chain, reported as 503
    /// without internals so the caller retries.
    pub fn unavailable(error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %chain(error), "Request failed on a backend");
        Self::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a storage backend is unavailable; nothing was changed, retry the request",
        )
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<hookline_core::store::StoreError> for ApiError {
    fn from(error: hookline_core::store::StoreError) -> Self {
        match &error {
            hookline_core::store::StoreError::Conflict { .. } => Self::conflict(error.to_string()),
            hookline_core::store::StoreError::Backend { .. } => Self::unavailable(&error),
        }
    }
}

impl From<hookline_core::queue::QueueError> for ApiError {
    fn from(error: hookline_core::queue::QueueError) -> Self {
        Self::unavailable(&error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Maps a JSON body rejection to an error naming the field serde reported.
pub fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
    let message = rejection.body_text();
    let field = [
        "missing field `",
        "unknown field `",
        "invalid type",
        "unknown variant `",
    ]
    .iter()
    .find_map(|marker| field_after(&message, marker));
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_body",
        message: format!("{message}; send a JSON object as the request body"),
        field,
    }
    .with_default_status(rejection.status())
}

impl ApiError {
    fn with_default_status(mut self, status: StatusCode) -> Self {
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE || status == StatusCode::BAD_REQUEST {
            self.status = status;
        }
        self
    }
}

fn field_after(message: &str, marker: &str) -> Option<String> {
    if !marker.ends_with('`') {
        return None;
    }
    let start = message.find(marker)? + marker.len();
    let rest = &message[start..];
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json for the API")
}
