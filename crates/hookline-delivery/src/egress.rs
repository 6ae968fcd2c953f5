//! The policy chain that every attempt passes through exactly once: sign,
//! send, capture the response.

use crate::client::BlockedAddress;
use async_trait::async_trait;
use bytes::Bytes;
use hookline_core::directory::Endpoint;
use hookline_core::queue::DeliveryTask;
use hookline_core::signing::signature_header;
use hookline_core::webhook_url::AddressPolicy;
use hookline_core::AttemptResult;
use std::error::Error as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Bytes of a response body kept in the attempt log.
pub const RESPONSE_CAPTURE_LIMIT: usize = 4096;

/// Outcome of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub started_at: OffsetDateTime,
    pub duration: Duration,
    pub result: AttemptResult,
    pub response_excerpt: Option<String>,
    pub response_truncated: bool,
    /// `Retry-After` of a 429 or 503 response.
    pub retry_after: Option<Duration>,
}

/// Sends one attempt of a delivery to its endpoint.
#[async_trait]
pub trait Egress: Send + Sync + 'static {
    async fn attempt(&self, task: &DeliveryTask, endpoint: &Endpoint) -> AttemptReport;
}

/// In-process egress: signs with the Standard Webhooks scheme and sends with
/// the shared client.
pub struct HttpEgress {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl HttpEgress {
    pub fn new(client: reqwest::Client, policy: AddressPolicy) -> Self {
        Self { client, policy }
    }

    async fn send(
        &self,
        task: &DeliveryTask,
        endpoint: &Endpoint,
    ) -> Result<reqwest::Response, AttemptResult> {
        let url = self
            .policy
            .check_url(&endpoint.url)
            .map_err(|error| AttemptResult::Error {
                class: "blocked_address".into(),
                message: error.to_string(),
            })?;
        if let Some(ip) = literal_ip(&url) {
            // A literal address never reaches the resolver, so it is checked here.
            if !self.policy.is_allowed(ip) {
                return Err(AttemptResult::Error {
                    class: "blocked_address".into(),
                    message: format!("{ip} is a blocked address"),
                });
            }
        }

        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = signature_header(
            &endpoint.secrets,
            task.webhook_id.as_str(),
            timestamp,
            &task.payload,
        );
        self.client
            .post(url)
            .header("webhook-id", task.webhook_id.as_str())
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .header("idempotency-key", task.idempotency_key.as_str())
            .header(
                reqwest::header::CONTENT_TYPE,
                task.content_type.media_type(),
            )
            .body(task.payload.clone())
            .send()
            .await
            .map_err(|error| classify(&error))
    }
}

#[async_trait]
impl Egress for HttpEgress {
    async fn attempt(&self, task: &DeliveryTask, endpoint: &Endpoint) -> AttemptReport {
        let started_at = OffsetDateTime::now_utc();
        let clock = Instant::now();
        let mut report = AttemptReport {
            started_at,
            duration: Duration::ZERO,
            result: AttemptResult::Response { status: 0 },
            response_excerpt: None,
            response_truncated: false,
            retry_after: None,
        };
        match self.send(task, endpoint).await {
            Ok(response) => {
                let status = response.status().as_u16();
                report.retry_after = retry_after(&response);
                report.result = AttemptResult::Response { status };
                let (excerpt, truncated) = read_capped(response, RESPONSE_CAPTURE_LIMIT).await;
                report.response_excerpt = Some(String::from_utf8_lossy(&excerpt).into_owned());
                report.response_truncated = truncated;
            }
            Err(result) => report.result = result,
        }
        report.duration = clock.elapsed();
        report
    }
}

fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// `Retry-After` in seconds on a 429 or 503; other statuses ignore it.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let status = response.status().as_u16();
    if status != 429 && status != 503 {
        return None;
    }
    // NOTE: only the delay-seconds form is read; an HTTP-date is ignored.
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads at most `limit` bytes of the body, then drops the connection's
/// remaining body. Returns the bytes and whether more were available.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> (Bytes, bool) {
    let mut buffer = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - buffer.len();
                if chunk.len() > room {
                    buffer.extend_from_slice(&chunk[..room]);
                    return (Bytes::from(buffer), true);
                }
                buffer.extend_from_slice(&chunk);
            }
            Ok(None) | Err(_) => return (Bytes::from(buffer), false),
        }
    }
}

/// Maps a client error to an error class for the attempt log.
fn classify(error: &reqwest::Error) -> AttemptResult {
    let mut class = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_redirect() {
        "redirect"
    } else {
        "request"
    };
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<BlockedAddress>() {
            class = "blocked_address";
        } else if cause.is::<rustls::Error>() {
            class = "tls";
        } else if cause.to_string().contains("dns error") {
            class = "dns";
        }
        source = cause.source();
    }
    AttemptResult::Error {
        class: class.into(),
        message: error_chain(error),
    }
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
