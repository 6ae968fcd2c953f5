//! Enabling an application whose endpoint Hookline disabled, after a 410
//! Gone or a long failure streak.

use crate::applications::{find, ApplicationView};
use crate::error::ApiError;
use crate::ApiState;
use axum::extract::{Path, State};
use axum::Json;
use hookline_core::ApplicationState;
use serde::Serialize;
use utoipa::ToSchema;

/// The enabled application and how many kept deliveries were made due.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnabledApplication {
    #[serde(flatten)]
    application: ApplicationView,
    /// Kept deliveries made due now. Deliveries in flight, and those of a
    /// queue that cannot reschedule tasks (RabbitMQ), are not counted. A
    /// dispatcher enqueues those again within about a second.
    rescheduled_deliveries: u64,
}

#[utoipa::path(post, path = "/api/v1/applications/{id}/enable", tag = "applications",
    params(("id" = String, Path, description = "Application id, `app_…`")),
    responses((status = 200, body = EnabledApplication), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn enable(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<EnabledApplication>, ApiError> {
    let mut application = find(&state, &id).await?;
    if !state.store.enable_application(&application.id).await? {
        return Err(ApiError::not_found(format!(
            "application {id:?} does not exist"
        )));
    }
    state.directory.invalidate();
    // The application is enabled either way. If waking its kept deliveries
    // fails here, a dispatcher still enqueues them when it takes the resumed
    // mark that `enable_application` stored.
    let rescheduled = match state.queue.wake_application(&application.id).await {
        Ok(count) => count,
        Err(error) => {
            tracing::warn!(%error, application_id = %application.id, "Making kept deliveries due failed; a dispatcher enqueues them again");
            0
        }
    };
    tracing::info!(application_id = %application.id, rescheduled, "Application enabled");
    application.state = ApplicationState::Active;
    Ok(Json(EnabledApplication {
        application: ApplicationView::read(&state, &application).await?,
        rescheduled_deliveries: rescheduled,
    }))
}
