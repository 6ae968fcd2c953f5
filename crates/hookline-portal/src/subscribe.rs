//! Subscribing: an account picks an event API and a plan and registers its
//! webhook URL, which makes an application it owns.

use crate::applications::plan_label;
use crate::error::PortalError;
use crate::layout::{self, csrf_field, errors, secret_box};
use crate::session::Viewer;
use crate::PortalState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use hookline_core::webhook_url::AddressPolicy;
use hookline_core::{Application, ApplicationId, ApplicationState, SigningSecret};
use maud::html;
use serde::Deserialize;
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// Maximum length of an application name, the same as the admin API's.
const MAX_NAME_LENGTH: usize = 200;
/// How long the reachability check waits for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SubscribeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    webhook_url: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SubscribeQuery {
    product: Option<String>,
}

/// A rejected field and why.
struct FieldError {
    field: &'static str,
    message: String,
}

pub(crate) async fn form(
    State(state): State<PortalState>,
    viewer: Viewer,
    Query(query): Query<SubscribeQuery>,
) -> Result<Response, PortalError> {
    let values = SubscribeForm {
        product: query.product.unwrap_or_default(),
        plan: "free".to_owned(),
        ..SubscribeForm::default()
    };
    render_form(&state, &viewer, &values, &[], StatusCode::OK).await
}

pub(crate) async fn create(
    State(state): State<PortalState>,
    viewer: Viewer,
    Form(values): Form<SubscribeForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&values.csrf)?;
    let (problems, url) = check(&state, &values).await?;
    let Some(url) = url.filter(|_| problems.is_empty()) else {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return render_form(&state, &viewer, &values, &problems, status).await;
    };

    let application = Application {
        id: ApplicationId::generate(),
        name: values.name.trim().to_owned(),
        product: values.product.clone(),
        plan: values.plan.clone(),
        webhook_url: url.to_string(),
        secret: SigningSecret::generate(),
        state: ApplicationState::Active,
        created_at: OffsetDateTime::now_utc(),
    };
    state.store.create_application(&application).await?;
    state
        .portal
        .set_application_owner(&application.id, &viewer.account.id)
        .await?;
    state.directory.invalidate();
    tracing::info!(application_id = %application.id, product = %application.product, account_id = %viewer.account.id, "Application created in the portal");

    let link = format!("/portal/apps/{}", application.id);
    let body = html! {
        h1 { "Subscribed" }
        div class="notice" role="status" {
            p { strong { (application.name) } " now receives the events of " (application.product) " at " span class="mono" { (application.webhook_url) } "." }
        }
        h2 { "Your signing secret" }
        p { "Store this secret now. It verifies the " code { "webhook-signature" } " header of every webhook. "
            "It is shown again only after you enter your password." }
        (secret_box("secret", "Signing secret", application.secret.expose()))
        p { a class="button" href=(link) { "Open the application" } }
    };
    let page = layout::page(&state, Some(&viewer), "Subscribed", body);
    Ok(layout::respond(StatusCode::CREATED, page))
}

/// Checks every field, returning the problems and, when the URL passed,
/// the parsed URL.
async fn check(
    state: &PortalState,
    values: &SubscribeForm,
) -> Result<(Vec<FieldError>, Option<Url>), PortalError> {
    let mut problems = Vec::new();
    let name = values.name.trim();
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        problems.push(FieldError {
            field: "name",
            message: format!("Give the application a name of 1 to {MAX_NAME_LENGTH} characters."),
        });
    }
    if state.store.product(&values.product).await?.is_none() {
        problems.push(FieldError {
            field: "product",
            message: "Choose an event API from the list.".to_owned(),
        });
    }
    if state.store.plan(&values.plan).await?.is_none() {
        problems.push(FieldError {
            field: "plan",
            message: "Choose a plan from the list.".to_owned(),
        });
    }
    let url = match check_url(&state.settings.address_policy, &values.webhook_url).await {
        Ok(url) => Some(url),
        Err(message) => {
            problems.push(FieldError {
                field: "webhook_url",
                message,
            });
            None
        }
    };
    Ok((problems, url))
}

