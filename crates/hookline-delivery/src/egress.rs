//! The policy chain that every attempt passes through exactly once: sign,
//! send, capture the response.

use crate::client::BlockedAddress;
use crate::schema_header::{schema_id, SCHEMA_ID_HEADER};
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

/// Cause of an attempt that an egress did not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSentCause {
    /// The application's plan window is full in the egress; the delivery
    /// may go out again after `retry_after`.
    RateLimited,
    /// The egress could not send for now: it was unreachable, failed, or
    /// could not read the application.
    Unavailable,
}

/// An attempt that never reached the consumer, so it is neither an attempt
/// of the delivery nor a failure of it.
#[derive(Debug, Clone)]
pub struct NotSent {
    pub cause: NotSentCause,
    /// Error class for logs, such as `gateway_rate_limited`.
    pub class: &'static str,
    pub message: String,
    /// The egress's estimate of when it can send again, if it gave one.
    pub retry_after: Option<Duration>,
}

/// Result of handing one attempt to an [`Egress`].
#[derive(Debug, Clone)]
pub enum EgressOutcome {
    /// The attempt was made, whatever the consumer returned.
    Attempted(AttemptReport),
    /// Nothing was sent.
    NotSent(NotSent),
}

/// Sends one attempt of a delivery to its endpoint.
#[async_trait]
pub trait Egress: Send + Sync + 'static {
    async fn attempt(&self, task: &DeliveryTask, endpoint: &Endpoint) -> AttemptReport;

    /// Makes one attempt, or reports that nothing was sent. An egress that
    /// always sends, like [`HttpEgress`], keeps this default.
    async fn try_attempt(&self, task: &DeliveryTask, endpoint: &Endpoint) -> EgressOutcome {
        EgressOutcome::Attempted(self.attempt(task, endpoint).await)
    }

    /// Whether this egress counts each attempt against the application's
    /// plan itself, so the dispatcher must not count it as well.
    fn counts_limits(&self) -> bool {
        false
    }
}

/// Hard deadline of one attempt unless [`HttpEgress::with_deadline`] sets
/// another; the same as the default `delivery.timeout`.
pub const DEFAULT_ATTEMPT_DEADLINE: Duration = Duration::from_secs(15);

/// In-process egress: signs with the Standard Webhooks scheme and sends with
/// the shared client.
pub struct HttpEgress {
    client: reqwest::Client,
    policy: AddressPolicy,
    deadline: Duration,
}

impl HttpEgress {
    pub fn new(client: reqwest::Client, policy: AddressPolicy) -> Self {
        Self {
            client,
            policy,
            deadline: DEFAULT_ATTEMPT_DEADLINE,
        }
    }

