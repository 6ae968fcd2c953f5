//! Payload schemas of products: checked when they are set, and replaced
//! with `PUT /api/v1/products/{name}/schema`.

use crate::error::{json_rejection, ApiError};
use crate::products::ProductView;
use crate::ApiState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use hookline_core::formats::CompiledSchema;
use hookline_core::ContentType;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplaceSchema {
    /// The new schema as a JSON object or as text; `null` or absent removes it.
    #[schema(value_type = Option<Object>)]
    schema: Option<serde_json::Value>,
    /// Defaults to true when a schema is given, false otherwise.
    validate: Option<bool>,
}

/// Returns the schema as text after checking that it compiles for
/// `content_type`. A JSON string is taken as the schema text, any other
/// JSON value as the schema document itself.
pub(crate) fn schema_text(
    content_type: ContentType,
    schema: Option<serde_json::Value>,
) -> Result<Option<String>, ApiError> {
    let text = match schema {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(text)) => text,
        Some(document) => document.to_string(),
    };
    CompiledSchema::compile(content_type, &text).map_err(|error| {
        ApiError::invalid(
            "schema",
            format!("the schema is not usable for {content_type} payloads: {error}"),
        )
    })?;
    Ok(Some(text))
}

/// Replaces a product's schema and `validate` flag. Creators use the new
/// schema once their cached product expires (5 s by default).
#[utoipa::path(put, path = "/api/v1/products/{name}/schema", request_body = ReplaceSchema, tag = "products",
    params(("name" = String, Path, description = "Product name")),
    responses((status = 200, body = ProductView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn replace(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<ReplaceSchema>, JsonRejection>,
) -> Result<Json<ProductView>, ApiError> {
    let Json(request) = body.map_err(json_rejection)?;
    let missing = || ApiError::not_found(format!("product {name:?} does not exist"));
    let mut product = state.store.product(&name).await?.ok_or_else(missing)?;
    product.schema = schema_text(product.content_type, request.schema)?;
    product.validate = request.validate.unwrap_or(product.schema.is_some());
    if !state.store.update_product_schema(&product).await? {
        return Err(missing());
    }
    tracing::info!(
        product = %product.name,
        has_schema = product.schema.is_some(),
        validate = product.validate,
        "Product schema replaced"
    );
    Ok(Json(product.into()))
}