/// Applies the admin API's URL rules, then checks that the host resolves to
/// an allowed address that accepts a TCP connection.
async fn check_url(policy: &AddressPolicy, raw: &str) -> Result<Url, String> {
    let url = policy.check_url(raw).map_err(|error| explain(&error))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addresses: Vec<std::net::SocketAddr> = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::lookup_host((lookup_host, port)),
    )
    .await
    {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(_)) | Err(_) => {
            return Err(format!(
                "The host {host} could not be resolved. Check the spelling of the URL."
            ))
        }
    };
    let allowed: Vec<_> = addresses
        .into_iter()
        .filter(|address| policy.is_allowed(address.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(format!(
            "The host {host} resolves only to private, loopback or link-local addresses, which cannot receive webhooks. Use a public address."
        ));
    }
    for address in &allowed {
        let connect = tokio::net::TcpStream::connect(address);
        if let Ok(Ok(_)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            return Ok(url);
        }
    }
    Err(format!(
        "The host {host} is unreachable: no connection to port {port} within {} seconds. Make sure the endpoint is online and accepts HTTPS.",
        CONNECT_TIMEOUT.as_secs()
    ))
}

/// Rephrases a URL rule violation for the form: the admin API's messages
/// name configuration keys that a consumer cannot change.
fn explain(error: &hookline_core::webhook_url::UrlError) -> String {
    use hookline_core::webhook_url::UrlError;
    match error {
        UrlError::Invalid(_) | UrlError::MissingHost => {
            "Enter a full URL such as https://hooks.example.com/orders.".to_owned()
        }
        UrlError::NotHttps(scheme) => format!(
            "The URL must start with https://, not {scheme}://. Webhooks are sent over HTTPS only."
        ),
        UrlError::Credentials => {
            "The URL must not contain a user name or password.".to_owned()
        }
        UrlError::BlockedAddress(host) => format!(
            "{host} is a private, loopback, link-local or cloud metadata address, which cannot receive webhooks. Use a public address."
        ),
    }
}

async fn render_form(
    state: &PortalState,
    viewer: &Viewer,
    values: &SubscribeForm,
    problems: &[FieldError],
    status: StatusCode,
) -> Result<Response, PortalError> {
    let products = state.store.products().await?;
    let plans = state.store.plans().await?;
    let summary: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
    let problem = |field: &str| problems.iter().find(|p| p.field == field);
    let body = html! {
        h1 { "Subscribe to an event API" }
        (errors(&summary))
        @if products.is_empty() {
            p { "No event APIs are published yet." }
        } @else {
            form method="post" action="/portal/subscribe" class="stack" novalidate {
                (csrf_field(&viewer.session.csrf_token))
                div {
                    label for="name" { "Application name" }
                    input id="name" name="name" type="text" required maxlength=(MAX_NAME_LENGTH) value=(values.name)
                        aria-invalid=[problem("name").map(|_| "true")] aria-describedby="name_hint";
                    p class="hint" id="name_hint" { "Shown in your list of applications, for example the name of your service." }
                    @if let Some(problem) = problem("name") { p class="field-error" { (problem.message) } }
                }
                div {
                    label for="product" { "Event API" }
                    select id="product" name="product" aria-invalid=[problem("product").map(|_| "true")] {
                        @for product in &products {
                            option value=(product.name) selected[product.name == values.product] {
                                (product.name) " (" (product.content_type.media_type()) ")"
                            }
                        }
                    }
                }
                fieldset {
                    legend { "Plan" }
                    @for plan in &plans {
                        label class="radio" {
                            input type="radio" name="plan" value=(plan.name) checked[plan.name == values.plan];
                            span { (plan_label(plan)) }
                        }
                    }
                    @if let Some(problem) = problem("plan") { p class="field-error" { (problem.message) } }
                }
                div {
                    label for="webhook_url" { "Webhook URL" }
                    input id="webhook_url" name="webhook_url" type="url" required placeholder="https://hooks.example.com/orders"
                        value=(values.webhook_url) aria-invalid=[problem("webhook_url").map(|_| "true")] aria-describedby="url_hint";
                    p class="hint" id="url_hint" { "An HTTPS URL on a public address. Hookline connects to it once now to check that it is reachable." }
                    @if let Some(problem) = problem("webhook_url") { p class="field-error" { (problem.message) } }
                }
                div { button type="submit" { "Subscribe" } }
            }
        }
    };
    let page = layout::page(state, Some(viewer), "Subscribe", body);
    Ok(layout::respond(status, page))
}
