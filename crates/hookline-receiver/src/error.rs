//! Errors from generating certificates and starting a receiver.

use std::net::SocketAddr;

/// A failure to generate the test certificates or to start the receiver.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("failed to generate the test certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("invalid TLS server configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("failed to read the local address of the listener bound to {addr}: {source}")]
    LocalAddr {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
