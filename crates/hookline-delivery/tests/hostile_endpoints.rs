//! One attempt of [`HttpEgress`] against endpoints that misbehave on
//! purpose: they hang, drip, flood, redirect, or present bad TLS. Every
//! server runs on 127.0.0.1 in this process, and host names resolve
//! through a fixed table, so no packet leaves the machine.

use bytes::Bytes;
use futures::future::BoxFuture;
use hookline_core::directory::Endpoint;
use hookline_core::queue::DeliveryTask;
use hookline_core::webhook_url::AddressPolicy;
use hookline_core::{
    ApplicationId, AttemptResult, ContentType, DeliveryId, EventId, SigningSecret, WebhookId,
};
use hookline_delivery::client::{build_client_with_lookup, ClientSettings, HostLookup};
use hookline_delivery::egress::{AttemptReport, Egress, HttpEgress, RESPONSE_CAPTURE_LIMIT};
use hookline_receiver::hostile::{
    CannedResponse, Conduct, HostilePki, HostileServer, LegacyHello, LegacyTlsServer,
    ServerCertificate,
};
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Deadline of one attempt in the deadline tests.
const DEADLINE: Duration = Duration::from_secs(1);
/// reqwest's own timeout, set far above [`DEADLINE`] so that the tests see
/// the egress deadline alone.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Resolves `localhost` to 127.0.0.1 and fails every other name, as a
/// resolver does for a name that does not exist.
struct FixedLookup;

impl HostLookup for FixedLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let result = if host == "localhost" {
            Ok(vec![IpAddr::from([127, 0, 0, 1])])
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no address for {host}"),
            ))
        };
        Box::pin(async move { result })
    }
}

/// A client that trusts the CA of `pki`, with the given deadline.
struct Sender {
    egress: HttpEgress,
    _ca_dir: tempfile::TempDir,
}

impl Sender {
    fn new(pki: &HostilePki, deadline: Duration) -> Self {
        Self::with_timeouts(pki, deadline, CLIENT_TIMEOUT)
    }

    fn with_timeouts(pki: &HostilePki, deadline: Duration, client_timeout: Duration) -> Self {
        let ca_dir = tempfile::tempdir().unwrap();
        let ca_file = ca_dir.path().join("ca.pem");
        std::fs::File::create(&ca_file)
            .unwrap()
            .write_all(pki.ca_pem.as_bytes())
            .unwrap();
        let policy = AddressPolicy {
            allow_private: true,
            ..AddressPolicy::default()
        };
        let settings = ClientSettings {
            timeout: client_timeout,
            connect_timeout: client_timeout,
            policy: policy.clone(),
            ca_file: Some(ca_file),
            max_idle_per_host: 4,
        };
        let client = build_client_with_lookup(&settings, Arc::new(FixedLookup)).unwrap();
        Self {
            egress: HttpEgress::new(client, policy).with_deadline(deadline),
            _ca_dir: ca_dir,
        }
    }

    async fn attempt(&self, url: &str) -> AttemptReport {
        let task = DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            application_id: ApplicationId::generate(),
            product: "order-created".into(),
            webhook_id: WebhookId::derive("order-created", "hostile-1"),
            idempotency_key: "hostile-1".into(),
            content_type: ContentType::Json,
            payload: Bytes::from_static(br#"{"order":"1001"}"#),
            attempts_made: 0,
            traceparent: None,
        };
        let endpoint = Endpoint {
            application_id: task.application_id.clone(),
            url: url.to_owned(),
            plan: "paid".into(),
            limit: None,
            secrets: vec![SigningSecret::generate()],
            active: true,
        };
        self.egress.attempt(&task, &endpoint).await
    }
}

fn error_class(report: &AttemptReport) -> Option<&str> {
    match &report.result {
        AttemptResult::Error { class, .. } => Some(class),
        AttemptResult::Response { .. } => None,
    }
}

