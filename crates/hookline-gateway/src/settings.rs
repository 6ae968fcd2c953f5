//! Settings of the gateway (`gateway.*`).

use axum::http::HeaderName;
use hookline_core::signing::BodyHmacEncoding;

/// Settings of one gateway.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Bearer token every request except `/healthz` must carry. Never empty:
    /// the binary refuses to start a gateway without one.
    pub token: String,
    /// Signature header of the proxied form.
    pub hmac: BodyHmacSettings,
    /// Largest request body in bytes (`ingest.max_payload_size`).
    pub max_body_size: usize,
}

/// The body-HMAC signature header that the proxied form adds:
/// `{header}: {prefix}{encoded HMAC-SHA256 of the body}`.
#[derive(Debug, Clone)]
pub struct BodyHmacSettings {
    /// `X-HMAC-SIGNATURE` for the 3scale reference deployment,
    /// `X-Hub-Signature-256` for GitHub-style receivers.
    pub header: HeaderName,
    pub encoding: BodyHmacEncoding,
    /// Text before the encoded MAC, such as `sha256=`; empty by default.
    pub prefix: String,
}

impl Default for BodyHmacSettings {
    fn default() -> Self {
        Self {
            header: HeaderName::from_static("x-hmac-signature"),
            encoding: BodyHmacEncoding::Base64,
            prefix: String::new(),
        }
    }
}
