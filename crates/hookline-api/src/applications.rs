//! Applications: the consumers subscribed to a product with a webhook URL.

use crate::error::{json_rejection, ApiError};
use crate::ApiState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hookline_core::model::KNOWN_PLANS;
use hookline_core::{Application, ApplicationId, ApplicationState, SigningSecret};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApplication {
    name: String,
    /// Name of the product to subscribe to.
    product: String,
    /// `free` or `paid`.
    plan: String,
    /// HTTPS URL that receives the webhooks.
    webhook_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApplicationView {
    id: String,
    name: String,
    product: String,
    plan: String,
    webhook_url: String,
    /// `active` or `disabled`.
    state: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

/// The creation response: the only one that carries the signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApplication {
    #[serde(flatten)]
    application: ApplicationView,
    /// `whsec_<base64>`: the key that signs every webhook; store it now.
    secret: String,
}

impl From<&Application> for ApplicationView {
    fn from(application: &Application) -> Self {
        Self {
            id: application.id.to_string(),
            name: application.name.clone(),
            product: application.product.clone(),
            plan: application.plan.clone(),
            webhook_url: application.webhook_url.clone(),
            state: application.state.as_str().to_owned(),
            created_at: application.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ListQuery {
    /// Only applications of this product.
    product: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/applications", request_body = CreateApplication, tag = "applications",
    responses((status = 201, body = CreatedApplication), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    body: Result<Json<CreateApplication>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedApplication>), ApiError> {
    let Json(request) = body.map_err(json_rejection)?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid(
            "name",
            "name must be 1 to 200 characters",
        ));
    }
    if !KNOWN_PLANS.contains(&request.plan.as_str()) {
        return Err(ApiError::invalid(
            "plan",
            format!(
                "plan {:?} does not exist; use one of: {}",
                request.plan,
                KNOWN_PLANS.join(", ")
            ),
        ));
    }
    let url = state
        .address_policy
        .check_url(&request.webhook_url)
        .map_err(|error| ApiError::invalid("webhook_url", error.to_string()))?;
    if state.store.product(&request.product).await?.is_none() {
        return Err(ApiError::invalid(
            "product",
            format!(
                "product {:?} does not exist; create it with POST /api/v1/products",
                request.product
            ),
        ));
    }

    let application = Application {
        id: ApplicationId::generate(),
        name: name.to_owned(),
        product: request.product,
        plan: request.plan,
        webhook_url: url.to_string(),
        secret: SigningSecret::generate(),
        state: ApplicationState::Active,
        created_at: OffsetDateTime::now_utc(),
    };
    state.store.create_application(&application).await?;
    state.directory.invalidate();
    tracing::info!(application_id = %application.id, product = %application.product, "Application created");
    let created = CreatedApplication {
        application: ApplicationView::from(&application),
        secret: application.secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/applications", tag = "applications", params(ListQuery),
    responses((status = 200, body = [ApplicationView])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ApplicationView>>, ApiError> {
    let applications = state.store.applications(query.product.as_deref()).await?;
    Ok(Json(
        applications.iter().map(ApplicationView::from).collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/applications/{id}", tag = "applications",
    params(("id" = String, Path, description = "Application id, `app_…`")),
    responses((status = 200, body = ApplicationView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ApplicationView>, ApiError> {
    let application = find(&state, &id).await?;
    Ok(Json(ApplicationView::from(&application)))
}

/// Loads an application by the id in a path, or answers 404.
pub(crate) async fn find(state: &ApiState, id: &str) -> Result<Application, ApiError> {
    let missing = || ApiError::not_found(format!("application {id:?} does not exist"));
    let id = ApplicationId::parse(id).ok_or_else(missing)?;
    state.store.application(&id).await?.ok_or_else(missing)
}