fn canned(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Conduct {
    Conduct::Respond(CannedResponse {
        status,
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body: body.to_vec(),
    })
}

/// Resident memory of this process in KiB, from /proc/self/status.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Asserts that an attempt ended as a timeout at its deadline.
fn assert_timed_out(report: &AttemptReport, elapsed: Duration, case: &str) {
    assert_eq!(
        error_class(report),
        Some("timeout"),
        "{case}: {:?}",
        report.result
    );
    assert!(!report.result.is_success(), "{case}");
    assert!(elapsed >= DEADLINE, "{case} ended after {elapsed:?}");
    assert!(
        elapsed < DEADLINE + Duration::from_secs(2),
        "{case} ended after {elapsed:?}, long after the deadline of {DEADLINE:?}"
    );
}

#[tokio::test]
async fn silent_endpoint_times_out_at_deadline() {
    let pki = HostilePki::generate().unwrap();
    let server = HostileServer::start(&pki, ServerCertificate::Valid, Conduct::Silent)
        .await
        .unwrap();
    let sender = Sender::new(&pki, DEADLINE);
    let clock = Instant::now();
    let report = sender.attempt(&server.url("/hook")).await;
    assert_timed_out(&report, clock.elapsed(), "accepts and never answers");
    assert_eq!(server.stats().handshakes, 1);
}

#[tokio::test]
async fn dripping_body_times_out_at_deadline() {
    let pki = HostilePki::generate().unwrap();
    let conduct = Conduct::DripBody {
        interval: Duration::from_millis(50),
    };
    let server = HostileServer::start(&pki, ServerCertificate::Valid, conduct)
        .await
        .unwrap();
    let sender = Sender::new(&pki, DEADLINE);
    let clock = Instant::now();
    let report = sender.attempt(&server.url("/hook")).await;
    assert_timed_out(&report, clock.elapsed(), "drips its body");
    let AttemptResult::Error { message, .. } = &report.result else {
        unreachable!()
    };
    assert!(
        message.contains("after the HTTP 200 response head"),
        "{message}"
    );
}

#[tokio::test]
async fn stalled_error_body_times_out_at_deadline() {
    let pki = HostilePki::generate().unwrap();
    let conduct = Conduct::StallAfterHead { status: 500 };
    let server = HostileServer::start(&pki, ServerCertificate::Valid, conduct)
        .await
        .unwrap();
    let sender = Sender::new(&pki, DEADLINE);
    let clock = Instant::now();
    let report = sender.attempt(&server.url("/hook")).await;
    assert_timed_out(&report, clock.elapsed(), "500 head, then stalls");
}

#[tokio::test]
async fn unresponsive_address_times_out_at_deadline() {
    // A socket that listens and never accepts: the kernel completes a few
    // handshakes into its backlog, and nothing ever reads from them.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let address = listener.local_addr().unwrap();
    let pki = HostilePki::generate().unwrap();
    let sender = Sender::new(&pki, DEADLINE);
    let clock = Instant::now();
    let report = sender.attempt(&format!("https://{address}/hook")).await;
    assert_timed_out(&report, clock.elapsed(), "never accepts");
    drop(listener);
}

#[tokio::test]
async fn huge_body_is_capped_and_abandoned() {
    let pki = HostilePki::generate().unwrap();
    let conduct = Conduct::HugeBody { length: 1 << 30 };
    let server = HostileServer::start(&pki, ServerCertificate::Valid, conduct)
        .await
        .unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    let before = resident_kib();
    let clock = Instant::now();
    let report = sender.attempt(&server.url("/hook")).await;
    let elapsed = clock.elapsed();

    assert_eq!(report.result, AttemptResult::Response { status: 200 });
    assert!(report.result.is_success());
    assert!(report.response_truncated, "a 1 GiB body is truncated");
    let excerpt = report.response_excerpt.as_deref().unwrap();
    assert_eq!(excerpt.len(), RESPONSE_CAPTURE_LIMIT);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        server
            .wait_for(
                |stats| stats.abandoned_responses == 1,
                Duration::from_secs(5)
            )
            .await,
        "the connection was not dropped: {:?}",
        server.stats()
    );
    let sent = server.stats().body_bytes_sent;
    assert!(
        sent < 64 << 20,
        "{sent} bytes were sent before the connection was dropped"
    );
    let grown = resident_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "resident memory grew by {grown} KiB");
}

