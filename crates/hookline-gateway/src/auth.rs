//! The bearer token check that keeps the gateway from being an open relay.

use crate::GatewayError;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// Checks `Authorization: Bearer <token>`, or `Proxy-Authorization` for
/// callers that treat the gateway as an HTTP proxy.
pub(crate) fn authorize(headers: &HeaderMap, token: &str) -> Result<(), GatewayError> {
    let presented = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION]
        .iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .filter_map(|value| value.strip_prefix("Bearer "))
        .any(|presented| tokens_match(presented.trim(), token));
    if presented && !token.is_empty() {
        Ok(())
    } else {
        Err(GatewayError::Unauthorized)
    }
}

/// Compares the SHA-256 digests of both tokens without an early exit, so the
/// time taken reveals nothing about how much of a guess was right.
fn tokens_match(presented: &str, expected: &str) -> bool {
    let left = Sha256::digest(presented.as_bytes());
    let right = Sha256::digest(expected.as_bytes());
    let difference = left
        .iter()
        .zip(right.iter())
        .fold(0u8, |difference, (a, b)| difference | (a ^ b));
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_token_is_required() {
        let token = "s3cret";
        assert!(authorize(&with(header::AUTHORIZATION, "Bearer s3cret"), token).is_ok());
        assert!(authorize(&with(header::PROXY_AUTHORIZATION, "Bearer s3cret"), token).is_ok());
        assert!(authorize(&with(header::AUTHORIZATION, "Bearer s3cre"), token).is_err());
        assert!(authorize(&with(header::AUTHORIZATION, "Basic s3cret"), token).is_err());
        assert!(authorize(&HeaderMap::new(), token).is_err());
    }

    #[test]
    fn empty_token_admits_nobody() {
        assert!(authorize(&with(header::AUTHORIZATION, "Bearer "), "").is_err());
    }
}
