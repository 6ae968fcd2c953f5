//! Egress through the egress gateway (`dispatcher.gateway_url`): the
//! dispatcher posts each attempt to the gateway, which signs and sends it
//! and returns the consumer's response. The dispatcher then signs and
//! sends nothing itself, so the policy chain runs once per attempt, in the
//! gateway.

use crate::egress::{AttemptReport, Egress, EgressOutcome, NotSent, NotSentCause};
use crate::gateway_protocol::{AttemptRequest, AttemptResponse, GatewayErrorBody, ATTEMPTS_PATH};
use async_trait::async_trait;
use hookline_core::directory::Endpoint;
use hookline_core::queue::DeliveryTask;
use hookline_core::trace::{TraceParent, TRACEPARENT_HEADER};
use hookline_core::AttemptResult;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Settings of the gateway client.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Base URL of the gateway, such as `http://hookline-gateway:8090`.
    pub url: url::Url,
    /// Bearer token the gateway requires (`gateway.token`).
    pub token: String,
    /// Deadline of one request to the gateway. It must outlast the gateway's
    /// own attempt deadline (`delivery.timeout`).
    pub timeout: Duration,
    /// Whether the gateway counts each attempt against its plan
    /// (`gateway.count_limits`), so the dispatcher does not.
    pub counts_limits: bool,
}

/// Failure to build the gateway client.
#[derive(Debug, thiserror::Error)]
pub enum GatewayEgressError {
    #[error("invalid dispatcher.gateway_url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the gateway client: {0}")]
    Build(#[source] reqwest::Error),
}

/// [`Egress`] that forwards attempts to the egress gateway.
pub struct GatewayEgress {
    client: reqwest::Client,
    attempts_url: url::Url,
    token: String,
    counts_limits: bool,
}

impl GatewayEgress {
    pub fn new(settings: GatewaySettings) -> Result<Self, GatewayEgressError> {
        let invalid = |reason: &str| GatewayEgressError::InvalidUrl {
            url: settings.url.to_string(),
            reason: reason.to_owned(),
        };
        if !matches!(settings.url.scheme(), "http" | "https") {
            return Err(invalid("expected http:// or https://"));
        }
        // A base path (a gateway behind a prefix) is kept: `…/base` and
        // `…/base/` both lead to `…/base/v1/attempts`.
        let mut base = settings.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let attempts_url = base
            .join(ATTEMPTS_PATH.trim_start_matches('/'))
            .map_err(|error| invalid(&error.to_string()))?;
        // The gateway is an address the operator configured, usually on a
        // private network, so the SSRF guard of consumer URLs does not apply.
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .build()
            .map_err(GatewayEgressError::Build)?;
        Ok(Self {
            client,
            attempts_url,
            token: settings.token,
            counts_limits: settings.counts_limits,
        })
    }

    /// Posts one attempt to the gateway and reads its response.
    ///
    /// A request that fails or times out after the gateway sent the attempt
    /// is reported as not sent, so the attempt may reach the consumer twice.
    /// Both copies carry the same idempotency key and `webhook-id`.
    pub async fn forward(&self, task: &DeliveryTask) -> EgressOutcome {
        let request = AttemptRequest::V1(task.clone());
        let mut builder = self
            .client
            .post(self.attempts_url.clone())
            .bearer_auth(&self.token);
        // The gateway's span becomes a child of the attempt's span.
        if let Some(parent) = TraceParent::of_span(&tracing::Span::current()) {
            builder = builder.header(TRACEPARENT_HEADER, parent.to_string());
        }
        let sent = builder.json(&request).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return not_sent(
                    "gateway_unavailable",
                    format!("egress gateway request failed: {error}"),
                    None,
                )
            }
        };
        let status = response.status().as_u16();
        if status == 200 {
            return match response.json::<AttemptResponse>().await {
                Ok(body) => EgressOutcome::Attempted(body.into()),
                Err(error) => not_sent(
                    "gateway_unavailable",
                    format!("egress gateway sent an invalid attempt response: {error}"),
                    None,
                ),
            };
        }
        let retry_after = retry_after_secs(&response).map(Duration::from_secs);
        let message = match response.json::<GatewayErrorBody>().await {
            Ok(body) => format!("{} ({})", body.error.message, body.error.code),
            Err(_) => format!("egress gateway responded with HTTP {status}"),
        };
        not_sent(class_of(status), message, retry_after)
    }
}

