//! Rotation of an application's signing secret with an overlap, during
//! which deliveries carry signatures from both the new and the old secret.

use crate::applications::find;
use crate::error::ApiError;
use crate::ApiState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hookline_core::SigningSecret;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// How long the old secret keeps signing when the request names no overlap.
pub(crate) const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest accepted overlap: 30 days.
const MAX_OVERLAP: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The optional request body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateSecret {
    /// How long the old secret keeps signing next to the new one, such as
    /// `24h` or `90m`. The default is `24h` and the maximum 30 days. `0s`
    /// drops the old secret at once.
    #[schema(example = "24h")]
    overlap: Option<String>,
}

/// The rotation response: the only one that carries the new secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    id: String,
    /// `whsec_<base64>`: the new signing secret; store it now.
    secret: String,
    /// Until when deliveries are also signed with the old secret.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    previous_secret_expires_at: OffsetDateTime,
}

/// Generates a new signing secret for the application. Until
/// `previous_secret_expires_at`, every delivery carries one `v1` signature
/// per secret, so the consumer can switch to the new secret without
/// rejecting a delivery. A second rotation within the overlap drops the
/// oldest secret at once.
///
/// NOTE: with `directory.kind = "threescale"`, deliveries are signed with
/// the secret read from 3scale, so a rotation here does not change them.
#[utoipa::path(post, path = "/api/v1/applications/{id}/secret/rotate", tag = "applications",
    params(("id" = String, Path, description = "Application id, `app_…`")),
    request_body(content = Option<RotateSecret>, description = "Optional; an empty body uses the default overlap"),
    responses((status = 200, body = RotatedSecret), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn rotate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RotatedSecret>, ApiError> {
    let request = parse_body(&body)?;
    let overlap = parse_overlap(request.overlap.as_deref())?;
    let application = find(&state, &id).await?;

    let secret = SigningSecret::generate();
    let now = OffsetDateTime::now_utc();
    let previous_expires_at = now + overlap;
    if !state
        .portal
        .rotate_secret(&application.id, &secret, previous_expires_at)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "application {id:?} does not exist"
        )));
    }
    state.directory.invalidate();
    tracing::info!(
        application_id = %application.id,
        overlap = %humantime::format_duration(overlap),
        "Signing secret rotated"
    );
    Ok(Json(RotatedSecret {
        id: application.id.to_string(),
        secret: secret.expose().to_owned(),
        previous_secret_expires_at: previous_expires_at,
    }))
}

/// Reads the body as [`RotateSecret`]. An empty body means the defaults.
fn parse_body(body: &[u8]) -> Result<RotateSecret, ApiError> {
    if body.trim_ascii().is_empty() {
        return Ok(RotateSecret::default());
    }
    serde_json::from_slice(body).map_err(|error| {
        ApiError::with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("{error}; send no body, or a JSON object such as {{\"overlap\": \"24h\"}}"),
        )
    })
}

fn parse_overlap(value: Option<&str>) -> Result<Duration, ApiError> {
    let Some(value) = value else {
        return Ok(DEFAULT_OVERLAP);
    };
    let overlap = humantime::parse_duration(value.trim()).map_err(|error| {
        ApiError::invalid(
            "overlap",
            format!(
                "invalid overlap {value:?}: {error}; use a duration such as \"24h\" or \"90m\""
            ),
        )
    })?;
    if overlap > MAX_OVERLAP {
        return Err(ApiError::invalid(
            "overlap",
            format!("overlap {value:?} is longer than the maximum of 30 days"),
        ));
    }
    Ok(overlap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_defaults_to_a_day() {
        assert_eq!(parse_overlap(None).unwrap(), DEFAULT_OVERLAP);
    }

    #[test]
    fn overlap_parses_humantime() {
        assert_eq!(
            parse_overlap(Some("90m")).unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_overlap(Some("0s")).unwrap(), Duration::ZERO);
    }

    #[test]
    fn overlap_rejects_invalid_and_too_long() {
        let invalid = parse_overlap(Some("soon")).unwrap_err();
        assert_eq!(invalid.field.as_deref(), Some("overlap"));
        let too_long = parse_overlap(Some("31days")).unwrap_err();
        assert_eq!(too_long.field.as_deref(), Some("overlap"));
        assert!(too_long.message.contains("30 days"), "{}", too_long.message);
    }

    #[test]
    fn empty_body_means_defaults() {
        assert!(parse_body(b"").unwrap().overlap.is_none());
        assert!(parse_body(b" \n").unwrap().overlap.is_none());
        let parsed = parse_body(br#"{"overlap": "1h"}"#).unwrap();
        assert_eq!(parsed.overlap.as_deref(), Some("1h"));
    }

    #[test]
    fn unknown_field_is_rejected() {
        let error = parse_body(br#"{"overlap_hours": 1}"#).unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.message.contains("overlap_hours"), "{}", error.message);
    }
}
