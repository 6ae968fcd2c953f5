//! Sign-in sessions and CSRF tokens.
//!
//! The session cookie contains 32 random bytes; the store keeps only their
//! SHA-256 hash. Forms of a signed-in account carry the session's CSRF
//! token. The sign-in and sign-up forms, which have no session yet, use a
//! double-submit cookie instead: the form's token must equal the
//! `hookline_portal_form` cookie, which another site can neither read nor set.

use crate::error::PortalError;
use crate::PortalState;
use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hookline_core::portal::{Account, PortalSession, Role};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

pub(crate) const SESSION_COOKIE: &str = "hookline_portal_session";
pub(crate) const FORM_COOKIE: &str = "hookline_portal_form";

/// The signed-in account of a request and its session.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub(crate) account: Account,
    pub(crate) session: PortalSession,
}

impl Viewer {
    pub(crate) fn is_provider(&self) -> bool {
        self.account.role == Role::Provider
    }

    /// Checks a submitted form's CSRF token against the session's.
    pub(crate) fn check_csrf(&self, submitted: &str) -> Result<(), PortalError> {
        check_token(&self.session.csrf_token, submitted)
    }
}

/// The signed-in account, if any.
pub(crate) struct MaybeViewer(pub(crate) Option<Viewer>);

impl FromRequestParts<PortalState> for MaybeViewer {
    type Rejection = PortalError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &PortalState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(Self(None));
        };
        let now = OffsetDateTime::now_utc();
        let Some(session) = state.portal.session(&hash_token(token), now).await? else {
            return Ok(Self(None));
        };
        let Some(account) = state.portal.account(&session.account_id).await? else {
            return Ok(Self(None));
        };
        Ok(Self(Some(Viewer { account, session })))
    }
}

impl FromRequestParts<PortalState> for Viewer {
    type Rejection = PortalError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &PortalState,
    ) -> Result<Self, Self::Rejection> {
        let MaybeViewer(viewer) = MaybeViewer::from_request_parts(parts, state).await?;
        viewer.ok_or(PortalError::SignInRequired)
    }
}

/// Compares a submitted token with the expected one in constant time.
pub(crate) fn check_token(expected: &str, submitted: &str) -> Result<(), PortalError> {
    let matches = !expected.is_empty()
        && expected.len() == submitted.len()
        && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()));
    if matches {
        Ok(())
    } else {
        Err(PortalError::Forbidden(
            "The form's security token is missing or out of date. Reload the page and submit the form again.",
        ))
    }
}

/// Returns 32 random bytes as unpadded URL-safe base64.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Returns the hex-encoded SHA-256 of a session token, the stored key.
pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Returns the value of the cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Builds a `Set-Cookie` header scoped to the portal. `max_age` of zero
/// deletes the cookie.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age_secs: u64,
    secure: bool,
) -> (axum::http::HeaderName, HeaderValue) {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/portal; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}"
    );
    let value = HeaderValue::from_str(&text).expect("cookie values are base64url");
    (SET_COOKIE, value)
}

/// Starts a session for `account` and returns it with the cookie token.
pub(crate) async fn start(
    state: &PortalState,
    account: &Account,
) -> Result<(PortalSession, String), PortalError> {
    let token = random_token();
    let now = OffsetDateTime::now_utc();
    let session = PortalSession {
        token_hash: hash_token(&token),
        account_id: account.id.clone(),
        csrf_token: random_token(),
        created_at: now,
        expires_at: now + state.settings.session_ttl,
    };
    state.portal.create_session(&session).await?;
    Ok((session, token))
}

/// Builds the `Set-Cookie` header that hands a new session token to the browser.
pub(crate) fn session_cookie(
    state: &PortalState,
    token: &str,
) -> (axum::http::HeaderName, HeaderValue) {
    let max_age = state.settings.session_ttl.as_secs();
    set_cookie(SESSION_COOKIE, token, max_age, state.settings.secure_cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check_accepts_only_equal_tokens() {
        assert!(check_token("abc", "abc").is_ok());
        assert!(check_token("abc", "abd").is_err());
        assert!(check_token("abc", "").is_err());
        assert!(check_token("", "").is_err());
        assert!(check_token("abc", "abcd").is_err());
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; hookline_portal_session=tok; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, FORM_COOKIE), None);
    }

    #[test]
    fn stored_key_is_sha256_of_token() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