#[async_trait]
impl Egress for GatewayEgress {
    /// Returns the consumer's response as the gateway reported it. An attempt
    /// the gateway did not send is reported as an error of the gateway's
    /// class, with the gateway's `Retry-After`. The dispatcher calls
    /// [`Egress::try_attempt`] instead, which keeps the two apart.
    async fn attempt(&self, task: &DeliveryTask, endpoint: &Endpoint) -> AttemptReport {
        let started_at = OffsetDateTime::now_utc();
        let clock = Instant::now();
        match self.try_attempt(task, endpoint).await {
            EgressOutcome::Attempted(report) => report,
            EgressOutcome::NotSent(not_sent) => AttemptReport {
                started_at,
                duration: clock.elapsed(),
                result: AttemptResult::Error {
                    class: not_sent.class.to_owned(),
                    message: not_sent.message,
                },
                response_excerpt: None,
                response_truncated: false,
                retry_after: not_sent.retry_after,
            },
        }
    }

    /// Reports 429 as rate-limited and an unreachable or failing gateway as
    /// unavailable, so neither uses up the delivery's retries. A 400 is a
    /// failed attempt, because the same request would be rejected again.
    async fn try_attempt(&self, task: &DeliveryTask, _endpoint: &Endpoint) -> EgressOutcome {
        let started_at = OffsetDateTime::now_utc();
        let clock = Instant::now();
        match self.forward(task).await {
            EgressOutcome::NotSent(not_sent) if not_sent.class == "gateway_rejected" => {
                EgressOutcome::Attempted(AttemptReport {
                    started_at,
                    duration: clock.elapsed(),
                    result: AttemptResult::Error {
                        class: not_sent.class.to_owned(),
                        message: not_sent.message,
                    },
                    response_excerpt: None,
                    response_truncated: false,
                    retry_after: None,
                })
            }
            outcome => outcome,
        }
    }

    fn counts_limits(&self) -> bool {
        self.counts_limits
    }
}

fn not_sent(class: &'static str, message: String, retry_after: Option<Duration>) -> EgressOutcome {
    let cause = if class == "gateway_rate_limited" {
        NotSentCause::RateLimited
    } else {
        NotSentCause::Unavailable
    };
    EgressOutcome::NotSent(NotSent {
        cause,
        class,
        message,
        retry_after,
    })
}

/// Error class of a gateway status other than 200.
fn class_of(status: u16) -> &'static str {
    match status {
        429 => "gateway_rate_limited",
        404 => "application_not_found",
        409 => "application_disabled",
        401 | 403 => "gateway_unauthorized",
        400..=499 => "gateway_rejected",
        _ => "gateway_unavailable",
    }
}

fn retry_after_secs(response: &reqwest::Response) -> Option<u64> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    value.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> GatewaySettings {
        GatewaySettings {
            url: url.parse().unwrap(),
            token: "t".into(),
            timeout: Duration::from_secs(1),
            counts_limits: false,
        }
    }

    #[test]
    fn attempts_url_joins_the_base() {
        let egress = GatewayEgress::new(settings("http://127.0.0.1:8090")).unwrap();
        assert_eq!(
            egress.attempts_url.as_str(),
            "http://127.0.0.1:8090/v1/attempts"
        );
        for base in ["https://gw.internal/base", "https://gw.internal/base/"] {
            let egress = GatewayEgress::new(settings(base)).unwrap();
            assert_eq!(
                egress.attempts_url.as_str(),
                "https://gw.internal/base/v1/attempts"
            );
        }
    }

    #[test]
    fn other_schemes_are_rejected() {
        let error = GatewayEgress::new(settings("ftp://gw.internal/")).err();
        assert!(matches!(error, Some(GatewayEgressError::InvalidUrl { .. })));
    }

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(class_of(429), "gateway_rate_limited");
        assert_eq!(class_of(401), "gateway_unauthorized");
        assert_eq!(class_of(404), "application_not_found");
        assert_eq!(class_of(400), "gateway_rejected");
        assert_eq!(class_of(503), "gateway_unavailable");
    }
}
