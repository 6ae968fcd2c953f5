//! A consumer's applications: the list, and one application's page with its
//! delivery log, usage, plan, secret and the actions on them.

use crate::error::PortalError;
use crate::layout::{self, csrf_field, errors, notice, secret_box, time_element};
use crate::session::{MaybeViewer, Viewer};
use crate::{chart, sample, PortalState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use hookline_core::endpoint_health::Disablement;
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{DeliveryFilter, InsertOutcome, NewEvent};
use hookline_core::usage::UsageQuery;
use hookline_core::{
    Application, ApplicationId, ApplicationState, AttemptResult, DeliveryId, DeliveryRecord,
    DeliveryState, Event, EventId, EventSource, Plan, SigningSecret, WebhookId,
};
use maud::{html, Markup};
use serde::Deserialize;
use time::{Duration, OffsetDateTime, Time};

/// Deliveries per page of the log.
const LOG_PAGE: u32 = 25;
/// The reason stored when a consumer pauses its application.
pub(crate) const PAUSE_REASON: &str = "paused by the consumer in the developer portal";

pub(crate) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/portal/apps/{id}", get(show))
        .route("/portal/apps/{id}/test-event", post(send_test_event))
        .route("/portal/apps/{id}/rotate-secret", post(rotate_secret))
        .route("/portal/apps/{id}/reveal-secret", post(reveal_secret))
        .route("/portal/apps/{id}/plan", post(change_plan))
        .route("/portal/apps/{id}/pause", post(pause))
        .route("/portal/apps/{id}/resume", post(resume))
        .route(
            "/portal/apps/{id}/deliveries/{delivery}/replay",
            post(replay),
        )
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PlanForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    plan: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShowQuery {
    notice: Option<String>,
    before: Option<String>,
}

/// Renders the portal's start page: the signed-in account's applications,
/// or an introduction with links to sign in.
pub(crate) async fn home(
    State(state): State<PortalState>,
    MaybeViewer(viewer): MaybeViewer,
) -> Result<Response, PortalError> {
    let Some(viewer) = viewer else {
        return Ok(layout::ok(welcome(&state)));
    };
    let mut applications = Vec::new();
    for id in state.portal.owned_applications(&viewer.account.id).await? {
        if let Some(application) = state.store.application(&id).await? {
            applications.push(application);
        }
    }
    let body = html! {
        h1 { "My applications" }
        @if viewer.is_provider() {
            p { "You are signed in as the API provider. " a href="/portal/provider" { "Open the provider pages" } "." }
        }
        @if applications.is_empty() {
            p { "You have no applications yet. " a href="/portal/subscribe" { "Subscribe to an event API" } " to receive its webhooks." }
        } @else {
            (application_table(&applications))
            p { a class="button" href="/portal/subscribe" { "Subscribe another endpoint" } }
        }
    };
    Ok(layout::ok(layout::page(
        &state,
        Some(&viewer),
        "My applications",
        body,
    )))
}

fn welcome(state: &PortalState) -> Markup {
    let brand = &state.settings.brand_name;
    let body = html! {
        h1 { "Webhooks from " (brand) }
        p { "Subscribe an HTTPS endpoint to an event API, choose a plan, and receive every event as a signed webhook with retries." }
        ul {
            li { a href="/portal/apis" { "Browse the event APIs" } ": payload schemas, headers, signature verification and the retry schedule." }
            li { a href="/portal/signup" { "Create an account" } " or " a href="/portal/signin" { "sign in" } " to subscribe and to watch your deliveries." }
        }
    };
    layout::page(state, None, "Developer portal", body)
}

/// Renders a table of applications with links to their pages.
pub(crate) fn application_table(applications: &[Application]) -> Markup {
    html! {
        table {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Event API" } th scope="col" { "Plan" }
                th scope="col" { "Webhook URL" } th scope="col" { "State" } th scope="col" { "Created" }
            } }
            tbody {
                @for application in applications {
                    tr {
                        th scope="row" { a href=(format!("/portal/apps/{}", application.id)) { (application.name) } }
                        td { (application.product) }
                        td { (application.plan) }
                        td class="mono" { (application.webhook_url) }
                        td { (state_badge(application.state)) }
                        td { (time_element(application.created_at)) }
                    }
                }
            }
        }
    }
}

