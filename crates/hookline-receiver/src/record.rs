//! Records of received requests, and counters over them.

use bytes::Bytes;
use hyper::{Method, Version};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Instant;
use time::OffsetDateTime;

/// Outcome of checking a request's Standard Webhooks signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// One of the `v1,` signatures matches and the timestamp is within tolerance.
    Verified,
    /// A secret is set for the endpoint but the request does not verify.
    /// The reason names the missing header, bad timestamp or signature mismatch.
    Failed(String),
    /// No secret is set for the endpoint, so nothing was checked.
    NoSecret,
}

/// One received request and the receiver's response to it.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// The `{name}` segment of `/hooks/{name}`, or the whole path for other paths.
    pub endpoint: String,
    /// The `webhook-id` header, or empty when missing or not UTF-8.
    pub webhook_id: String,
    /// The `webhook-timestamp` header in Unix seconds, or 0 when missing or invalid.
    pub timestamp: i64,
    /// The `webhook-signature` header, or empty when missing or not UTF-8.
    pub signature: String,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub method: Method,
    /// HTTP version of the request: `HTTP/1.1` or `HTTP/2.0`.
    pub version: Version,
    /// Client address of the connection. Requests that share it came over one connection.
    pub peer_addr: SocketAddr,
    pub verification: Verification,
    /// Status of the receiver's response, or 0 for a request that
    /// [`Behaviour::Hang`](crate::Behaviour::Hang) never responded to.
    pub responded_status: u16,
    pub received_at: OffsetDateTime,
    pub received_instant: Instant,
    /// Position of this request among those with the same endpoint and
    /// `webhook-id`, starting at 1.
    pub attempt_index: u32,
}

impl ReceivedWebhook {
    /// Returns whether the receiver responded with a 2xx status.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.responded_status)
    }

    /// Parses the body as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
    }
}

/// Counters over all recorded requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverStats {
    /// Requests recorded, whatever their path, method or outcome.
    pub total: u64,
    pub verified: u64,
    pub failed_verification: u64,
    /// Requests to endpoints without a secret, including unknown paths.
    pub no_secret: u64,
    /// Requests that got a 2xx response.
    pub succeeded: u64,
    /// 2xx responses to an endpoint and `webhook-id` that already had one.
    /// A consumer would process each of these deliveries twice.
    pub duplicates: u64,
}