#[tokio::test]
async fn endless_chunked_body_is_capped_and_abandoned() {
    let pki = HostilePki::generate().unwrap();
    let server = HostileServer::start(&pki, ServerCertificate::Valid, Conduct::EndlessChunked)
        .await
        .unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    let before = resident_kib();
    let clock = Instant::now();
    let report = sender.attempt(&server.url("/hook")).await;

    assert!(clock.elapsed() < Duration::from_secs(5));
    assert_eq!(report.result, AttemptResult::Response { status: 200 });
    assert!(report.response_truncated);
    let excerpt = report.response_excerpt.as_deref().unwrap();
    assert_eq!(excerpt, "z".repeat(RESPONSE_CAPTURE_LIMIT));
    assert!(
        server
            .wait_for(
                |stats| stats.abandoned_responses == 1,
                Duration::from_secs(5)
            )
            .await,
        "the connection was not dropped: {:?}",
        server.stats()
    );
    let grown = resident_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "resident memory grew by {grown} KiB");
}

#[tokio::test]
async fn gzip_bomb_is_never_decompressed() {
    // 64 MiB of zeros compress to about 64 KiB.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let conduct = canned(
        200,
        &[
            ("content-encoding", "gzip"),
            ("content-type", "application/json"),
        ],
        &bomb,
    );
    let pki = HostilePki::generate().unwrap();
    let server = HostileServer::start(&pki, ServerCertificate::Valid, conduct)
        .await
        .unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    let before = resident_kib();
    let report = sender.attempt(&server.url("/hook")).await;

    assert_eq!(report.result, AttemptResult::Response { status: 200 });
    assert!(report.response_truncated);
    let excerpt = report.response_excerpt.as_deref().unwrap();
    assert_eq!(
        excerpt,
        String::from_utf8_lossy(&bomb[..RESPONSE_CAPTURE_LIMIT]),
        "the excerpt is not the compressed bytes as sent"
    );
    let head = server.stats().request_heads.join("\n").to_ascii_lowercase();
    assert!(
        !head.contains("accept-encoding"),
        "the request offers a content coding: {head}"
    );
    let grown = resident_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "resident memory grew by {grown} KiB");
}

/// Status, extra headers and body of a canned response.
type CannedCase = (u16, &'static [(&'static str, &'static str)], &'static [u8]);

#[tokio::test]
async fn every_2xx_is_success_whatever_the_body() {
    let cases: [CannedCase; 4] = [
        (204, &[], b""),
        (200, &[], b""),
        (
            201,
            &[("content-type", "text/plain")],
            b"created, thanks <not json>",
        ),
        (299, &[], b"\xff\xfe binary"),
    ];
    let pki = HostilePki::generate().unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    for (status, headers, body) in cases {
        let server = HostileServer::start(
            &pki,
            ServerCertificate::Valid,
            canned(status, headers, body),
        )
        .await
        .unwrap();
        let report = sender.attempt(&server.url("/hook")).await;
        assert_eq!(report.result, AttemptResult::Response { status });
        assert!(report.result.is_success(), "HTTP {status} is a success");
        assert!(!report.response_truncated, "HTTP {status}");
    }
}

#[tokio::test]
async fn redirects_fail_and_are_never_followed() {
    let pki = HostilePki::generate().unwrap();
    let target = HostileServer::start(&pki, ServerCertificate::Valid, canned(200, &[], b"ok"))
        .await
        .unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    let locations = [
        target.url("/elsewhere"),
        "/relative-path".to_owned(),
        format!("https://localhost:{}/named", target.local_addr().port()),
    ];
    for status in [301, 302, 303, 307, 308] {
        for location in &locations {
            let conduct = canned(status, &[("location", location)], b"moved");
            let server = HostileServer::start(&pki, ServerCertificate::Valid, conduct)
                .await
                .unwrap();
            let report = sender.attempt(&server.url("/hook")).await;
            assert_eq!(
                report.result,
                AttemptResult::Response { status },
                "HTTP {status} to {location}"
            );
            assert!(!report.result.is_success(), "HTTP {status} is a failure");
            assert_eq!(server.stats().request_heads.len(), 1, "HTTP {status}");
        }
    }
    assert_eq!(
        target.stats().connections,
        0,
        "a Location target was contacted"
    );
}