fn state_badge(state: ApplicationState) -> Markup {
    let (class, label) = match state {
        ApplicationState::Active => ("badge state-active", "active"),
        ApplicationState::Disabled => ("badge state-disabled", "paused or disabled"),
    };
    html! { span class=(class) { (label) } }
}

/// Loads an application the viewer may see: its own, or any for the
/// provider. Another account's application is reported as not found.
pub(crate) async fn visible(
    state: &PortalState,
    viewer: &Viewer,
    id: &str,
) -> Result<Application, PortalError> {
    let id = ApplicationId::parse(id).ok_or(PortalError::NotFound)?;
    let application = state
        .store
        .application(&id)
        .await?
        .ok_or(PortalError::NotFound)?;
    if viewer.is_provider() {
        return Ok(application);
    }
    let owner = state.portal.application_owner(&id).await?;
    if owner.as_deref() != Some(viewer.account.id.as_str()) {
        return Err(PortalError::NotFound);
    }
    Ok(application)
}

async fn show(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, PortalError> {
    let application = visible(&state, &viewer, &id).await?;
    let text = query.notice.as_deref().and_then(notice_text);
    let before = query.before.as_deref().and_then(DeliveryId::parse);
    let page = application_page(&state, &viewer, &application, text, &[], before).await?;
    Ok(layout::ok(page))
}

/// Fixed texts of the `notice` query parameter, so that no request can put
/// text of its own on the page.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "test-sent" => "Test event sent. It appears in the delivery log below within seconds.",
        "plan-changed" => "Plan changed. The new limit applies from the next delivery on.",
        "paused" => "Paused. Events that arrive now are kept and delivered when you resume.",
        "resumed" => "Resumed. Kept events are being delivered.",
        "already-paused" => "The application is already paused or disabled.",
        "replayed" => "Delivery replayed with a fresh retry schedule.",
        "replayed-new" => {
            "Delivery replayed as a new delivery with a new webhook id. It appears in the log below."
        }
        "not-dead" => {
            "Only dead deliveries can be replayed; this one is still pending or was delivered."
        }
        "pending" => "That delivery is still pending; replay it once it is delivered or dead.",
        _ => return None,
    })
}

