//! Delivery log, dead letters and replay.

use crate::applications::find;
use crate::error::ApiError;
use crate::ApiState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hookline_core::store::DeliveryFilter;
use hookline_core::{AttemptResult, DeliveryId, DeliveryRecord, DeliveryState};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptView {
    number: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    started_at: OffsetDateTime,
    duration_ms: u64,
    /// HTTP status the endpoint answered, if it answered.
    status_code: Option<u16>,
    /// Error class (`timeout`, `connect`, `dns`, `blocked_address`, `tls_unknown_issuer` and the
    /// other `tls_*` classes, …) when it did not.
    error_class: Option<String>,
    error: Option<String>,
    response_excerpt: Option<String>,
    response_truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    id: String,
    event_id: String,
    application_id: String,
    product: String,
    webhook_id: String,
    /// `pending`, `delivered` or `dead`.
    state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<OffsetDateTime>,
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
    attempts: Vec<AttemptView>,
    /// Id of the delivery that this one replays; absent unless it is a replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_of: Option<String>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(record: DeliveryRecord) -> Self {
        let attempts = record
            .attempts
            .into_iter()
            .map(|attempt| {
                let (status_code, error_class, error) = match attempt.result {
                    AttemptResult::Response { status } => (Some(status), None, None),
                    AttemptResult::Error { class, message } => (None, Some(class), Some(message)),
                };
                AttemptView {
                    number: attempt.number,
                    started_at: attempt.started_at,
                    duration_ms: attempt.duration_ms,
                    status_code,
                    error_class,
                    error,
                    response_excerpt: attempt.response_excerpt,
                    response_truncated: attempt.response_truncated,
                }
            })
            .collect();
        Self {
            id: record.id.to_string(),
            event_id: record.event_id.to_string(),
            application_id: record.application_id.to_string(),
            product: record.product,
            webhook_id: record.webhook_id.to_string(),
            state: record.state.as_str().to_owned(),
            next_attempt_at: record.next_attempt_at,
            last_error: record.last_error,
            created_at: record.created_at,
            updated_at: record.updated_at,
            attempts,
            replay_of: record.replay_of.map(|id| id.to_string()),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ListQuery {
    /// `pending`, `delivered` or `dead`.
    state: Option<String>,
    /// Page size, 1 to 500 (default 100).
    limit: Option<u32>,
    /// Return deliveries older than this delivery id (next page).
    before: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct DeadLetterQuery {
    /// Page size, 1 to 500 (default 100).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterView {
    #[serde(flatten)]
    delivery: DeliveryView,
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayResponse {
    id: String,
    state: String,
}

fn limit(value: Option<u32>) -> Result<u32, ApiError> {
    match value.unwrap_or(100) {
        limit @ 1..=500 => Ok(limit),
        other => Err(ApiError::invalid(
            "limit",
            format!("limit {other} is out of range; use 1 to 500"),
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/applications/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "Application id"), ListQuery),
    responses((status = 200, body = [DeliveryView]), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let application = find(&state, &id).await?;
    let delivery_state = match query.state.as_deref() {
        None => None,
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| {
            ApiError::invalid(
                "state",
                format!("state {text:?} is invalid; use pending, delivered or dead"),
            )
        })?),
    };
    let before = match query.before.as_deref() {
        None => None,
        Some(text) => Some(DeliveryId::parse(text).ok_or_else(|| {
            ApiError::invalid("before", format!("{text:?} is not a delivery id (dlv_…)"))
        })?),
    };
    let filter = DeliveryFilter {
        state: delivery_state,
        before,
        limit: limit(query.limit)?,
    };
    let records = state.store.deliveries(&application.id, &filter).await?;
    Ok(Json(records.into_iter().map(DeliveryView::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let missing = || ApiError::not_found(format!("delivery {id:?} does not exist"));
    let delivery_id = DeliveryId::parse(&id).ok_or_else(missing)?;
    let record = state
        .store
        .delivery(&delivery_id)
        .await?
        .ok_or_else(missing)?;
    Ok(Json(record.into()))
}

#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "deliveries", params(DeadLetterQuery),
    responses((status = 200, body = [DeadLetterView])))]
pub(crate) async fn dead_letters(
    State(state): State<ApiState>,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    let dead = state.store.dead_letters(limit(query.limit)?).await?;
    let views = dead
        .into_iter()
        .map(|letter| DeadLetterView {
            delivery: letter.delivery.into(),
            reason: letter.reason,
        })
        .collect();
    Ok(Json(views))
}

/// Sends a dead delivery again with a fresh retry schedule, under its own
/// delivery id and `webhook-id`.
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/replay", tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id of the dead letter")),
    responses((status = 202, body = ReplayResponse), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn replay(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ReplayResponse>), ApiError> {
    let missing = || ApiError::not_found(format!("dead letter {id:?} does not exist"));
    let delivery_id = DeliveryId::parse(&id).ok_or_else(missing)?;
    let Some(task) = state.store.revive(&delivery_id).await? else {
        let record = state
            .store
            .delivery(&delivery_id)
            .await?
            .ok_or_else(missing)?;
        return Err(ApiError::conflict(format!(
            "delivery {id} is {}, not dead; only dead letters can be replayed",
            record.state.as_str()
        )));
    };
    state.queue.enqueue(vec![task]).await?;
    tracing::info!(delivery_id = %delivery_id, "Dead letter replayed");
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayResponse {
            id,
            state: "pending".into(),
        }),
    ))
}

/// Sends a delivered or dead delivery's event to the same application again
/// as a new delivery. The replay gets a new delivery id, a new `webhook-id`
/// (so that a consumer deduplicating on `webhook-id` does not drop it) and a
/// full retry schedule. The original delivery and its attempts stay as they
/// are, and the replay's `replay_of` names it.
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/replay", tag = "deliveries",
    params(("id" = String, Path, description = "Id of the delivered or dead delivery to replay")),
    responses((status = 202, description = "The new delivery", body = DeliveryView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn replay_delivery(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    let missing = || ApiError::not_found(format!("delivery {id:?} does not exist"));
    let delivery_id = DeliveryId::parse(&id).ok_or_else(missing)?;
    let Some(task) = state.store.replay(&delivery_id).await? else {
        state
            .store
            .delivery(&delivery_id)
            .await?
            .ok_or_else(missing)?;
        return Err(ApiError::conflict(format!(
            "delivery {id} is pending; replay it once it is delivered or dead"
        )));
    };
    let replay_id = task.delivery_id.clone();
    state.queue.enqueue(vec![task]).await?;
    tracing::info!(delivery_id = %delivery_id, replay_id = %replay_id, "Delivery replayed");
    let record = state
        .store
        .delivery(&replay_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("delivery {replay_id} does not exist")))?;
    Ok((StatusCode::ACCEPTED, Json(record.into())))
}
