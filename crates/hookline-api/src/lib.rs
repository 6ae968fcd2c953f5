//! The admin and ingest HTTP API (axum, JSON).
//!
//! Every route under `/api/v1` requires `Authorization: Bearer <api.admin_token>`;
//! ingest also accepts `api.ingest_token` when it is set.
//! `/healthz`, `/readyz` and `/openapi.json` are open. Errors are JSON
//! objects that name the invalid field and the fix ([`error::ApiError`]).

mod analytics;
mod applications;
mod auth;
mod deliveries;
mod endpoint_state;
pub mod error;
mod events;
pub mod health;
mod openapi;
mod plans;
mod product_schema;
mod products;
mod rejected;
mod secret_rotation;

use axum::routing::{get, post, put};
use axum::Router;
use hookline_core::directory::Directory;
use hookline_core::portal::PortalStore;
use hookline_core::queue::DeliveryQueue;
use hookline_core::store::Store;
use hookline_core::webhook_url::AddressPolicy;
use hookline_creator::{Creator, IngestBatcher};
use std::sync::Arc;

pub use health::{ops_router, MetricsRenderer, OpsState, ReadinessProbe};
pub use openapi::ApiDoc;

/// State shared by the handlers.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// Portal records and signing-secret rotation.
    pub portal: Arc<dyn PortalStore>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub directory: Arc<dyn Directory>,
    pub creator: Arc<Creator>,
    pub ingest: IngestBatcher,
    /// Rules that webhook URLs must pass at registration.
    pub address_policy: AddressPolicy,
    pub admin_token: Arc<str>,
    /// `api.ingest_token`: a second token accepted for ingest alone.
    pub ingest_token: Option<Arc<str>>,
    /// Largest accepted event payload in bytes.
    pub max_payload_size: usize,
    pub ops: OpsState,
}

/// Builds the router with the admin API, the ingest API and the
/// operational endpoints.
pub fn router(state: ApiState) -> Router {
    let body_limit = axum::extract::DefaultBodyLimit::max(state.max_payload_size + 1);
    let api = Router::new()
        .route("/products", post(products::create).get(products::list))
        .route("/products/{name}", get(products::show))
        .route("/products/{name}/schema", put(product_schema::replace))
        .route("/products/{name}/rejected", get(rejected::list))
        .route(
            "/products/{name}/rejected/{id}/replay",
            post(rejected::replay),
        )
        .route(
            "/products/{name}/events",
            post(events::ingest).layer(body_limit),
        )
        .route(
            "/applications",
            post(applications::create).get(applications::list),
        )
        .route(
            "/applications/{id}",
            get(applications::show).patch(applications::update),
        )
        .route("/applications/{id}/enable", post(endpoint_state::enable))
        .route(
            "/applications/{id}/secret/rotate",
            post(secret_rotation::rotate),
        )
        .route("/applications/{id}/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::show))
        .route("/deliveries/{id}/replay", post(deliveries::replay_delivery))
        .route("/dead-letters", get(deliveries::dead_letters))
        .route("/dead-letters/{id}/replay", post(deliveries::replay))
        .route("/plans", post(plans::create).get(plans::list))
        .route("/plans/{name}", put(plans::update))
        .route("/analytics/usage", get(analytics::usage))
        .route("/analytics/over-limit", get(analytics::over_limit))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));

    Router::new()
        .nest("/api/v1", api)
        .route("/openapi.json", get(openapi::document))
        .fallback(error::not_found)
        .with_state(state.clone())
        .merge(ops_router(state.ops))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}