/// Renders an application's page.
async fn application_page(
    state: &PortalState,
    viewer: &Viewer,
    application: &Application,
    notice_message: Option<&str>,
    messages: &[String],
    before: Option<DeliveryId>,
) -> Result<Markup, PortalError> {
    let now = OffsetDateTime::now_utc();
    let plan = state.store.plan(&application.plan).await?;
    let plans = state.store.plans().await?;
    let disablement = match application.state {
        ApplicationState::Disabled => state.store.disablement(&application.id).await?,
        ApplicationState::Active => None,
    };
    let previous = state.portal.previous_secret(&application.id, now).await?;
    let usage = usage_section(state, application, plan.as_ref(), now).await?;
    let filter = DeliveryFilter {
        state: None,
        before,
        limit: LOG_PAGE,
    };
    let deliveries = state.store.deliveries(&application.id, &filter).await?;
    let csrf = viewer.session.csrf_token.as_str();
    let base = format!("/portal/apps/{}", application.id);

    let body = html! {
        p { a href="/portal" { "My applications" } }
        h1 { (application.name) }
        (notice(notice_message))
        (errors(messages))
        dl class="facts" {
            dt { "Application id" } dd class="mono" { (application.id) }
            dt { "Event API" } dd { a href=(format!("/portal/apis/{}", application.product)) { (application.product) } }
            dt { "Webhook URL" } dd class="mono" { (application.webhook_url) }
            dt { "Plan" } dd { (application.plan) }
            dt { "State" } dd {
                (state_badge(application.state))
                @if let Some(disablement) = &disablement {
                    " since " (time_element(disablement.disabled_at)) ": " (disablement.reason)
                }
            }
            dt { "Created" } dd { (time_element(application.created_at)) }
        }
        div class="actions" {
            @match application.state {
                ApplicationState::Active => form method="post" action=(format!("{base}/pause")) {
                    (csrf_field(csrf))
                    button type="submit" class="secondary" { "Pause deliveries" }
                },
                ApplicationState::Disabled => form method="post" action=(format!("{base}/resume")) {
                    (csrf_field(csrf))
                    button type="submit" { "Resume deliveries" }
                },
            }
            form method="post" action=(format!("{base}/test-event")) {
                (csrf_field(csrf))
                button type="submit" { "Send a test event" }
            }
        }

        h2 { "Usage" }
        (usage)

        h2 { "Delivery log" }
        (delivery_log(application, &deliveries, csrf))
        @if deliveries.len() as u32 == LOG_PAGE {
            @if let Some(last) = deliveries.last() {
                p { a href=(format!("{base}?before={}", last.id)) { "Older deliveries" } }
            }
        }

        h2 id="secret-heading" { "Signing secret" }
        p { "Every webhook carries a " code { "webhook-signature" } " header: an HMAC-SHA256 keyed with this application's secret. "
            a href=(format!("/portal/apis/{}#verify", application.product)) { "How to verify it" } "." }
        @if let Some(previous) = &previous {
            p class="warning" { "The previous secret also signs every webhook until " (time_element(previous.expires_at)) ", so both verify during the change-over." }
        }
        div class="actions" {
            form method="post" action=(format!("{base}/reveal-secret")) class="stack" aria-label="Reveal the secret" {
                (csrf_field(csrf))
                div {
                    label for="reveal-password" { "Your password, to show the secret" }
                    input id="reveal-password" name="password" type="password" autocomplete="current-password" required;
                }
                div { button type="submit" class="secondary" { "Show secret" } }
            }
            form method="post" action=(format!("{base}/rotate-secret")) aria-label="Rotate the secret" {
                (csrf_field(csrf))
                p class="hint" { "Rotating makes a new secret. The current one keeps signing for "
                    (humanize(state.settings.rotation_overlap)) " so you can switch without missing a webhook." }
                button type="submit" class="danger" { "Rotate secret" }
            }
        }

        h2 id="plan-heading" { "Plan" }
        form method="post" action=(format!("{base}/plan")) class="stack" aria-labelledby="plan-heading" {
            (csrf_field(csrf))
            div {
                label for="plan" { "Move to plan" }
                select id="plan" name="plan" {
                    @for plan in &plans {
                        option value=(plan.name) selected[plan.name == application.plan] { (plan_label(plan)) }
                    }
                }
            }
            div { button type="submit" { "Change plan" } }
        }
    };
    Ok(layout::page(state, Some(viewer), &application.name, body))
}

/// Describes a plan's limit and fee, such as `free: 100 per hour, 0 USD a month`.
pub(crate) fn plan_label(plan: &Plan) -> String {
    let limit = match plan.limit {
        Some(limit) => format!("{limit} per {}", plan.period.as_str()),
        None => "unlimited".to_owned(),
    };
    format!(
        "{}: {limit}, {} {} a month",
        plan.name, plan.monthly_fee, plan.currency
    )
}

async fn usage_section(
    state: &PortalState,
    application: &Application,
    plan: Option<&Plan>,
    now: OffsetDateTime,
) -> Result<Markup, PortalError> {
    let hour_start = now.replace_time(Time::from_hms(now.hour(), 0, 0).unwrap_or(Time::MIDNIGHT));
    let this_hour = state
        .store
        .usage(&UsageQuery {
            application: Some(application.id.clone()),
            from: hour_start,
            to: hour_start + Duration::hours(1),
        })
        .await?;
    let sent: u64 = this_hour
        .iter()
        .map(|hour| hour.counts.delivered + hour.counts.failed_attempts)
        .sum();
    let throttled: u64 = this_hour.iter().map(|hour| hour.counts.throttled).sum();
    let month = state
        .store
        .usage(&UsageQuery {
            application: Some(application.id.clone()),
            from: chart::first_day(now).midnight().assume_utc(),
            to: hour_start + Duration::hours(1),
        })
        .await?;
    let days = chart::daily(&month, now);
    let hourly_limit = plan
        .and_then(|plan| plan.limit.map(|limit| (limit, plan.period)))
        .filter(|(_, period)| *period == hookline_core::LimitPeriod::Hour);
    Ok(html! {
        div class="meter" {
            @if let Some((limit, _)) = hourly_limit {
                label for="usage-meter" { "This hour: " (sent) " of " (limit) " notifications" }
                meter id="usage-meter" min="0" max=(limit) high=((limit * 8) / 10) value=(sent.min(limit)) { (sent) " of " (limit) }
            } @else {
                p { "This hour: " (plural(sent, "notification")) " sent. "
                    @match plan.and_then(|plan| plan.limit.map(|limit| (limit, plan.period))) {
                        Some((limit, period)) => { "The plan allows " (limit) " per " (period.as_str()) "." },
                        None => { "The plan has no limit." },
                    }
                }
            }
        }
        @if throttled > 0 {
            p class="warning" { (plural(throttled, "notification")) " went over the plan's limit this hour; they wait for the next window or are dead-lettered, as the plan says." }
        }
        (chart::render(&days))
    })
}

