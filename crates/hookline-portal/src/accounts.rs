//! Sign-up, sign-in, sign-out and password change.

use crate::error::PortalError;
use crate::layout::{self, csrf_field, errors, notice};
use crate::session::{self, MaybeViewer, Viewer, FORM_COOKIE};
use crate::throttle::minutes;
use crate::{password, PortalState};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use hookline_core::portal::{Account, Role, SIGN_IN_MAX_FAILURES, SIGN_IN_WINDOW};
use hookline_core::store::StoreError;
use maud::{html, Markup};
use serde::Deserialize;
use time::OffsetDateTime;

/// Maximum email length, the limit SMTP sets on a path.
const MAX_EMAIL_LENGTH: usize = 254;

#[derive(Debug, Deserialize)]
pub(crate) struct Credentials {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasswordChange {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
}

/// Account form to render.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    SignUp,
    SignIn,
}

pub(crate) async fn signup_form(
    State(state): State<PortalState>,
    MaybeViewer(viewer): MaybeViewer,
    headers: HeaderMap,
) -> Response {
    if viewer.is_some() {
        return Redirect::to("/portal").into_response();
    }
    credentials_page(&state, &headers, Kind::SignUp, "", &[], StatusCode::OK)
}

pub(crate) async fn signin_form(
    State(state): State<PortalState>,
    MaybeViewer(viewer): MaybeViewer,
    headers: HeaderMap,
) -> Response {
    if viewer.is_some() {
        return Redirect::to("/portal").into_response();
    }
    credentials_page(&state, &headers, Kind::SignIn, "", &[], StatusCode::OK)
}

pub(crate) async fn signup(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Form(form): Form<Credentials>,
) -> Result<Response, PortalError> {
    check_form_cookie(&headers, &form.csrf)?;
    let email = match normalize_email(&form.email) {
        Ok(email) => email,
        Err(message) => {
            let page = credentials_page(
                &state,
                &headers,
                Kind::SignUp,
                &form.email,
                &[message],
                StatusCode::UNPROCESSABLE_ENTITY,
            );
            return Ok(page);
        }
    };
    if let Some(message) = password::weakness(&form.password) {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        let page = credentials_page(&state, &headers, Kind::SignUp, &email, &[message], status);
        return Ok(page);
    }

    let role = configured_role(&state, &email);
    let account = Account {
        id: format!("acc_{}", uuid_like()),
        email: email.clone(),
        password_hash: password::hash(form.password).await?,
        role,
        created_at: OffsetDateTime::now_utc(),
    };
    match state.portal.create_account(&account).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            let message = "An account with this email already exists. Sign in instead.".to_owned();
            let status = StatusCode::CONFLICT;
            let page = credentials_page(&state, &headers, Kind::SignUp, &email, &[message], status);
            return Ok(page);
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(account_id = %account.id, role = role.as_str(), "Portal account created");
    signed_in(&state, &account).await
}

pub(crate) async fn signin(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Form(form): Form<Credentials>,
) -> Result<Response, PortalError> {
    check_form_cookie(&headers, &form.csrf)?;
    let email = form.email.trim().to_lowercase();
    if let Some(message) = begin_password_check(&state, &email).await? {
        let status = StatusCode::TOO_MANY_REQUESTS;
        let page = credentials_page(&state, &headers, Kind::SignIn, &email, &[message], status);
        return Ok(page);
    }
    let account = state.portal.account_by_email(&email).await?;
    let stored = account
        .as_ref()
        .map(|account| account.password_hash.clone());
    let verified = password::verify(form.password, stored).await;
    let Some(account) = account.filter(|_| verified) else {
        tracing::info!("Portal sign-in failed: unknown email or wrong password");
        let message = "The email or the password is wrong.".to_owned();
        let status = StatusCode::UNAUTHORIZED;
        let page = credentials_page(&state, &headers, Kind::SignIn, &email, &[message], status);
        return Ok(page);
    };
    password_matched(&state, &email).await;
    let account = apply_configured_role(&state, account).await?;
    signed_in(&state, &account).await
}

/// Returns the role that `portal.provider_emails` gives a lowercased email.
fn configured_role(state: &PortalState, email: &str) -> Role {
    if state
        .settings
        .provider_emails
        .iter()
        .any(|listed| listed == email)
    {
        Role::Provider
    } else {
        Role::Consumer
    }
}

