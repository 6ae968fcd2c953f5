//! Pages of the API provider: products, plans, every application, the
//! over-limit report and the dead letters of all applications. Other
//! accounts get 404, as for a page that does not exist.

use crate::applications::{application_table, attempt_details, plan_label, replay_dead, CsrfForm};
use crate::error::PortalError;
use crate::layout::{self, csrf_field, notice, time_element};
use crate::session::Viewer;
use crate::PortalState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use hookline_core::usage::group_overages;
use hookline_core::DeliveryId;
use maud::{html, Markup};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

/// Dead letters listed at most.
const DEAD_LETTER_LIMIT: u32 = 200;
/// Days the over-limit report covers.
const REPORT_DAYS: i64 = 30;

pub(crate) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/portal/provider", get(index))
        .route("/portal/provider/products", get(products))
        .route("/portal/provider/plans", get(plans))
        .route("/portal/provider/applications", get(applications))
        .route("/portal/provider/over-limit", get(over_limit))
        .route("/portal/provider/dead-letters", get(dead_letters))
        .route(
            "/portal/provider/dead-letters/{id}/replay",
            post(replay_dead_letter),
        )
}

#[derive(Debug, Deserialize)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
}

fn require_provider(viewer: &Viewer) -> Result<(), PortalError> {
    if viewer.is_provider() {
        Ok(())
    } else {
        Err(PortalError::NotFound)
    }
}

fn provider_page(state: &PortalState, viewer: &Viewer, title: &str, body: Markup) -> Response {
    let body = html! {
        nav aria-label="Provider pages" {
            p {
                a href="/portal/provider/products" { "Products" } " · "
                a href="/portal/provider/plans" { "Plans" } " · "
                a href="/portal/provider/applications" { "Applications" } " · "
                a href="/portal/provider/over-limit" { "Over-limit report" } " · "
                a href="/portal/provider/dead-letters" { "Dead letters" }
            }
        }
        (body)
    };
    layout::ok(layout::page(state, Some(viewer), title, body))
}

async fn index(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    require_provider(&viewer)?;
    let products = state.store.products().await?.len();
    let applications = state.store.applications(None).await?.len();
    let dead = state.store.dead_letters(DEAD_LETTER_LIMIT).await?.len();
    let body = html! {
        h1 { "Provider" }
        dl class="facts" {
            dt { "Products" } dd { (products) }
            dt { "Applications" } dd { (applications) }
            dt { "Dead letters" } dd { (dead) @if dead as u32 == DEAD_LETTER_LIMIT { " or more" } }
        }
        p { "Products and plans are created with the admin API; see the " a href="/portal/reference" { "admin API reference" } "." }
    };
    Ok(provider_page(&state, &viewer, "Provider", body))
}

async fn products(
    State(state): State<PortalState>,
    viewer: Viewer,
) -> Result<Response, PortalError> {
    require_provider(&viewer)?;
    let products = state.store.products().await?;
    let body = html! {
        h1 { "Products" }
        table {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Kafka topic" } th scope="col" { "Format" }
                th scope="col" { "Validated" } th scope="col" { "Schema" } th scope="col" { "Created" }
            } }
            tbody {
                @for product in &products {
                    tr {
                        th scope="row" { a href=(format!("/portal/apis/{}", product.name)) { (product.name) } }
                        td class="mono" { (product.topic) }
                        td { code { (product.content_type.media_type()) } }
                        td { @if product.validate { "yes" } @else { "no" } }
                        td {
                            @if let Some(schema) = &product.schema {
                                details { summary { "Show schema" } pre tabindex="0" { code { (schema) } } }
                            } @else { "none" }
                        }
                        td { (time_element(product.created_at)) }
                    }
                }
            }
        }
    };
    Ok(provider_page(&state, &viewer, "Products", body))
}

