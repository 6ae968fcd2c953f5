//! One HTTP request: routing, signature verification, recording and the
//! scripted response.

use crate::behaviour::Decision;
use crate::record::{ReceivedWebhook, Verification};
use crate::state::Shared;
use bytes::Bytes;
use hookline_core::signing::{verify, SigningSecret};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;

/// Maximum distance between `webhook-timestamp` and the receiver's clock,
/// the tolerance Standard Webhooks recommends.
const TOLERANCE_SECS: i64 = 5 * 60;
/// Maximum request body size. Larger bodies get a 413 response and are not
/// recorded.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const HOOKS_PREFIX: &str = "/hooks/";

const NOT_FOUND: u16 = 404;
const METHOD_NOT_ALLOWED: u16 = 405;
const UNAUTHORIZED: u16 = 401;

/// The Standard Webhooks headers of a request, where present and UTF-8.
struct SignatureHeaders<'a> {
    id: Option<&'a str>,
    timestamp: Option<&'a str>,
    signature: Option<&'a str>,
}

/// Records one request and builds its response. Every request whose body
/// could be read is recorded, including those rejected with 404, 405 or 401.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer_addr: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let received_at = OffsetDateTime::now_utc();
    let received_instant = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();

    let body = match read_body(body).await {
        Ok(body) => body,
        Err(error) => {
            let status = error.status();
            tracing::debug!(%peer_addr, path, status, %error, "failed to read the request body");
            return Ok(response(&Decision::status(status)));
        }
    };

    let hook = hook_name(path);
    let endpoint = hook.unwrap_or(path);
    let headers = SignatureHeaders::from_map(&parts.headers);
    let secret = shared.secret(endpoint);
    let now = received_at.unix_timestamp();
    let verification = verify_request(secret.as_deref(), &headers, &body, now);
    if let Verification::Failed(reason) = &verification {
        tracing::debug!(%peer_addr, path, %reason, "webhook failed verification");
    }

    let fixed_status = rejection_status(hook.is_some(), &parts.method, &verification);
    let arrival = Arrival {
        peer_addr,
        received_at,
        received_instant,
    };
    let webhook = to_record(&parts, endpoint, &headers, body, verification, arrival);
    let decision = shared.record(webhook, parts.headers.clone(), fixed_status);
    tracing::debug!(%peer_addr, path, status = decision.status, "responded to webhook request");

    // Recording happens before the delay, so a client that gives up during
    // the delay still appears in the log with the decided status.
    if let Some(delay) = decision.delay {
        tokio::time::sleep(delay).await;
    }
    if decision.hang {
        // hyper drops this future when the client resets the stream or
        // closes the connection, which ends the wait.
        std::future::pending::<()>().await;
    }
    Ok(response(&decision))
}

/// Peer address and arrival time of a request.
struct Arrival {
    peer_addr: SocketAddr,
    received_at: OffsetDateTime,
    received_instant: Instant,
}

/// Builds the log entry. `attempt_index` and `responded_status` stay 0
/// until [`Shared::record`] sets them.
fn to_record(
    parts: &Parts,
    endpoint: &str,
    headers: &SignatureHeaders<'_>,
    body: Bytes,
    verification: Verification,
    arrival: Arrival,
) -> ReceivedWebhook {
    ReceivedWebhook {
        endpoint: endpoint.to_owned(),
        webhook_id: headers.id.unwrap_or_default().to_owned(),
        timestamp: headers
            .timestamp
            .and_then(|value| value.parse().ok())
            .unwrap_or(0),
        signature: headers.signature.unwrap_or_default().to_owned(),
        idempotency_key: header(&parts.headers, "idempotency-key").map(str::to_owned),
        content_type: header(&parts.headers, CONTENT_TYPE.as_str()).map(str::to_owned),
        body,
        method: parts.method.clone(),
        version: parts.version,
        peer_addr: arrival.peer_addr,
        verification,
        responded_status: 0,
        received_at: arrival.received_at,
        received_instant: arrival.received_instant,
        attempt_index: 0,
    }
}

