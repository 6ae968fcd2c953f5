//! Bearer-token authentication of the admin and ingest API.

use crate::error::ApiError;
use crate::ApiState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// The route, under `/api/v1`, that `api.ingest_token` may call with POST.
const INGEST_ROUTE: &str = "/products/{name}/events";

/// Rejects requests without `Authorization: Bearer <api.admin_token>`, except
/// that `api.ingest_token`, when set, is accepted for ingest alone. The
/// comparisons take the same time wherever the tokens differ.
pub(crate) async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let is_ingest_token = |token: &str| {
        state
            .ingest_token
            .as_deref()
            .is_some_and(|ingest| constant_time_eq(token.as_bytes(), ingest.as_bytes()))
    };
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => {
            Ok(next.run(request).await)
        }
        Some(token) if is_ingest_token(token) => {
            if is_ingest(&request) {
                Ok(next.run(request).await)
            } else {
                Err(ApiError::with_status(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "api.ingest_token allows only POST /api/v1/products/{name}/events; use api.admin_token for this route",
                ))
            }
        }
        Some(_) => Err(ApiError::with_status(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token matches neither api.admin_token nor api.ingest_token",
        )),
        None => Err(ApiError::with_status(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing Authorization: Bearer <token> header; use the value of api.admin_token",
        )),
    }
}

/// Returns whether the request is a POST to the ingest route.
fn is_ingest(request: &Request) -> bool {
    request.method() == Method::POST
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|path| path.as_str().ends_with(INGEST_ROUTE))
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