async fn plans(State(state): State<PortalState>, viewer: Viewer) -> Result<Response, PortalError> {
    require_provider(&viewer)?;
    let plans = state.store.plans().await?;
    let body = html! {
        h1 { "Plans" }
        table {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Limit" } th scope="col" { "Over the limit" }
                th scope="col" { "Monthly fee" } th scope="col" { "Trial days" } th scope="col" { "Updated" }
            } }
            tbody {
                @for plan in &plans {
                    tr {
                        th scope="row" { (plan.name) }
                        td { @match plan.limit { Some(limit) => { (limit) " per " (plan.period.as_str()) }, None => "unlimited" } }
                        td { (plan.over_limit.as_str()) }
                        td { (plan.monthly_fee) " " (plan.currency) }
                        td { (plan.trial_days) }
                        td { (time_element(plan.updated_at)) }
                    }
                }
            }
        }
        p class="hint" { "As consumers see them: " @for plan in &plans { (plan_label(plan)) "; " } }
    };
    Ok(provider_page(&state, &viewer, "Plans", body))
}

async fn applications(
    State(state): State<PortalState>,
    viewer: Viewer,
) -> Result<Response, PortalError> {
    require_provider(&viewer)?;
    let applications = state.store.applications(None).await?;
    let body = html! {
        h1 { "Applications" }
        p { (applications.len()) " applications across all accounts and the admin API." }
        (application_table(&applications))
    };
    Ok(provider_page(&state, &viewer, "Applications", body))
}

async fn over_limit(
    State(state): State<PortalState>,
    viewer: Viewer,
) -> Result<Response, PortalError> {
    require_provider(&viewer)?;
    let now = OffsetDateTime::now_utc();
    let windows = state
        .store
        .over_limit_windows(now - Duration::days(REPORT_DAYS), now)
        .await?;
    let overages = group_overages(windows);
    let body = html! {
        h1 { "Over-limit report" }
        p { "Applications whose notifications went over their plan's limit in the last " (REPORT_DAYS) " days, most over first." }
        @if overages.is_empty() {
            p { "No application went over its limit." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Application" } th scope="col" { "Over the limit in total" } th scope="col" { "Windows" }
                } }
                tbody {
                    @for overage in &overages {
                        tr {
                            th scope="row" { a href=(format!("/portal/apps/{}", overage.application_id)) { (overage.application_id) } }
                            td { (overage.total) }
                            td {
                                details {
                                    summary { (crate::applications::plural(overage.windows.len() as u64, "window")) }
                                    ul {
                                        @for window in &overage.windows {
                                            li { (time_element(window.window.start)) " to " (time_element(window.window.end))
                                                ": " (window.throttled) " over the limit of " (window.limit) " (plan " (window.plan) ")" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(provider_page(&state, &viewer, "Over-limit report", body))
}

async fn dead_letters(
    State(state): State<PortalState>,
    viewer: Viewer,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, PortalError> {
    require_provider(&viewer)?;
    let letters = state.store.dead_letters(DEAD_LETTER_LIMIT).await?;
    let text = match query.notice.as_deref() {
        Some("replayed") => Some("Dead letter replayed with a fresh retry schedule."),
        Some("not-dead") => Some("That delivery is no longer dead, so it was not replayed."),
        _ => None,
    };
    let csrf = viewer.session.csrf_token.as_str();
    let body = html! {
        h1 { "Dead letters" }
        (notice(text))
        @if letters.is_empty() {
            p { "No dead letters." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Dead since" } th scope="col" { "Application" } th scope="col" { "Event API" }
                    th scope="col" { "Reason" } th scope="col" { "Attempts" } th scope="col" { "Action" }
                } }
                tbody {
                    @for letter in &letters {
                        tr {
                            td { (time_element(letter.delivery.updated_at)) }
                            th scope="row" { a href=(format!("/portal/apps/{}", letter.delivery.application_id)) { (letter.delivery.application_id) } }
                            td { (letter.delivery.product) }
                            td { (letter.reason) }
                            td { (attempt_details(&letter.delivery)) }
                            td {
                                form method="post" action=(format!("/portal/provider/dead-letters/{}/replay", letter.delivery.id)) {
                                    (csrf_field(csrf))
                                    button type="submit" class="secondary" { "Replay" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(provider_page(&state, &viewer, "Dead letters", body))
}

async fn replay_dead_letter(
    State(state): State<PortalState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    require_provider(&viewer)?;
    let delivery = DeliveryId::parse(&id).ok_or(PortalError::NotFound)?;
    let notice = if replay_dead(&state, &delivery).await? {
        "replayed"
    } else {
        "not-dead"
    };
    Ok(Redirect::to(&format!("/portal/provider/dead-letters?notice={notice}")).into_response())
}
