//! Scripted HTTPS endpoints that misbehave on purpose, for testing a
//! sender's deadlines, body caps, redirect handling and TLS checks.
//!
//! [`HostileServer`] speaks just enough HTTP/1.1 by hand that it can stall,
//! drip or flood at any point of a response, which a well-behaved HTTP
//! server library does not allow. [`HostilePki`] makes valid, expired,
//! self-signed and wrong-host certificates. [`LegacyTlsServer`] responds to a
//! ClientHello with a ServerHello that picks TLS 1.1, or TLS 1.2 with a
//! cipher suite no current client offers. Every server records what it
//! received, so a test can assert that no request byte arrived.

use crate::ReceiverError;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Size of the buffer that large bodies are written from, over and over.
const CHUNK: usize = 64 * 1024;
/// Maximum length of a request head; a longer one ends the connection.
const MAX_HEAD: usize = 64 * 1024;

/// The certificate that a [`HostileServer`] presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCertificate {
    /// Signed by the CA, for `localhost`, `127.0.0.1` and `::1`, valid now.
    Valid,
    /// Signed by the CA for the right names, but expired yesterday.
    Expired,
    /// Valid for the right names, but signed by its own key, not the CA.
    SelfSigned,
    /// Signed by the CA and valid now, but only for `other.example`.
    WrongHost,
}

/// A CA that clients trust, which signs the certificates of
/// [`ServerCertificate`].
pub struct HostilePki {
    /// The CA certificate, PEM-encoded, for the client's trust store.
    pub ca_pem: String,
    ca_cert: Certificate,
    ca_key: KeyPair,
}

impl HostilePki {
    pub fn generate() -> Result<Self, ReceiverError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name("Hookline hostile-endpoint test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - time::Duration::days(30);
        params.not_after = now + time::Duration::days(30);
        let ca_key = KeyPair::generate()?;
        let ca_cert = params.self_signed(&ca_key)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            ca_cert,
            ca_key,
        })
    }

    /// Makes the chain and key of one kind of server certificate.
    fn server_identity(
        &self,
        kind: ServerCertificate,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ReceiverError> {
        let now = OffsetDateTime::now_utc();
        let names: Vec<String> = match kind {
            ServerCertificate::WrongHost => vec!["other.example".to_owned()],
            _ => ["localhost", "127.0.0.1", "::1"]
                .map(str::to_owned)
                .to_vec(),
        };
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = common_name("hostile endpoint");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(1);
        if kind == ServerCertificate::Expired {
            params.not_before = now - time::Duration::days(10);
            params.not_after = now - time::Duration::days(1);
        }
        let key = KeyPair::generate()?;
        let certificate = match kind {
            ServerCertificate::SelfSigned => params.self_signed(&key)?,
            _ => params.signed_by(&key, &self.ca_cert, &self.ca_key)?,
        };
        let chain = vec![CertificateDer::from(certificate.der().to_vec())];
        let key = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        Ok((chain, key))
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

/// A complete response sent at once after the request is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannedResponse {
    pub status: u16,
    /// Extra header lines; `Content-Length` is added from `body`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Behaviour of a [`HostileServer`] on each connection after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conduct {
    /// Neither reads the request nor writes anything, until the client leaves.
    Silent,
    /// Reads the request and sends this response.
    Respond(CannedResponse),
    /// Reads the request, sends the head of a response with this status
    /// and a 100-byte `Content-Length`, then sends nothing more.
    StallAfterHead { status: u16 },
    /// Reads the request, sends a 200 head with a 1 MiB `Content-Length`,
    /// then one body byte per `interval`.
    DripBody { interval: Duration },
    /// Reads the request and sends a 200 with a `Content-Length` of `length`
    /// zero bytes, written from one small buffer, so the server never keeps
    /// the body in memory either.
    HugeBody { length: u64 },
    /// Reads the request and sends a chunked 200 body that never ends.
    EndlessChunked,
}

/// Counters and request heads that a [`HostileServer`] recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostileStats {
    /// TCP connections accepted.
    pub connections: u64,
    /// TLS handshakes that completed.
    pub handshakes: u64,
    /// TLS handshakes that failed, with the server's error.
    pub handshake_errors: Vec<String>,
    /// Decrypted bytes read from clients: request heads and bodies.
    pub request_bytes: u64,
    /// The request heads, as text.
    pub request_heads: Vec<String>,
    /// Response body bytes written.
    pub body_bytes_sent: u64,
    /// Responses whose writing ended because the client went away.
    pub abandoned_responses: u64,
}

/// A scripted HTTPS server on 127.0.0.1 with a port of its own. It stops
/// when dropped.
pub struct HostileServer {
    local_addr: SocketAddr,
    stats: Arc<Mutex<HostileStats>>,
    task: JoinHandle<()>,
}