/// Stores the role that `portal.provider_emails` gives the account when it
/// differs from the stored one, so that adding an email to the list or
/// removing it takes effect at the account's next sign-in.
async fn apply_configured_role(
    state: &PortalState,
    mut account: Account,
) -> Result<Account, PortalError> {
    let role = configured_role(state, &account.email);
    if role == account.role {
        return Ok(account);
    }
    if !state.portal.set_role(&account.id, role).await? {
        return Err(PortalError::SignInRequired);
    }
    tracing::info!(
        account_id = %account.id,
        from = account.role.as_str(),
        to = role.as_str(),
        "Portal account role changed to match portal.provider_emails"
    );
    account.role = role;
    Ok(account)
}

/// Counts a password check of `email` with the sign-in limiter. Returns the
/// message to show instead of checking when the email has too many recent
/// failures. A limiter that fails rejects the request, so that an outage of
/// the shared limiter does not lift the limit.
pub(crate) async fn begin_password_check(
    state: &PortalState,
    email: &str,
) -> Result<Option<String>, PortalError> {
    let wait = match state.throttle.begin_attempt(email).await {
        Ok(None) => return Ok(None),
        Ok(Some(wait)) => wait,
        Err(error) => {
            return Err(PortalError::Internal(format!(
                "sign-in limit check failed: {error}"
            )))
        }
    };
    let window_minutes = SIGN_IN_WINDOW.as_secs() / 60;
    Ok(Some(format!(
        "Too many failed sign-in attempts for this email ({SIGN_IN_MAX_FAILURES} in {window_minutes} minutes). Try again in {} minutes.",
        minutes(wait)
    )))
}

/// Clears the counted checks of `email` after its password matched. A
/// failure is logged and ignored, because the password check succeeded and
/// the counts expire with the window anyway.
pub(crate) async fn password_matched(state: &PortalState, email: &str) {
    if let Err(error) = state.throttle.clear(email).await {
        tracing::warn!(%error, "Could not clear the failed sign-in count of an account");
    }
}

/// Starts a session and sends the browser to its applications.
async fn signed_in(state: &PortalState, account: &Account) -> Result<Response, PortalError> {
    let (_, token) = session::start(state, account).await?;
    let cookie = session::session_cookie(state, &token);
    Ok(([cookie], Redirect::to("/portal")).into_response())
}

pub(crate) async fn signout(
    State(state): State<PortalState>,
    viewer: Viewer,
    Form(form): Form<Credentials>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    state
        .portal
        .delete_session(&viewer.session.token_hash)
        .await?;
    let expired = session::set_cookie(session::SESSION_COOKIE, "", 0, state.settings.secure_cookie);
    Ok(([expired], Redirect::to("/portal/signin")).into_response())
}

pub(crate) async fn account_page(
    State(state): State<PortalState>,
    viewer: Viewer,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let text = match query.notice.as_deref() {
        Some("password-changed") => {
            Some("Password changed. Every other session of this account was signed out.")
        }
        _ => None,
    };
    layout::ok(account_markup(&state, &viewer, text, &[]))
}

pub(crate) async fn change_password(
    State(state): State<PortalState>,
    viewer: Viewer,
    Form(form): Form<PasswordChange>,
) -> Result<Response, PortalError> {
    viewer.check_csrf(&form.csrf)?;
    let email = viewer.account.email.clone();
    if let Some(message) = begin_password_check(&state, &email).await? {
        let page = account_markup(&state, &viewer, None, &[message]);
        return Ok(layout::respond(StatusCode::TOO_MANY_REQUESTS, page));
    }
    let stored = Some(viewer.account.password_hash.clone());
    if !password::verify(form.current_password, stored).await {
        let message = "The current password is wrong.".to_owned();
        let page = account_markup(&state, &viewer, None, &[message]);
        return Ok(layout::respond(StatusCode::UNAUTHORIZED, page));
    }
    password_matched(&state, &email).await;
    if let Some(message) = password::weakness(&form.new_password) {
        let page = account_markup(&state, &viewer, None, &[message]);
        return Ok(layout::respond(StatusCode::UNPROCESSABLE_ENTITY, page));
    }

    let hash = password::hash(form.new_password).await?;
    if !state
        .portal
        .set_password_hash(&viewer.account.id, &hash)
        .await?
    {
        return Err(PortalError::SignInRequired);
    }
    // Ending every session signs out other browsers; this one gets a new session.
    state.portal.delete_sessions_of(&viewer.account.id).await?;
    let (_, token) = session::start(&state, &viewer.account).await?;
    tracing::info!(account_id = %viewer.account.id, "Portal password changed; other sessions ended");
    let cookie = session::session_cookie(&state, &token);
    let target = Redirect::to("/portal/account?notice=password-changed");
    Ok(([cookie], target).into_response())
}