/// Reads the whole body, up to [`MAX_BODY_BYTES`].
async fn read_body(body: Incoming) -> Result<Bytes, BodyError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge)
        }
        Err(error) => Err(BodyError::Read(error)),
    }
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body exceeds {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("failed to read the request body: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
}

impl BodyError {
    fn status(&self) -> u16 {
        match self {
            Self::TooLarge => 413,
            Self::Read(_) => 400,
        }
    }
}

/// Returns the status of a request that the endpoint's behaviour does not
/// decide: 404 for paths other than `/hooks/{name}`, 405 for methods other
/// than POST, 401 for a failed verification, in that order.
fn rejection_status(is_hook: bool, method: &Method, verification: &Verification) -> Option<u16> {
    if !is_hook {
        Some(NOT_FOUND)
    } else if method != Method::POST {
        Some(METHOD_NOT_ALLOWED)
    } else if matches!(verification, Verification::Failed(_)) {
        Some(UNAUTHORIZED)
    } else {
        None
    }
}

/// Returns the endpoint name of `/hooks/{name}`, or `None` for any other path.
fn hook_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix(HOOKS_PREFIX)?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some(name)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

impl<'a> SignatureHeaders<'a> {
    fn from_map(headers: &'a HeaderMap) -> Self {
        Self {
            id: header(headers, "webhook-id"),
            timestamp: header(headers, "webhook-timestamp"),
            signature: header(headers, "webhook-signature"),
        }
    }
}

/// Checks the signature against the endpoint's secret, if it has one.
fn verify_request(
    secret: Option<&SigningSecret>,
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    now: i64,
) -> Verification {
    let Some(secret) = secret else {
        return Verification::NoSecret;
    };
    let Some(id) = headers.id else {
        return Verification::Failed("missing webhook-id header".to_owned());
    };
    let Some(raw_timestamp) = headers.timestamp else {
        return Verification::Failed("missing webhook-timestamp header".to_owned());
    };
    let Ok(timestamp) = raw_timestamp.parse::<i64>() else {
        let reason = format!("invalid webhook-timestamp {raw_timestamp:?}: expected Unix seconds");
        return Verification::Failed(reason);
    };
    let Some(signature) = headers.signature else {
        return Verification::Failed("missing webhook-signature header".to_owned());
    };
    match verify(secret, id, timestamp, signature, body, now, TOLERANCE_SECS) {
        Ok(()) => Verification::Verified,
        Err(error) => Verification::Failed(error.to_string()),
    }
}

fn response(decision: &Decision) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() =
        StatusCode::from_u16(decision.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(seconds) = decision.retry_after_secs {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if decision.status == METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_name_accepts_single_segment_only() {
        assert_eq!(hook_name("/hooks/orders"), Some("orders"));
        assert_eq!(hook_name("/hooks/"), None);
        assert_eq!(hook_name("/hooks/a/b"), None);
        assert_eq!(hook_name("/other"), None);
        assert_eq!(hook_name("/hooksorders"), None);
    }

    #[test]
    fn verify_request_reports_missing_headers() {
        let secret = SigningSecret::generate();
        let empty = SignatureHeaders {
            id: None,
            timestamp: None,
            signature: None,
        };
        let missing_id = verify_request(Some(&secret), &empty, b"{}", 0);
        assert_eq!(
            missing_id,
            Verification::Failed("missing webhook-id header".to_owned())
        );

        let bad_timestamp = SignatureHeaders {
            id: Some("msg_1"),
            timestamp: Some("yesterday"),
            signature: Some("v1,AAAA"),
        };
        let Verification::Failed(reason) = verify_request(Some(&secret), &bad_timestamp, b"{}", 0)
        else {
            panic!("a non-numeric timestamp must fail verification");
        };
        assert!(reason.contains("invalid webhook-timestamp"), "{reason}");

        assert_eq!(
            verify_request(None, &empty, b"{}", 0),
            Verification::NoSecret
        );
    }
}
