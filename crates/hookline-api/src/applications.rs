//! Applications: the consumers subscribed to a product with a webhook URL.

use crate::error::{json_rejection, ApiError};
use crate::ApiState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hookline_core::{Application, ApplicationId, ApplicationState, AvroFormat, SigningSecret};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApplication {
    name: String,
    /// Name of the product to subscribe to.
    product: String,
    /// Name of an existing plan, such as `free` or `paid`.
    plan: String,
    /// HTTPS URL that receives the webhooks.
    webhook_url: String,
    /// Format of the events of an Avro product. `binary` (the default) sends
    /// the producer's bytes as `application/avro`, and `json` converts each
    /// event to JSON and sends it as `application/json`. Products of other
    /// formats ignore this field.
    #[schema(example = "binary")]
    avro_format: Option<String>,
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
    /// Format of the events of an Avro product: `binary` or `json`.
    avro_format: String,
    /// Reason Hookline disabled the application, such as a 410 Gone or
    /// failures for longer than `delivery.disable_after`. Only the GET of one
    /// application returns it.
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    /// When Hookline disabled the application.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    disabled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

/// Response to a creation, the only response that contains the signing
/// secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApplication {
    #[serde(flatten)]
    application: ApplicationView,
    /// Key that signs every webhook, as `whsec_<base64>`. Store it now,
    /// because no other response returns it.
    secret: String,
}

impl ApplicationView {
    fn new(application: &Application, avro_format: AvroFormat) -> Self {
        Self {
            id: application.id.to_string(),
            name: application.name.clone(),
            product: application.product.clone(),
            plan: application.plan.clone(),
            webhook_url: application.webhook_url.clone(),
            state: application.state.as_str().to_owned(),
            avro_format: avro_format.as_str().to_owned(),
            disabled_reason: None,
            disabled_at: None,
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
    check_plan(&state, &request.plan).await?;
    let url = state
        .address_policy
        .check_url(&request.webhook_url)
        .map_err(|error| ApiError::invalid("webhook_url", error.to_string()))?;
    let avro_format = parse_avro_format(request.avro_format.as_deref())?.unwrap_or_default();
    if state.store.product(&request.product).await?.is_none() {
        return Err(ApiError::invalid(
            "product",
            format!(
                "product {:?} does not exist. Create it with POST /api/v1/products",
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
    state
        .store
        .create_application_with_avro_format(&application, avro_format)
        .await?;
    state.directory.invalidate();
    tracing::info!(application_id = %application.id, product = %application.product, avro_format = avro_format.as_str(), "Application created");
    let created = CreatedApplication {
        application: ApplicationView::new(&application, avro_format),
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
    let ids: Vec<ApplicationId> = applications
        .iter()
        .map(|application| application.id.clone())
        .collect();
    let formats = state.store.avro_formats(&ids).await?;
    let views = applications
        .iter()
        .map(|application| {
            let format = formats.get(&application.id).copied().unwrap_or_default();
            ApplicationView::new(application, format)
        })
        .collect();
    Ok(Json(views))
}

#[utoipa::path(get, path = "/api/v1/applications/{id}", tag = "applications",
    params(("id" = String, Path, description = "Application id, `app_…`")),
    responses((status = 200, body = ApplicationView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ApplicationView>, ApiError> {
    let application = find(&state, &id).await?;
    let mut view = ApplicationView::read(&state, &application).await?;
    if let Some(disablement) = state.store.disablement(&application.id).await? {
        view.disabled_reason = Some(disablement.reason);
        view.disabled_at = Some(disablement.disabled_at);
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateApplication {
    /// Name of an existing plan to move the application to. The new limit
    /// applies from the application's next delivery on.
    plan: Option<String>,
    /// Format of the events of an Avro product, `binary` or `json`. The new
    /// format applies from the next attempt of each delivery, including
    /// deliveries already queued.
    avro_format: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/applications/{id}", request_body = UpdateApplication, tag = "applications",
    params(("id" = String, Path, description = "Application id, `app_…`")),
    responses((status = 200, body = ApplicationView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn update(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateApplication>, JsonRejection>,
) -> Result<Json<ApplicationView>, ApiError> {
    let Json(request) = body.map_err(json_rejection)?;
    let avro_format = parse_avro_format(request.avro_format.as_deref())?;
    if request.plan.is_none() && avro_format.is_none() {
        return Err(ApiError::invalid(
            "plan",
            "send at least one of plan and avro_format",
        ));
    }
    let mut application = find(&state, &id).await?;
    let not_found = || ApiError::not_found(format!("application {id:?} does not exist"));
    if let Some(plan) = request.plan {
        check_plan(&state, &plan).await?;
        if !state
            .store
            .set_application_plan(&application.id, &plan)
            .await?
        {
            return Err(not_found());
        }
        tracing::info!(application_id = %application.id, from = %application.plan, to = %plan, "Application moved to another plan");
        application.plan = plan;
    }
    if let Some(format) = avro_format {
        if !state.store.set_avro_format(&application.id, format).await? {
            return Err(not_found());
        }
        tracing::info!(application_id = %application.id, avro_format = format.as_str(), "Application's Avro format changed");
    }
    state.directory.invalidate();
    Ok(Json(ApplicationView::read(&state, &application).await?))
}

/// Parses an optional `avro_format` field and rejects values other than
/// `binary` and `json` with 422.
fn parse_avro_format(value: Option<&str>) -> Result<Option<AvroFormat>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    AvroFormat::parse(value).map(Some).ok_or_else(|| {
        ApiError::invalid(
            "avro_format",
            format!("avro_format {value:?} is invalid. Use binary or json"),
        )
    })
}

/// Rejects with 422 on the `plan` field unless a plan named `name` exists.
async fn check_plan(state: &ApiState, name: &str) -> Result<(), ApiError> {
    if state.store.plan(name).await?.is_some() {
        return Ok(());
    }
    let known: Vec<String> = state
        .store
        .plans()
        .await?
        .into_iter()
        .map(|plan| plan.name)
        .collect();
    Err(ApiError::invalid(
        "plan",
        format!(
            "plan {name:?} does not exist. Use one of {}, or create it with POST /api/v1/plans",
            known.join(", ")
        ),
    ))
}

impl ApplicationView {
    /// Builds the view of a stored application with its stored Avro format.
    pub(crate) async fn read(
        state: &ApiState,
        application: &Application,
    ) -> Result<Self, ApiError> {
        let formats = state
            .store
            .avro_formats(std::slice::from_ref(&application.id))
            .await?;
        let format = formats.get(&application.id).copied().unwrap_or_default();
        Ok(Self::new(application, format))
    }
}

/// Loads an application by the id in a path, or returns 404.
pub(crate) async fn find(state: &ApiState, id: &str) -> Result<Application, ApiError> {
    let not_found = || ApiError::not_found(format!("application {id:?} does not exist"));
    let id = ApplicationId::parse(id).ok_or_else(not_found)?;
    state.store.application(&id).await?.ok_or_else(not_found)
}