/// Asserts that the handshake failed with `class` and that the server
/// decrypted no request byte.
async fn assert_tls_rejected(kind: ServerCertificate, class: &str) {
    let pki = HostilePki::generate().unwrap();
    let server = HostileServer::start(&pki, kind, canned(204, &[], b""))
        .await
        .unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    let report = sender.attempt(&server.url("/hook")).await;
    assert_eq!(
        error_class(&report),
        Some(class),
        "{kind:?}: {:?}",
        report.result
    );
    assert!(
        server
            .wait_for(
                |stats| stats.connections >= 1
                    && stats.handshake_errors.len() as u64 + stats.handshakes >= stats.connections,
                Duration::from_secs(5)
            )
            .await
    );
    let stats = server.stats();
    assert_eq!(stats.request_bytes, 0, "{kind:?}: request bytes arrived");
    assert!(stats.request_heads.is_empty(), "{kind:?}");
}

#[tokio::test]
async fn expired_certificate_is_rejected() {
    assert_tls_rejected(ServerCertificate::Expired, "tls_certificate_expired").await;
}

#[tokio::test]
async fn self_signed_certificate_is_rejected() {
    assert_tls_rejected(ServerCertificate::SelfSigned, "tls_unknown_issuer").await;
}

#[tokio::test]
async fn wrong_host_certificate_is_rejected() {
    assert_tls_rejected(ServerCertificate::WrongHost, "tls_wrong_host").await;
}

#[tokio::test]
async fn valid_certificate_is_accepted() {
    let pki = HostilePki::generate().unwrap();
    let server = HostileServer::start(&pki, ServerCertificate::Valid, canned(204, &[], b""))
        .await
        .unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    for url in [
        server.url("/hook"),
        format!("https://localhost:{}/hook", server.local_addr().port()),
    ] {
        let report = sender.attempt(&url).await;
        assert_eq!(
            report.result,
            AttemptResult::Response { status: 204 },
            "{url}"
        );
    }
}

#[tokio::test]
async fn legacy_tls_versions_are_rejected() {
    let pki = HostilePki::generate().unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    for hello in [LegacyHello::Tls11, LegacyHello::Tls12WeakCipher] {
        let server = LegacyTlsServer::start(hello).await.unwrap();
        let report = sender.attempt(&server.url("/hook")).await;
        assert_eq!(
            error_class(&report),
            Some("tls_protocol"),
            "{hello:?}: {:?}",
            report.result
        );
        let stats = server.stats();
        assert!(stats.connections >= 1, "{hello:?}");
        let types = stats.record_types();
        assert_eq!(
            types.first(),
            Some(&22),
            "{hello:?}: a ClientHello came first"
        );
        assert!(
            !types.contains(&23),
            "{hello:?}: application data was sent: {types:?}"
        );
        let text = String::from_utf8_lossy(&stats.received);
        assert!(!text.contains("POST"), "{hello:?}: the request was sent");
    }
}

#[tokio::test]
async fn unknown_host_fails_with_dns_class() {
    let pki = HostilePki::generate().unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    let report = sender.attempt("https://no-such-host.test/hook").await;
    assert_eq!(error_class(&report), Some("dns"), "{:?}", report.result);
}

#[tokio::test]
async fn refused_connection_fails_with_connect_class() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let pki = HostilePki::generate().unwrap();
    let sender = Sender::new(&pki, Duration::from_secs(10));
    let report = sender.attempt(&format!("https://{address}/hook")).await;
    assert_eq!(error_class(&report), Some("connect"), "{:?}", report.result);
}
