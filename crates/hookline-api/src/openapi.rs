//! The OpenAPI document, generated from the handlers and types.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Hookline admin and ingest API", description = "Event APIs, applications, plans, ingest, delivery log, dead letters and usage analytics."),
    paths(
        crate::products::create, crate::products::list, crate::products::show,
        crate::product_schema::replace, crate::rejected::list, crate::rejected::replay,
        crate::applications::create, crate::applications::list, crate::applications::show,
        crate::applications::update, crate::endpoint_state::enable,
        crate::secret_rotation::rotate,
        crate::plans::create, crate::plans::list, crate::plans::update,
        crate::analytics::usage, crate::analytics::over_limit,
        crate::events::ingest,
        crate::deliveries::list, crate::deliveries::show, crate::deliveries::dead_letters, crate::deliveries::replay,
        crate::deliveries::replay_delivery,
        crate::health::healthz, crate::health::readyz, crate::health::metrics,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("api.admin_token"))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "This document")))]
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