    /// Sets the hard deadline of one attempt: resolving, connecting, the TLS
    /// handshake, sending the request, and reading the response head and the
    /// captured part of the body must all finish within it
    /// (`delivery.timeout`).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
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
        let mut request = self.client.post(url);
        if let Some(schema_id) = schema_id(task) {
            request = request.header(SCHEMA_ID_HEADER, schema_id);
        }
        request
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

/// Progress of an attempt, kept for the message when its deadline passes.
#[derive(Debug, Default)]
struct Progress {
    /// Status of the response head, once it arrived.
    status: Option<u16>,
}

impl HttpEgress {
    /// Sends the request and reads the response head and up to
    /// [`RESPONSE_CAPTURE_LIMIT`] bytes of its body, noting progress so that
    /// a timeout message can name the stage the attempt reached.
    async fn exchange(
        &self,
        task: &DeliveryTask,
        endpoint: &Endpoint,
        report: &mut AttemptReport,
        progress: &mut Progress,
    ) {
        let response = match self.send(task, endpoint).await {
            Ok(response) => response,
            Err(result) => {
                report.result = result;
                return;
            }
        };
        let status = response.status().as_u16();
        progress.status = Some(status);
        report.retry_after = retry_after(&response);
        report.result = AttemptResult::Response { status };
        let captured = read_capped(response, RESPONSE_CAPTURE_LIMIT).await;
        report.response_excerpt = Some(String::from_utf8_lossy(&captured.bytes).into_owned());
        report.response_truncated = captured.truncated;
        if let Some(error) = captured.error {
            if error.is_timeout() {
                report.result = AttemptResult::Error {
                    class: "timeout".into(),
                    message: format!(
                        "the body of the HTTP {status} response did not arrive in time: {}",
                        error_chain(&error)
                    ),
                };
            }
        }
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
        let mut progress = Progress::default();
        // reqwest's own timeout covers the same span. This one also bounds
        // the body read, and applies whatever the client does.
        let exchange = self.exchange(task, endpoint, &mut report, &mut progress);
        if tokio::time::timeout(self.deadline, exchange).await.is_err() {
            let stage = match progress.status {
                Some(status) => format!("after the HTTP {status} response head"),
                None => "before a response head arrived".to_owned(),
            };
            report.result = AttemptResult::Error {
                class: "timeout".into(),
                message: format!(
                    "the attempt did not finish within its deadline of {:?} ({stage})",
                    self.deadline
                ),
            };
            report.retry_after = None;
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

/// The start of a response body.
struct Captured {
    bytes: Bytes,
    /// Whether the body went on past the captured bytes, or may have: a
    /// body that failed part way is marked truncated too.
    truncated: bool,
    /// The error that ended the body early, if any.
    error: Option<reqwest::Error>,
}

/// Reads at most `limit` bytes of the body, then drops the response, which
/// closes an HTTP/1.1 connection and resets an HTTP/2 stream, so the rest
/// of the body is never read. Content codings are not decoded, because the
/// client is built without them: a compressed body is kept as it arrived.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Captured {
    let mut buffer = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - buffer.len();
                if chunk.len() > room {
                    buffer.extend_from_slice(&chunk[..room]);
                    return Captured {
                        bytes: Bytes::from(buffer),
                        truncated: true,
                        error: None,
                    };
                }
                buffer.extend_from_slice(&chunk);
            }
            Ok(None) => {
                return Captured {
                    bytes: Bytes::from(buffer),
                    truncated: false,
                    error: None,
                }
            }
            Err(error) => {
                return Captured {
                    bytes: Bytes::from(buffer),
                    truncated: true,
                    error: Some(error),
                }
            }
        }
    }
}

/// Maps a client error to an error class for the attempt log: `timeout`,
/// `dns`, `connect`, `blocked_address`, `redirect`, a `tls_*` class, or
/// `request` for anything else.
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
            break;
        }
        if let Some(tls) = rustls_error(cause) {
            class = tls_class(tls);
            break;
        }
        // hyper-util names resolver failures "dns error"; the resolver's
        // own error follows in the chain.
        if cause.to_string() == "dns error" || cause.to_string().starts_with("dns error:") {
            class = "dns";
        }
        source = cause.source();
    }
    AttemptResult::Error {
        class: class.into(),
        message: error_chain(error),
    }
}

/// Finds a rustls error in `cause`, directly or wrapped in the `io::Error`s
/// that the TLS stream and reqwest's connector put around it (two of them
/// in reqwest 0.12). `io::Error::source` skips the wrapped error itself, so
/// walking the source chain alone would miss it.
fn rustls_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = cause;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = current.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// Error class of a failed TLS handshake.
fn tls_class(error: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription, CertificateError};
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "tls_certificate_expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "tls_certificate_not_yet_valid"
            }
            CertificateError::UnknownIssuer => "tls_unknown_issuer",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "tls_wrong_host"
            }
            CertificateError::Revoked => "tls_certificate_revoked",
            _ => "tls_certificate_invalid",
        },
        rustls::Error::PeerIncompatible(_) | rustls::Error::PeerMisbehaved(_) => "tls_protocol",
        rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion
            | AlertDescription::HandshakeFailure
            | AlertDescription::InsufficientSecurity,
        ) => "tls_protocol",
        _ => "tls",
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
