//! The TLS listener: accepts TCP connections, completes the TLS handshake
//! with ALPN (`h2`, then `http/1.1`) and serves HTTP/1.1 or HTTP/2 on each
//! connection in its own task.

use crate::handler::handle;
use crate::pki::TestPki;
use crate::state::Shared;
use crate::ReceiverError;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Connections that have not finished the TLS handshake by then are closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/1.1 connections that have not sent a full request head by then are closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, open requests get this long to finish before their
/// connections are aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept`, which usually means the process is out of
/// file descriptors, so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Builds the TLS configuration with the ring provider, so no process-wide
/// default provider is needed.
pub(crate) fn tls_config(pki: &TestPki) -> Result<ServerConfig, ReceiverError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(pki.server_chain(), pki.server_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Everything a connection task needs, shared by all of them.
struct Context {
    acceptor: TlsAcceptor,
    http: auto::Builder<TokioExecutor>,
    shared: Arc<Shared>,
}

/// Accepts connections until `shutdown` changes or its sender is dropped,
/// then lets open connections finish for [`SHUTDOWN_GRACE`].
pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let context = Arc::new(Context {
        acceptor,
        http: http_builder(),
        shared,
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer_addr)) => {
                    let connection = serve_connection(context.clone(), stream, peer_addr, shutdown.clone());
                    connections.spawn(connection);
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            // Reaps finished connection tasks so the set does not grow.
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "connection task failed");
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    drain(connections).await;
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

async fn serve_connection(
    context: Arc<Context>,
    stream: TcpStream,
    peer_addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    // Responses are small, so Nagle's algorithm would only add latency.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer_addr, %error, "failed to set TCP_NODELAY");
    }
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, context.acceptor.accept(stream));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%peer_addr, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer_addr, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                return;
            }
        },
        _ = shutdown.changed() => return,
    };

    let shared = context.shared.clone();
    let service = service_fn(move |request| handle(shared.clone(), peer_addr, request));
    let connection = context.http.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer_addr, %error, "connection closed with an error");
    }
}

async fn drain(mut connections: JoinSet<()>) {
    let all_finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, all_finished)
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = connections.len(),
            grace = ?SHUTDOWN_GRACE,
            "aborting connections still open after the shutdown grace period"
        );
        connections.abort_all();
    }
}
