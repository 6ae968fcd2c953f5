//! The page frame: head, brand header, navigation, main landmark and
//! footer, plus the response headers every portal response carries.

use crate::session::Viewer;
use crate::PortalState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// Content Security Policy of every portal response: nothing from other
/// origins except images (a configured logo may live elsewhere), no inline
/// scripts or styles, and no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' https: data:; \
     style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers, and `no-store` because pages may show secrets.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Renders a full page for `viewer` with the configured brand.
pub(crate) fn page(
    state: &PortalState,
    viewer: Option<&Viewer>,
    title: &str,
    body: Markup,
) -> Markup {
    let brand = &state.settings.brand_name;
    let logo = state
        .settings
        .logo_url
        .as_deref()
        .unwrap_or("/portal/assets/logo.svg");
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · {brand}")))
            body {
                a class="skip-link" href="#main" { "Skip to content" }
                header class="site-header" {
                    a class="brand" href="/portal" {
                        img src=(logo) alt="" width="32" height="32";
                        span { (brand) " developer portal" }
                    }
                    (navigation(viewer))
                }
                main id="main" tabindex="-1" { (body) }
                footer class="site-footer" {
                    p { "Webhooks delivered by Hookline. Signed with the Standard Webhooks scheme." }
                }
            }
        }
    }
}

/// Renders a page without brand or navigation, for errors.
pub(crate) fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main id="main" { (body) }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="stylesheet" href="/portal/assets/portal.css";
            link rel="stylesheet" href="/portal/assets/brand.css";
            link rel="icon" href="/portal/assets/logo.svg" type="image/svg+xml";
            script src="/portal/assets/portal.js" defer {}
        }
    }
}

fn navigation(viewer: Option<&Viewer>) -> Markup {
    html! {
        nav aria-label="Main" {
            ul {
                li { a href="/portal/apis" { "API catalogue" } }
                li { a href="/portal/reference" { "Admin API" } }
                @if let Some(viewer) = viewer {
                    li { a href="/portal" { "My applications" } }
                    li { a href="/portal/subscribe" { "Subscribe" } }
                    @if viewer.is_provider() {
                        li { a href="/portal/provider" { "Provider" } }
                    }
                    li { a href="/portal/account" { (viewer.account.email) } }
                    li {
                        form method="post" action="/portal/signout" class="inline" {
                            (csrf_field(&viewer.session.csrf_token))
                            button type="submit" class="link" { "Sign out" }
                        }
                    }
                } @else {
                    li { a href="/portal/signin" { "Sign in" } }
                    li { a href="/portal/signup" { "Sign up" } }
                }
            }
        }
    }
}

/// The hidden CSRF field every POST form carries.
pub(crate) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A status message shown at the top of a page.
pub(crate) fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            div class="notice" role="status" { p { (text) } }
        }
    }
}

/// A list of form errors, announced to screen readers.
pub(crate) fn errors(messages: &[String]) -> Markup {
    html! {
        @if !messages.is_empty() {
            div class="errors" role="alert" {
                h2 { "Please correct the following" }
                ul { @for message in messages { li { (message) } } }
            }
        }
    }
}

/// A copyable secret: readable without JavaScript, with a copy button
/// that `portal.js` enables.
pub(crate) fn secret_box(id: &str, label: &str, secret: &str) -> Markup {
    html! {
        div class="secret" {
            label for=(id) { (label) }
            div class="secret-row" {
                input id=(id) type="text" readonly value=(secret) class="mono" autocomplete="off" spellcheck="false";
                button type="button" class="copy" data-copy-target=(id) hidden { "Copy" }
            }
        }
    }
}

/// An HTML response with a status.
pub(crate) fn respond(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

/// A 200 HTML response.
pub(crate) fn ok(page: Markup) -> Response {
    respond(StatusCode::OK, page)
}

/// Formats a time as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn time(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// A `<time>` element with the machine-readable RFC 3339 value.
pub(crate) fn time_element(at: time::OffsetDateTime) -> Markup {
    let machine = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    html! { time datetime=(machine) { (time(at)) } }
}
