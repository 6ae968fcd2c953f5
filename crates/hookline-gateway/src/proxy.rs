//! The proxied form, a drop-in for the 3scale reference deployment's signing
//! proxy: the APIcast Camel policy sends the webhook call with the headers
//! `webhook-url` (where to send it) and `user_key` (the application's key).
//!
//! The gateway signs the raw body with HMAC-SHA256 keyed with the
//! `user_key`'s UTF-8 bytes (`X-HMAC-SIGNATURE: <base64>` by default, see
//! [`BodyHmacSettings`](crate::BodyHmacSettings)). It removes both headers
//! and its own credentials, forwards the request with the same method and
//! body through the SSRF-guarded client, and returns the consumer's
//! response.
//! The proxied form is not rate limited here: it has no Hookline
//! application to count against.

use crate::auth::authorize;
use crate::{spans, Gateway, GatewayError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, Method};
use axum::response::Response;
use bytes::Bytes;
use hookline_core::signing::body_hmac;
use std::error::Error as _;
use std::sync::Arc;
use tracing::Instrument;

/// Header that names the destination URL.
pub const WEBHOOK_URL_HEADER: &str = "webhook-url";
/// Header that carries the application's 3scale `user_key`, the HMAC key.
pub const USER_KEY_HEADER: &str = "user_key";

/// Headers that apply to one connection only (RFC 9110, section 7.6.1), and
/// those the gateway sets itself; none is forwarded in either direction.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Handles one proxied request.
pub async fn handle(
    State(gateway): State<Arc<Gateway>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let span = spans::proxy(&method, &headers);
    let result = forward(&gateway, method, &headers, body)
        .instrument(span.clone())
        .await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.status(),
    };
    spans::record_status(&span, status);
    let outcome = match &result {
        Ok(_) => "forwarded",
        Err(GatewayError::UpstreamFailed { .. } | GatewayError::UpstreamTimeout { .. }) => {
            "upstream_failed"
        }
        Err(_) => "rejected",
    };
    metrics::counter!("hookline_gateway_proxied_total", "outcome" => outcome).increment(1);
    result
}

async fn forward(
    gateway: &Gateway,
    method: Method,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, GatewayError> {
    authorize(headers, &gateway.settings.token)?;
    let (raw_url, user_key) = required_headers(headers)?;
    let url = gateway
        .policy
        .check_url(raw_url)
        .map_err(|error| GatewayError::InvalidHeader {
            name: WEBHOOK_URL_HEADER,
            reason: error.to_string(),
        })?;

    let hmac = &gateway.settings.hmac;
    let signature = body_hmac(user_key, &body, hmac.encoding, &hmac.prefix);
    let mut outgoing = forwarded_headers(headers, &hmac.header);
    let signature = signature
        .parse()
        .expect("base64 and hex are valid header values");
    outgoing.insert(hmac.header.clone(), signature);

    let sent = gateway
        .client
        .request(method, url.clone())
        .headers(outgoing)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => Ok(relay(response)),
        Err(error) => Err(upstream_error(url.as_str(), &error)),
    }
}

/// Returns the values of `webhook-url` and `user_key`, naming whichever is
/// missing.
fn required_headers(headers: &HeaderMap) -> Result<(&str, &str), GatewayError> {
    let url = headers.get(WEBHOOK_URL_HEADER);
    let key = headers.get(USER_KEY_HEADER);
    let (url, key) = match (url, key) {
        (Some(url), Some(key)) => (url, key),
        (None, Some(_)) => return Err(GatewayError::MissingHeader(WEBHOOK_URL_HEADER)),
        (Some(_), None) => return Err(GatewayError::MissingHeader(USER_KEY_HEADER)),
        (None, None) => return Err(GatewayError::MissingHeader("webhook-url and user_key")),
    };
    Ok((
        header_text(WEBHOOK_URL_HEADER, url)?,
        header_text(USER_KEY_HEADER, key)?,
    ))
}

fn header_text<'a>(
    name: &'static str,
    value: &'a axum::http::HeaderValue,
) -> Result<&'a str, GatewayError> {
    let invalid = |reason: &str| GatewayError::InvalidHeader {
        name,
        reason: reason.to_owned(),
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("must be visible ASCII"))?
        .trim();
    if text.is_empty() {
        return Err(invalid("must not be empty"));
    }
    Ok(text)
}

/// Copies the request headers except the two proxy headers, the gateway's
/// credentials, `host`, hop-by-hop headers (also those that `connection`
/// names) and any signature header the caller sent.
fn forwarded_headers(headers: &HeaderMap, signature_header: &HeaderName) -> HeaderMap {
    let named_by_connection = connection_tokens(headers);
    let mut forwarded = HeaderMap::new();
    for (name, value) in headers {
        let dropped = name == WEBHOOK_URL_HEADER
            || name == USER_KEY_HEADER
            || name == header::AUTHORIZATION
            || name == header::HOST
            || name == signature_header
            || HOP_BY_HOP.contains(&name.as_str())
            || named_by_connection
                .iter()
                .any(|token| token == name.as_str());
        if !dropped {
            forwarded.append(name.clone(), value.clone());
        }
    }
    forwarded
}

/// Header names listed in `connection`, lowercase.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

/// Streams the consumer's response back with its status and end-to-end
/// headers.
fn relay(response: reqwest::Response) -> Response {
    let status = response.status();
    let named_by_connection = connection_tokens(response.headers());
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        let hop = HOP_BY_HOP.contains(&name.as_str())
            || named_by_connection
                .iter()
                .any(|token| token == name.as_str());
        if !hop {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut relayed = Response::new(Body::from_stream(response.bytes_stream()));
    *relayed.status_mut() = status;
    *relayed.headers_mut() = headers;
    relayed
}

fn upstream_error(url: &str, error: &reqwest::Error) -> GatewayError {
    if error.is_timeout() {
        return GatewayError::UpstreamTimeout { url: url.into() };
    }
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::debug!(url, %message, "Proxied webhook request failed");
    GatewayError::UpstreamFailed {
        url: url.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name: HeaderName = name.parse().unwrap();
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn required_headers_names_the_missing_one() {
        let only_key = headers(&[("user_key", "k")]);
        let error = required_headers(&only_key).unwrap_err();
        assert!(matches!(error, GatewayError::MissingHeader("webhook-url")));
        let only_url = headers(&[("webhook-url", "https://a.example/")]);
        let error = required_headers(&only_url).unwrap_err();
        assert!(matches!(error, GatewayError::MissingHeader("user_key")));
        let both = headers(&[("webhook-url", "https://a.example/"), ("user_key", " k ")]);
        assert_eq!(
            required_headers(&both).unwrap(),
            ("https://a.example/", "k")
        );
    }

    #[test]
    fn forwarded_headers_drop_proxy_and_hop_headers() {
        let incoming = headers(&[
            ("webhook-url", "https://a.example/"),
            ("user_key", "k"),
            ("authorization", "Bearer gateway-token"),
            ("proxy-authorization", "Bearer gateway-token"),
            ("host", "gateway:8090"),
            ("connection", "keep-alive, x-trace-hop"),
            ("x-trace-hop", "1"),
            ("x-hmac-signature", "forged"),
            ("content-type", "application/json"),
            ("x-request-id", "r-1"),
        ]);
        let signature = HeaderName::from_static("x-hmac-signature");
        let forwarded = forwarded_headers(&incoming, &signature);
        let names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "x-request-id"]);
    }
}
