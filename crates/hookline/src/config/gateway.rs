//! Configuration of the egress gateway (`gateway.*`) and of a dispatcher
//! that sends through it (`dispatcher.*`).

use super::ConfigError;
use hookline_core::signing::BodyHmacEncoding;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Bearer token of the gateway; dispatchers send it, the gateway checks it.
    pub token: String,
    /// Signature header of the proxied form.
    pub hmac_header: String,
    pub hmac_encoding: HmacEncoding,
    pub hmac_prefix: String,
    /// Whether the gateway, not the dispatchers, counts attempts against
    /// their plans.
    pub count_limits: bool,
}

/// `gateway.hmac_encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacEncoding {
    Base64,
    Hex,
}

impl From<HmacEncoding> for BodyHmacEncoding {
    fn from(encoding: HmacEncoding) -> Self {
        match encoding {
            HmacEncoding::Base64 => Self::Base64,
            HmacEncoding::Hex => Self::Hex,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Base URL of the egress gateway; unset means the dispatcher signs and
    /// sends itself.
    pub gateway_url: Option<String>,
}

impl GatewayConfig {
    /// Checks the gateway keys, and that a dispatcher with a gateway URL has
    /// the token to present.
    pub(crate) fn validate(&self, dispatcher: &DispatcherConfig) -> Result<(), ConfigError> {
        if axum::http::HeaderName::try_from(self.hmac_header.as_str()).is_err() {
            return Err(ConfigError::Invalid {
                key: "gateway.hmac_header",
                problem: format!("{:?} is not a valid HTTP header name", self.hmac_header),
            });
        }
        if axum::http::HeaderValue::try_from(self.hmac_prefix.as_str()).is_err() {
            return Err(ConfigError::Invalid {
                key: "gateway.hmac_prefix",
                problem: "must be visible ASCII, for example \"sha256=\"".into(),
            });
        }
        let Some(url) = &dispatcher.gateway_url else {
            return Ok(());
        };
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => {
                return Err(ConfigError::Invalid {
                    key: "dispatcher.gateway_url",
                    problem: format!("{url:?} is not an http:// or https:// URL"),
                })
            }
        }
        if self.token.is_empty() {
            return Err(ConfigError::Invalid {
                key: "gateway.token",
                problem: "must be set when dispatcher.gateway_url is set: the dispatcher authenticates with it".into(),
            });
        }
        Ok(())
    }
}
