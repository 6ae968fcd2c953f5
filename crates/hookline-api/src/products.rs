//! Event APIs (products): create, list, show. Their payload schemas are
//! replaced in [`crate::product_schema`].

use crate::error::{json_rejection, ApiError};
use crate::product_schema::schema_text;
use crate::ApiState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hookline_core::{ContentType, Product};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProduct {
    /// Lowercase name such as `order-created`: letters, digits, `-`, `_`, `.`.
    name: String,
    /// Kafka topic that feeds the product; defaults to the name.
    topic: Option<String>,
    /// `application/json` (default), `application/xml` or `application/avro`.
    content_type: Option<String>,
    /// JSON Schema (JSON products) or Avro schema (Avro products), as a JSON
    /// object or as text. XML products take none.
    #[schema(value_type = Option<Object>)]
    schema: Option<serde_json::Value>,
    /// Validate (JSON) or decode (Avro) every payload on ingest. Defaults
    /// to true when a schema is given, false otherwise.
    validate: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProductView {
    name: String,
    topic: String,
    content_type: String,
    /// The schema text, if any.
    schema: Option<String>,
    validate: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<Product> for ProductView {
    fn from(product: Product) -> Self {
        Self {
            name: product.name,
            topic: product.topic,
            content_type: product.content_type.media_type().to_owned(),
            schema: product.schema,
            validate: product.validate,
            created_at: product.created_at,
        }
    }
}

/// Valid product names and topics: 1 to 128 of `[A-Za-z0-9._-]`, as Kafka allows for topics.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[utoipa::path(post, path = "/api/v1/products", request_body = CreateProduct, tag = "products",
    responses((status = 201, body = ProductView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    body: Result<Json<CreateProduct>, JsonRejection>,
) -> Result<(StatusCode, Json<ProductView>), ApiError> {
    let Json(request) = body.map_err(json_rejection)?;
    if !is_valid_name(&request.name) {
        return Err(ApiError::invalid(
            "name",
            format!(
                "product name {:?} is invalid; use 1 to 128 letters, digits, '.', '_' or '-'",
                request.name
            ),
        ));
    }
    let topic = request.topic.unwrap_or_else(|| request.name.clone());
    if !is_valid_name(&topic) {
        return Err(ApiError::invalid(
            "topic",
            format!("topic {topic:?} is invalid; use 1 to 128 letters, digits, '.', '_' or '-'"),
        ));
    }
    let content_type = match request.content_type.as_deref() {
        None => ContentType::Json,
        Some(given) => ContentType::parse(given).ok_or_else(|| {
            ApiError::invalid("content_type", format!("content type {given:?} is not supported; use application/json, application/xml or application/avro"))
        })?,
    };
    let schema = schema_text(content_type, request.schema)?;
    let product = Product {
        name: request.name,
        topic,
        content_type,
        validate: request.validate.unwrap_or(schema.is_some()),
        schema,
        created_at: OffsetDateTime::now_utc(),
    };
    state.store.create_product(&product).await?;
    tracing::info!(product = %product.name, topic = %product.topic, "Product created");
    Ok((StatusCode::CREATED, Json(product.into())))
}

#[utoipa::path(get, path = "/api/v1/products", tag = "products", responses((status = 200, body = [ProductView])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
) -> Result<Json<Vec<ProductView>>, ApiError> {
    let products = state.store.products().await?;
    Ok(Json(products.into_iter().map(ProductView::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/products/{name}", tag = "products",
    params(("name" = String, Path, description = "Product name")),
    responses((status = 200, body = ProductView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn show(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let product = state.store.product(&name).await?;
    let product =
        product.ok_or_else(|| ApiError::not_found(format!("product {name:?} does not exist")))?;
    Ok(Json(product.into()))
}