fn account_markup(
    state: &PortalState,
    viewer: &Viewer,
    notice_text: Option<&str>,
    messages: &[String],
) -> Markup {
    let role = match viewer.account.role {
        Role::Provider => "API provider: sees every application and the provider pages",
        Role::Consumer => "API consumer: sees the applications it subscribed",
    };
    let body = html! {
        h1 { "Account" }
        (notice(notice_text))
        dl class="facts" {
            dt { "Email" } dd { (viewer.account.email) }
            dt { "Role" } dd { (role) }
            dt { "Member since" } dd { (layout::time_element(viewer.account.created_at)) }
        }
        h2 id="password-heading" { "Change password" }
        (errors(messages))
        form method="post" action="/portal/account/password" class="stack" aria-labelledby="password-heading" {
            (csrf_field(&viewer.session.csrf_token))
            div {
                label for="current_password" { "Current password" }
                input id="current_password" name="current_password" type="password" autocomplete="current-password" required;
            }
            div {
                label for="new_password" { "New password" }
                input id="new_password" name="new_password" type="password" autocomplete="new-password"
                    minlength=(password::MIN_LENGTH) maxlength=(password::MAX_LENGTH) required aria-describedby="new_password_hint";
                p class="hint" id="new_password_hint" { "At least " (password::MIN_LENGTH) " characters. Changing it signs out every other session." }
            }
            div { button type="submit" { "Change password" } }
        }
    };
    layout::page(state, Some(viewer), "Account", body)
}

/// Renders the sign-in or sign-up page, setting the form cookie when the
/// browser has none.
fn credentials_page(
    state: &PortalState,
    headers: &HeaderMap,
    kind: Kind,
    email: &str,
    messages: &[String],
    status: StatusCode,
) -> Response {
    let existing = session::cookie(headers, FORM_COOKIE).map(str::to_owned);
    let token = existing.clone().unwrap_or_else(session::random_token);
    let (title, action, button, autocomplete) = match kind {
        Kind::SignUp => (
            "Create an account",
            "/portal/signup",
            "Create account",
            "new-password",
        ),
        Kind::SignIn => ("Sign in", "/portal/signin", "Sign in", "current-password"),
    };
    let body = html! {
        h1 { (title) }
        (errors(messages))
        form method="post" action=(action) class="stack" {
            (csrf_field(&token))
            div {
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="email" required value=(email) maxlength=(MAX_EMAIL_LENGTH);
            }
            div {
                label for="password" { "Password" }
                @if kind == Kind::SignUp {
                    input id="password" name="password" type="password" autocomplete=(autocomplete)
                        minlength=(password::MIN_LENGTH) maxlength=(password::MAX_LENGTH) required aria-describedby="password_hint";
                    p class="hint" id="password_hint" { "At least " (password::MIN_LENGTH) " characters." }
                } @else {
                    input id="password" name="password" type="password" autocomplete=(autocomplete) required;
                }
            }
            div { button type="submit" { (button) } }
        }
        @match kind {
            Kind::SignUp => p { "Have an account? " a href="/portal/signin" { "Sign in" } "." },
            Kind::SignIn => p { "New here? " a href="/portal/signup" { "Create an account" } "." },
        }
    };
    let page = layout::page(state, None, title, body);
    let mut response = layout::respond(status, page);
    if existing.is_none() {
        let (name, value) =
            session::set_cookie(FORM_COOKIE, &token, 3600, state.settings.secure_cookie);
        response.headers_mut().append(name, value);
    }
    response
}

/// Checks the double-submit token of the sign-in and sign-up forms.
fn check_form_cookie(headers: &HeaderMap, submitted: &str) -> Result<(), PortalError> {
    let expected = session::cookie(headers, FORM_COOKIE).unwrap_or_default();
    session::check_token(expected, submitted)
}

/// Trims and lowercases an email, or explains why it is not one.
fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let invalid = || {
        Err(format!(
            "{email:?} is not a valid email address; use the form name@example.com."
        ))
    };
    if email.is_empty() || email.len() > MAX_EMAIL_LENGTH {
        return invalid();
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid();
    }
    let Some((local, domain)) = email.split_once('@') else {
        return invalid();
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return invalid();
    }
    Ok(email)
}

/// Returns 16 random bytes as hex, for account ids.
fn uuid_like() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            normalize_email(" Dev@Example.COM ").unwrap(),
            "dev@example.com"
        );
        assert!(normalize_email("no-at-sign").is_err());
        assert!(normalize_email("a@b@example.com").is_err());
        assert!(normalize_email("a@localhost").is_err());
        assert!(normalize_email("a b@example.com").is_err());
    }
}
