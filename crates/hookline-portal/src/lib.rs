//! The developer portal: server-rendered HTML pages under `/portal` where
//! API consumers sign up, read the catalogue of event APIs, subscribe an
//! endpoint to a plan, manage their signing secret and watch their
//! deliveries, and where the API provider can see every application.
//!
//! Every core action is a plain HTML form, so the portal works without
//! JavaScript; `portal.js` only adds copy buttons. All assets are compiled
//! into the binary. Accounts, sessions and ownership live in a
//! [`PortalStore`]; everything else comes from the [`Store`] that the admin
//! API uses.
//!
//! Security model: a session cookie (`HttpOnly`, `SameSite=Lax`, `Secure`
//! unless configured off) carries a random token whose SHA-256 hash is the
//! stored session key. Every POST form carries a CSRF token, compared in
//! constant time: the session's token once signed in, and a double-submit
//! cookie on the sign-in and sign-up forms.

mod accounts;
mod applications;
mod assets;
mod catalogue;
mod chart;
mod error;
mod layout;
mod password;
mod provider;
mod sample;
mod sample_avro;
mod samples;
mod session;
mod subscribe;
mod throttle;

use axum::routing::{get, post};
use axum::Router;
use hookline_core::directory::Directory;
use hookline_core::portal::{PortalStore, SignInLimiter};
use hookline_core::queue::DeliveryQueue;
use hookline_core::store::Store;
use hookline_core::webhook_url::AddressPolicy;
use hookline_core::RetryPolicy;
use std::sync::Arc;
use std::time::Duration;
use throttle::SignInThrottle;

pub use assets::is_valid_colour;

/// The backends the portal reads and writes.
#[derive(Clone)]
pub struct PortalBackends {
    pub store: Arc<dyn Store>,
    pub portal: Arc<dyn PortalStore>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub directory: Arc<dyn Directory>,
    /// Counts password checks per email across every process that shares
    /// it; `None` counts them in this process only.
    pub sign_in_limiter: Option<Arc<dyn SignInLimiter>>,
}

/// Settings of the portal (`portal.*` in the configuration) and the parts
/// of the delivery settings that the portal shows or enforces.
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// Name shown in the header and the page titles.
    pub brand_name: String,
    /// URL or absolute path of the logo; `None` shows the built-in logo.
    pub logo_url: Option<String>,
    /// Accent colour as `#rrggbb` or `#rgb`, checked by [`is_valid_colour`].
    pub brand_colour: String,
    /// Lowercased emails whose accounts get the provider role at sign-up
    /// and at each sign-in; other accounts get the consumer role at sign-in.
    pub provider_emails: Vec<String>,
    /// Whether the session cookie has the `Secure` attribute.
    pub secure_cookie: bool,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// How long the previous secret keeps signing after a rotation.
    pub rotation_overlap: Duration,
    /// Rules that webhook URLs must pass, the same as the admin API's.
    pub address_policy: AddressPolicy,
    /// The retry schedule the catalogue shows.
    // NOTE: a snapshot taken at start; a configuration reload of `retry.*`
    // changes delivery at once but the portal pages only after a restart.
    pub retry: RetryPolicy,
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            brand_name: "Hookline".to_owned(),
            logo_url: None,
            brand_colour: "#1d4ed8".to_owned(),
            provider_emails: Vec::new(),
            secure_cookie: true,
            session_ttl: Duration::from_secs(12 * 3600),
            rotation_overlap: Duration::from_secs(24 * 3600),
            address_policy: AddressPolicy::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// State shared by the portal's handlers.
#[derive(Clone)]
pub(crate) struct PortalState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) portal: Arc<dyn PortalStore>,
    pub(crate) queue: Arc<dyn DeliveryQueue>,
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) settings: Arc<PortalSettings>,
    pub(crate) throttle: Arc<dyn SignInLimiter>,
}

/// Builds the portal's router. It has no fallback, so it can be merged
/// into a router that has one.
pub fn router(backends: PortalBackends, settings: PortalSettings) -> Router {
    let state = PortalState {
        store: backends.store,
        portal: backends.portal,
        queue: backends.queue,
        directory: backends.directory,
        settings: Arc::new(settings),
        throttle: backends
            .sign_in_limiter
            .unwrap_or_else(|| Arc::new(SignInThrottle::default())),
    };
    Router::new()
        .route("/portal", get(applications::home))
        .route("/portal/", get(applications::home))
        .route(
            "/portal/signup",
            get(accounts::signup_form).post(accounts::signup),
        )
        .route(
            "/portal/signin",
            get(accounts::signin_form).post(accounts::signin),
        )
        .route("/portal/signout", post(accounts::signout))
        .route("/portal/account", get(accounts::account_page))
        .route("/portal/account/password", post(accounts::change_password))
        .route("/portal/apis", get(catalogue::list))
        .route("/portal/apis/{product}", get(catalogue::show))
        .route(
            "/portal/apis/{product}/openapi.json",
            get(catalogue::openapi),
        )
        .route("/portal/reference", get(catalogue::admin_reference))
        .route(
            "/portal/subscribe",
            get(subscribe::form).post(subscribe::create),
        )
        .merge(applications::routes())
        .merge(provider::routes())
        .merge(assets::routes())
        .layer(axum::middleware::map_response(layout::security_headers))
        .with_state(state)
}