impl HostileServer {
    /// Starts serving `conduct` with a certificate of `kind` from `pki`.
    /// The server offers only `http/1.1` by ALPN.
    pub async fn start(
        pki: &HostilePki,
        kind: ServerCertificate,
        conduct: Conduct,
    ) -> Result<Self, ReceiverError> {
        let (chain, key) = pki.server_identity(kind)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (listener, local_addr) = bind_loopback().await?;
        let stats = Arc::new(Mutex::new(HostileStats::default()));
        let conduct = Arc::new(conduct);
        let task = tokio::spawn(accept_tls(listener, acceptor, conduct, stats.clone()));
        Ok(Self {
            local_addr,
            stats,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Returns `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.local_addr)
    }

    pub fn stats(&self) -> HostileStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `condition` holds for the stats, checking every 20 ms.
    /// Returns `false` if it still does not hold after `timeout`.
    pub async fn wait_for(
        &self,
        condition: impl Fn(&HostileStats) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if condition(&self.stats()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        condition(&self.stats())
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bind_loopback() -> Result<(TcpListener, SocketAddr), ReceiverError> {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("valid socket address");
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ReceiverError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ReceiverError::LocalAddr { addr, source })?;
    Ok((listener, local_addr))
}

fn update(stats: &Mutex<HostileStats>, change: impl FnOnce(&mut HostileStats)) {
    change(&mut stats.lock().unwrap_or_else(PoisonError::into_inner));
}

async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    conduct: Arc<Conduct>,
    stats: Arc<Mutex<HostileStats>>,
) {
    // Connection tasks end with the accept loop, so dropping the server
    // closes every connection.
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        update(&stats, |stats| stats.connections += 1);
        let acceptor = acceptor.clone();
        let conduct = conduct.clone();
        let stats = stats.clone();
        connections.spawn(async move {
            match acceptor.accept(stream).await {
                Ok(tls) => {
                    update(&stats, |stats| stats.handshakes += 1);
                    serve(tls, &conduct, &stats).await;
                }
                Err(error) => update(&stats, |stats| {
                    stats.handshake_errors.push(error.to_string())
                }),
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Plays `conduct` on one connection.
async fn serve<S>(mut stream: S, conduct: &Conduct, stats: &Mutex<HostileStats>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if *conduct == Conduct::Silent {
        // Holds the connection open without reading, until the client leaves
        // or the server is dropped.
        std::future::pending::<()>().await;
    }
    if !read_request(&mut stream, stats).await {
        return;
    }
    let outcome = match conduct {
        Conduct::Silent => Ok(()),
        Conduct::Respond(response) => respond(&mut stream, response, stats).await,
        Conduct::StallAfterHead { status } => {
            let head = format!("HTTP/1.1 {status} Stalled\r\ncontent-length: 100\r\n\r\n");
            let written = stream.write_all(head.as_bytes()).await;
            if written.is_ok() {
                let _ = stream.flush().await;
                std::future::pending::<()>().await;
            }
            written
        }
        Conduct::DripBody { interval } => drip(&mut stream, *interval, stats).await,
        Conduct::HugeBody { length } => flood(&mut stream, *length, stats).await,
        Conduct::EndlessChunked => endless_chunks(&mut stream, stats).await,
    };
    if outcome.is_err() {
        update(stats, |stats| stats.abandoned_responses += 1);
    }
}

/// Reads a request head and a `Content-Length` body. Returns `false` when
/// the client closed the connection first.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S, stats: &Mutex<HostileStats>) -> bool {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    let end = loop {
        if let Some(end) = find(&head, b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > MAX_HEAD {
            return false;
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => {
                update(stats, |stats| stats.request_bytes += read as u64);
                head.extend_from_slice(&buffer[..read]);
            }
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let length = content_length(&text);
    update(stats, |stats| stats.request_heads.push(text));
    let mut remaining = length.saturating_sub(head.len() - end);
    while remaining > 0 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => {
                update(stats, |stats| stats.request_bytes += read as u64);
                remaining = remaining.saturating_sub(read);
            }
        }
    }
    true
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &CannedResponse,
    stats: &Mutex<HostileStats>,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} Scripted\r\n", response.status);
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        response.body.len()
    ));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    update(stats, |stats| {
        stats.body_bytes_sent += response.body.len() as u64
    });
    stream.flush().await?;
    stream.shutdown().await
}

async fn drip<S: AsyncWrite + Unpin>(
    stream: &mut S,
    interval: Duration,
    stats: &Mutex<HostileStats>,
) -> std::io::Result<()> {
    let head = "HTTP/1.1 200 Dripping\r\ncontent-length: 1048576\r\n\r\n";
    stream.write_all(head.as_bytes()).await?;
    loop {
        stream.write_all(b"x").await?;
        stream.flush().await?;
        update(stats, |stats| stats.body_bytes_sent += 1);
        tokio::time::sleep(interval).await;
    }
}

async fn flood<S: AsyncWrite + Unpin>(
    stream: &mut S,
    length: u64,
    stats: &Mutex<HostileStats>,
) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 200 Flood\r\ncontent-length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let chunk = vec![0u8; CHUNK];
    let mut remaining = length;
    while remaining > 0 {
        let size = usize::try_from(remaining.min(CHUNK as u64)).unwrap_or(CHUNK);
        stream.write_all(&chunk[..size]).await?;
        remaining -= size as u64;
        update(stats, |stats| stats.body_bytes_sent += size as u64);
    }
    stream.flush().await
}

async fn endless_chunks<S: AsyncWrite + Unpin>(
    stream: &mut S,
    stats: &Mutex<HostileStats>,
) -> std::io::Result<()> {
    let head = "HTTP/1.1 200 Endless\r\ntransfer-encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await?;
    let mut chunk = format!("{CHUNK:x}\r\n").into_bytes();
    chunk.extend(std::iter::repeat_n(b'z', CHUNK));
    chunk.extend_from_slice(b"\r\n");
    loop {
        stream.write_all(&chunk).await?;
        update(stats, |stats| stats.body_bytes_sent += CHUNK as u64);
    }
}

/// The protocol choice in the ServerHello that a [`LegacyTlsServer`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyHello {
    /// TLS 1.1 with TLS_RSA_WITH_AES_128_CBC_SHA.
    Tls11,
    /// TLS 1.2 with TLS_RSA_WITH_AES_128_CBC_SHA: RSA key exchange without
    /// forward secrecy and CBC, which current clients no longer offer.
    Tls12WeakCipher,
}

/// Connections and bytes that a [`LegacyTlsServer`] received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyStats {
    pub connections: u64,
    /// Every byte received, over all connections.
    pub received: Vec<u8>,
}

impl LegacyStats {
    /// Content types of the TLS records received, in order, as far as the
    /// bytes parse as records (22 is handshake, 21 alert, 23 application data).
    pub fn record_types(&self) -> Vec<u8> {
        let mut types = Vec::new();
        let mut rest = self.received.as_slice();
        while rest.len() >= 5 {
            types.push(rest[0]);
            let length = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            rest = rest.get(5 + length..).unwrap_or_default();
        }
        types
    }
}

/// A TCP server on 127.0.0.1 that reads a ClientHello and responds with a
/// hand-written ServerHello of [`LegacyHello`], then records whatever the
/// client sends until it closes. It stops when dropped.
pub struct LegacyTlsServer {
    local_addr: SocketAddr,
    stats: Arc<Mutex<LegacyStats>>,
    task: JoinHandle<()>,
}

impl LegacyTlsServer {
    pub async fn start(hello: LegacyHello) -> Result<Self, ReceiverError> {
        let (listener, local_addr) = bind_loopback().await?;
        let stats = Arc::new(Mutex::new(LegacyStats::default()));
        let task = tokio::spawn(accept_legacy(listener, hello, stats.clone()));
        Ok(Self {
            local_addr,
            stats,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.local_addr)
    }

    pub fn stats(&self) -> LegacyStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for LegacyTlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_legacy(listener: TcpListener, hello: LegacyHello, stats: Arc<Mutex<LegacyStats>>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections += 1;
        connections.spawn(legacy_connection(stream, hello, stats.clone()));
        while connections.try_join_next().is_some() {}
    }
}

async fn legacy_connection(
    mut stream: TcpStream,
    hello: LegacyHello,
    stats: Arc<Mutex<LegacyStats>>,
) {
    let mut buffer = [0u8; 4096];
    let mut answered = false;
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .received
            .extend_from_slice(&buffer[..read]);
        if !answered {
            answered = true;
            if stream.write_all(&server_hello(hello)).await.is_err() {
                return;
            }
        }
    }
}

/// A ServerHello record without extensions, choosing the version of `hello`
/// and TLS_RSA_WITH_AES_128_CBC_SHA (0x002f), with an all-zero random.
fn server_hello(hello: LegacyHello) -> Vec<u8> {
    let version: [u8; 2] = match hello {
        LegacyHello::Tls11 => [3, 2],
        LegacyHello::Tls12WeakCipher => [3, 3],
    };
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0u8; 32]);
    body.push(0); // empty session id
    body.extend_from_slice(&[0x00, 0x2f]);
    body.push(0); // no compression
    let mut handshake = vec![2u8]; // server_hello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22u8]; // handshake record
    record.extend_from_slice(&version);
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap_or(0).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}