fn delivery_log(application: &Application, deliveries: &[DeliveryRecord], csrf: &str) -> Markup {
    html! {
        @if deliveries.is_empty() {
            p { "No deliveries yet. Send a test event to see one here." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Created" } th scope="col" { "Webhook id" } th scope="col" { "State" }
                    th scope="col" { "Attempts" } th scope="col" { "Next retry" } th scope="col" { "Actions" }
                } }
                tbody {
                    @for delivery in deliveries {
                        tr {
                            td { (time_element(delivery.created_at)) }
                            td class="mono" {
                                (delivery.webhook_id)
                                @if let Some(original) = &delivery.replay_of {
                                    br;
                                    small { "replay of " (original) }
                                }
                            }
                            td { span class=(format!("badge state-{}", delivery.state.as_str())) { (delivery.state.as_str()) } }
                            td { (attempt_details(delivery)) }
                            td { @match delivery.next_attempt_at {
                                Some(at) if delivery.state == DeliveryState::Pending => (time_element(at)),
                                _ => "–",
                            } }
                            td {
                                @if delivery.state != DeliveryState::Pending {
                                    form method="post" action=(format!("/portal/apps/{}/deliveries/{}/replay", application.id, delivery.id)) {
                                        (csrf_field(csrf))
                                        button type="submit" class="secondary" { "Replay" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Renders each attempt's time, status, latency and response excerpt.
pub(crate) fn attempt_details(delivery: &DeliveryRecord) -> Markup {
    html! {
        @if delivery.attempts.is_empty() {
            "none yet"
        } @else {
            details {
                summary { (plural(delivery.attempts.len() as u64, "attempt")) }
                table {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Status" }
                        th scope="col" { "Latency" } th scope="col" { "Response" }
                    } }
                    tbody {
                        @for attempt in &delivery.attempts {
                            tr {
                                td { (attempt.number) }
                                td { (time_element(attempt.started_at)) }
                                td { @match &attempt.result {
                                    AttemptResult::Response { status } => (status),
                                    AttemptResult::Error { class, message } => { (class) ": " (message) },
                                } }
                                td { (attempt.duration_ms) " ms" }
                                td class="mono" {
                                    (attempt.response_excerpt.as_deref().unwrap_or(""))
                                    @if attempt.response_truncated { "…" }
                                }
                            }
                        }
                    }
                }
                @if let Some(error) = &delivery.last_error {
                    p { "Last error: " (error) }
                }
            }
        }
    }
}

async fn send_test_event(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    let application = visible(&state, &viewer, &id).await?;
    let Some(product) = state.store.product(&application.product).await? else {
        return Err(PortalError::NotFound);
    };
    let now = OffsetDateTime::now_utc();
    let payload = match sample::payload(&product, now) {
        Ok(payload) => payload,
        Err(error) => {
            let page = application_page(
                &state,
                &viewer,
                &application,
                None,
                &[error.to_string()],
                None,
            )
            .await?;
            return Ok(layout::respond(StatusCode::UNPROCESSABLE_ENTITY, page));
        }
    };
    enqueue_test_event(&state, &application, product.content_type, payload, now).await?;
    Ok(redirect_notice(&application.id, "test-sent"))
}

/// Stores a test event with one delivery, to this application alone, and
/// enqueues it. Ingest would fan the event out to every subscriber of the
/// product, which must not see another consumer's test.
async fn enqueue_test_event(
    state: &PortalState,
    application: &Application,
    content_type: hookline_core::ContentType,
    payload: Vec<u8>,
    now: OffsetDateTime,
) -> Result<(), PortalError> {
    let event_id = EventId::generate();
    let key = format!("portal-test-{event_id}");
    let webhook_id = WebhookId::derive(&application.product, &key);
    let payload = bytes::Bytes::from(payload);
    let delivery_id = DeliveryId::generate();

    let event = Event {
        id: event_id.clone(),
        product: application.product.clone(),
        idempotency_key: key.clone(),
        webhook_id: webhook_id.clone(),
        content_type,
        payload: payload.clone(),
        source: EventSource::Http,
        received_at: now,
        traceparent: None,
    };
    let new_event = NewEvent {
        event,
        deliveries: vec![(delivery_id.clone(), application.id.clone())],
    };
    let outcomes = state.store.insert_events(&[new_event]).await?;
    if outcomes.first() != Some(&InsertOutcome::Inserted) {
        return Err(PortalError::Internal(format!(
            "test event {event_id} was not stored as new: {outcomes:?}"
        )));
    }

    let task = DeliveryTask {
        delivery_id,
        event_id: event_id.clone(),
        application_id: application.id.clone(),
        product: application.product.clone(),
        webhook_id,
        idempotency_key: key,
        content_type,
        payload,
        attempts_made: 0,
        traceparent: None,
    };
    state.queue.enqueue(vec![task]).await?;
    state
        .store
        .mark_enqueued(std::slice::from_ref(&event_id))
        .await?;
    tracing::info!(application_id = %application.id, %event_id, "Portal test event enqueued");
    Ok(())
}

async fn rotate_secret(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    let application = visible(&state, &viewer, &id).await?;
    let secret = SigningSecret::generate();
    let overlap_end = OffsetDateTime::now_utc() + state.settings.rotation_overlap;
    if !state
        .portal
        .rotate_secret(&application.id, &secret, overlap_end)
        .await?
    {
        return Err(PortalError::NotFound);
    }
    state.directory.invalidate();
    tracing::info!(application_id = %application.id, "Signing secret rotated in the portal");
    let body = html! {
        h1 { "New signing secret" }
        p { "This is the new secret of " strong { (application.name) } ". Store it now: it is shown again only after you enter your password." }
        (secret_box("secret", "New signing secret", secret.expose()))
        p { "The previous secret keeps signing every webhook until " (time_element(overlap_end))
            ". Until then each webhook carries two signatures, so it verifies with either secret." }
        p { a href=(format!("/portal/apps/{}", application.id)) { "Back to the application" } }
    };
    Ok(layout::ok(layout::page(
        &state,
        Some(&viewer),
        "New signing secret",
        body,
    )))
}

async fn reveal_secret(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    let application = visible(&state, &viewer, &id).await?;
    let email = viewer.account.email.clone();
    if let Some(message) = crate::accounts::begin_password_check(&state, &email).await? {
        let page = application_page(&state, &viewer, &application, None, &[message], None).await?;
        return Ok(layout::respond(StatusCode::TOO_MANY_REQUESTS, page));
    }
    let stored = Some(viewer.account.password_hash.clone());
    if !crate::password::verify(form.password, stored).await {
        let message = "The password is wrong, so the secret stays hidden.".to_owned();
        let page = application_page(&state, &viewer, &application, None, &[message], None).await?;
        return Ok(layout::respond(StatusCode::UNAUTHORIZED, page));
    }
    crate::accounts::password_matched(&state, &email).await;
    tracing::info!(application_id = %application.id, account_id = %viewer.account.id, "Signing secret shown in the portal");
    let body = html! {
        h1 { "Signing secret" }
        (secret_box("secret", &format!("Signing secret of {}", application.name), application.secret.expose()))
        p { a href=(format!("/portal/apps/{}", application.id)) { "Back to the application" } }
    };
    Ok(layout::ok(layout::page(
        &state,
        Some(&viewer),
        "Signing secret",
        body,
    )))
}

async fn change_plan(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<PlanForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    let application = visible(&state, &viewer, &id).await?;
    if state.store.plan(&form.plan).await?.is_none() {
        let message = format!(
            "Plan {:?} does not exist; choose one from the list.",
            form.plan
        );
        let page = application_page(&state, &viewer, &application, None, &[message], None).await?;
        return Ok(layout::respond(StatusCode::UNPROCESSABLE_ENTITY, page));
    }
    if !state
        .store
        .set_application_plan(&application.id, &form.plan)
        .await?
    {
        return Err(PortalError::NotFound);
    }
    state.directory.invalidate();
    tracing::info!(application_id = %application.id, from = %application.plan, to = %form.plan, "Plan changed in the portal");
    Ok(redirect_notice(&application.id, "plan-changed"))
}

async fn pause(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    let application = visible(&state, &viewer, &id).await?;
    let disablement = Disablement {
        reason: PAUSE_REASON.to_owned(),
        disabled_at: OffsetDateTime::now_utc(),
    };
    let paused = state
        .store
        .disable_application(&application.id, &disablement)
        .await?;
    state.directory.invalidate();
    if !paused {
        return Ok(redirect_notice(&application.id, "already-paused"));
    }
    tracing::info!(application_id = %application.id, "Application paused in the portal");
    Ok(redirect_notice(&application.id, "paused"))
}

async fn resume(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    let application = visible(&state, &viewer, &id).await?;
    if !state.store.enable_application(&application.id).await? {
        return Err(PortalError::NotFound);
    }
    state.directory.invalidate();
    // Kept deliveries wait for their postponement to end when waking fails.
    let woken = match state.queue.wake_application(&application.id).await {
        Ok(count) => count,
        Err(error) => {
            tracing::warn!(%error, application_id = %application.id, "Making kept deliveries due failed; they are sent when their postponement ends");
            0
        }
    };
    tracing::info!(application_id = %application.id, woken, "Application resumed in the portal");
    Ok(redirect_notice(&application.id, "resumed"))
}

async fn replay(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path((id, delivery)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    let application = visible(&state, &viewer, &id).await?;
    let delivery_id = DeliveryId::parse(&delivery).ok_or(PortalError::NotFound)?;
    let record = state
        .store
        .delivery(&delivery_id)
        .await?
        .filter(|record| record.application_id == application.id)
        .ok_or(PortalError::NotFound)?;
    // A dead delivery is retried under its own webhook id, because the
    // consumer never accepted it. A delivered one is sent as a new delivery
    // with a new webhook id, which a consumer that deduplicates on webhook
    // ids does not drop.
    let notice = match record.state {
        DeliveryState::Dead => match replay_dead(&state, &record.id).await? {
            true => "replayed",
            false => "not-dead",
        },
        DeliveryState::Delivered => match replay_delivered(&state, &record.id).await? {
            true => "replayed-new",
            false => "pending",
        },
        DeliveryState::Pending => "pending",
    };
    Ok(redirect_notice(&application.id, notice))
}

/// Replays a delivered or dead delivery as a new delivery and enqueues it;
/// `false` when it is pending.
async fn replay_delivered(state: &PortalState, delivery: &DeliveryId) -> Result<bool, PortalError> {
    let Some(task) = state.store.replay(delivery).await? else {
        return Ok(false);
    };
    let replay_id = task.delivery_id.clone();
    state.queue.enqueue(vec![task]).await?;
    tracing::info!(delivery_id = %delivery, replay_id = %replay_id, "Delivery replayed from the portal");
    Ok(true)
}

/// Revives a dead delivery and enqueues it; `false` when it is not dead.
pub(crate) async fn replay_dead(
    state: &PortalState,
    delivery: &DeliveryId,
) -> Result<bool, PortalError> {
    let Some(task) = state.store.revive(delivery).await? else {
        return Ok(false);
    };
    state.queue.enqueue(vec![task]).await?;
    tracing::info!(delivery_id = %delivery, "Dead letter replayed from the portal");
    Ok(true)
}

fn redirect_notice(application: &ApplicationId, notice: &str) -> Response {
    Redirect::to(&format!("/portal/apps/{application}?notice={notice}")).into_response()
}

/// Formats a duration in the largest whole unit: `24 hours`, `90 minutes`.
pub(crate) fn humanize(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => plural(s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

/// Formats a count with its unit, adding `s` unless the count is 1.
pub(crate) fn plural(count: u64, unit: &str) -> String {
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}
