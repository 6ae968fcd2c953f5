//! A product's rejected records (the records that failed its checks) and
//! their replay through the creator once the schema or the data is fixed.

use crate::error::ApiError;
use crate::events::rejection_error;
use crate::ApiState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hookline_core::store::{RejectionFilter, StoredRejection};
use hookline_core::EventSource;
use hookline_creator::{Accepted, IncomingEvent, IngestError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct RejectedQuery {
    /// Also list records that were replayed (default false).
    include_replayed: Option<bool>,
    /// Only records with a smaller id, for the next page.
    before: Option<i64>,
    /// Maximum records returned, 1 to 1000 (default 100).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RejectedView {
    id: i64,
    product: Option<String>,
    /// The reason the record did not become an event.
    reason: String,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    idempotency_key: Option<String>,
    /// The record's value, base64-encoded; absent for a tombstone.
    payload_base64: Option<String>,
    payload_size: Option<usize>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    replayed_at: Option<OffsetDateTime>,
    /// The event that the replay created or found as a duplicate.
    replayed_event_id: Option<String>,
}

impl From<StoredRejection> for RejectedView {
    fn from(stored: StoredRejection) -> Self {
        let record = stored.record;
        Self {
            id: stored.id,
            product: record.product,
            reason: record.reason,
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            idempotency_key: record.idempotency_key,
            payload_size: record.payload.as_ref().map(|payload| payload.len()),
            payload_base64: record.payload.map(|payload| STANDARD.encode(payload)),
            received_at: record.received_at,
            replayed_at: stored.replayed_at,
            replayed_event_id: stored.replayed_event.map(|id| id.to_string()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayedView {
    id: i64,
    event_id: String,
    /// True when an event with the record's idempotency key existed already.
    duplicate: bool,
}

#[utoipa::path(get, path = "/api/v1/products/{name}/rejected", tag = "products",
    params(("name" = String, Path, description = "Product name"), RejectedQuery),
    responses((status = 200, body = [RejectedView]), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<RejectedQuery>,
) -> Result<Json<Vec<RejectedView>>, ApiError> {
    if state.store.product(&name).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "product {name:?} does not exist"
        )));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit {limit} is out of range; use 1 to {MAX_LIMIT}"),
        ));
    }
    let filter = RejectionFilter {
        include_replayed: query.include_replayed.unwrap_or(false),
        before: query.before,
        limit,
    };
    let rejected = state.store.rejections(&name, &filter).await?;
    Ok(Json(rejected.into_iter().map(RejectedView::from).collect()))
}

/// Submits a rejected record's bytes through the creator again, with the
/// record's idempotency key, and marks the record replayed on success.
/// When the creator rejects it again, the record stays as it is and the
/// response gives the new reason.
#[utoipa::path(post, path = "/api/v1/products/{name}/rejected/{id}/replay", tag = "products",
    params(("name" = String, Path, description = "Product name"), ("id" = i64, Path, description = "Rejected record id")),
    responses(
        (status = 202, description = "Accepted as an event", body = ReplayedView),
        (status = 200, description = "An event with the record's key existed", body = ReplayedView),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub(crate) async fn replay(
    State(state): State<ApiState>,
    Path((name, id)): Path<(String, i64)>,
) -> Result<(StatusCode, Json<ReplayedView>), ApiError> {
    let stored = state.store.rejection(id).await?;
    let Some(stored) = stored.filter(|s| s.record.product.as_deref() == Some(name.as_str())) else {
        return Err(ApiError::not_found(format!(
            "product {name:?} has no rejected record {id}"
        )));
    };
    if let Some(event) = &stored.replayed_event {
        return Err(ApiError::conflict(format!(
            "rejected record {id} was already replayed as event {event}"
        )));
    }

    let incoming = replay_event(&name, &stored)?;
    let (event_id, duplicate) = match state.ingest.submit(incoming).await {
        Ok(Accepted::Created { event_id, .. }) => (event_id, false),
        Ok(Accepted::Duplicate { event_id }) => (event_id, true),
        Err(IngestError::Rejected(rejected)) => return Err(rejection_error(rejected)),
        Err(IngestError::Unavailable(message)) => {
            return Err(ApiError::with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                message,
            ))
        }
    };

    // A concurrent replay of the same record submits the same key, so it
    // finds this event as a duplicate; whichever marks first wins.
    state.store.mark_replayed(id, &event_id).await?;
    tracing::info!(product = %name, rejected_id = id, event_id = %event_id, duplicate, "Rejected record replayed");

    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let view = ReplayedView {
        id,
        event_id: event_id.to_string(),
        duplicate,
    };
    Ok((status, Json(view)))
}

/// Builds the event that a replay submits: the stored bytes, the stored
/// key (or one derived from the record id), and the Kafka position.
fn replay_event(product: &str, stored: &StoredRejection) -> Result<IncomingEvent, ApiError> {
    let record = &stored.record;
    let Some(payload) = record.payload.clone() else {
        return Err(ApiError::conflict(format!(
            "rejected record {} has no payload (a tombstone), so there is nothing to replay",
            stored.id
        )));
    };
    let source = match (&record.topic, record.partition, record.offset) {
        (Some(topic), Some(partition), Some(offset)) => EventSource::Kafka {
            topic: topic.clone(),
            partition,
            offset,
        },
        _ => EventSource::Http,
    };
    let key = record
        .idempotency_key
        .clone()
        .unwrap_or_else(|| format!("rejected/{}", stored.id));
    Ok(IncomingEvent {
        product: product.to_owned(),
        idempotency_key: Some(key),
        content_type: None,
        payload,
        source,
        span: tracing::Span::none(),
    })
}
