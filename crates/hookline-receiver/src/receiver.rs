//! The [`Receiver`] handle: starts the server, scripts endpoints and reads
//! what arrived.

use crate::behaviour::Behaviour;
use crate::pki::TestPki;
use crate::record::{ReceivedWebhook, ReceiverStats};
use crate::server::{accept_loop, tls_config};
use crate::state::Shared;
use crate::ReceiverError;
use hookline_core::signing::SigningSecret;
use hyper::HeaderMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A running HTTPS webhook receiver. Clones share the same server and log.
///
/// Endpoints are `base_url() + "/hooks/{name}"` and need no registration:
/// an endpoint without a secret or behaviour responds with 204 without checking
/// signatures. Every request is kept in memory until [`Receiver::clear`]
/// or until the last clone is dropped.
///
/// The server stops when [`Receiver::shutdown`] is called or the last clone
/// is dropped.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Dropping it also stops the accept loop.
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Receiver {
    /// Binds `listen` and starts serving HTTPS with the server certificate
    /// of `pki`. Port 0 picks a free port, which [`Receiver::base_url`] includes.
    pub async fn start(pki: &TestPki, listen: SocketAddr) -> Result<Self, ReceiverError> {
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(pki)?));
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ReceiverError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ReceiverError::LocalAddr {
                addr: listen,
                source,
            })?;

        let shared = Arc::new(Shared::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, acceptor, shared.clone(), shutdown_rx));
        tracing::info!(%local_addr, "webhook receiver listening");

        let inner = Inner {
            shared,
            local_addr,
            shutdown,
            task: Mutex::new(Some(task)),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Returns the bound address, including the port the system chose.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Returns `https://ADDRESS:PORT` with no trailing slash. A wildcard listen
    /// address (`0.0.0.0` or `::`) is shown as the loopback address of its
    /// family, which the certificate covers.
    pub fn base_url(&self) -> String {
        let mut addr = self.inner.local_addr;
        if addr.ip().is_unspecified() {
            let loopback = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            addr.set_ip(loopback);
        }
        format!("https://{addr}")
    }

    /// Returns `base_url() + "/hooks/{endpoint}"`.
    pub fn endpoint_url(&self, endpoint: &str) -> String {
        format!("{}/hooks/{endpoint}", self.base_url())
    }

    /// Verifies later requests to `endpoint` with `secret`, replacing any
    /// earlier secret. Requests that fail verification get a 401 response.
    pub fn set_secret(&self, endpoint: &str, secret: SigningSecret) {
        self.inner.shared.set_secret(endpoint, secret);
    }

    /// Sets how `endpoint` responds to later requests. Attempt counts from
    /// earlier requests are kept.
    ///
    /// # Panics
    ///
    /// If a status in `behaviour` is outside 200 to 599 or a ratio is outside
    /// 0.0 to 1.0.
    pub fn script(&self, endpoint: &str, behaviour: Behaviour) {
        if let Err(message) = behaviour.validate() {
            panic!("{message}");
        }
        self.inner.shared.set_behaviour(endpoint, behaviour);
    }

    /// Returns copies of the requests to `endpoint`, in arrival order.
    pub fn deliveries(&self, endpoint: &str) -> Vec<ReceivedWebhook> {
        self.inner.shared.with_records(|records| {
            records
                .iter()
                .filter(|webhook| webhook.endpoint == endpoint)
                .cloned()
                .collect()
        })
    }

    /// Returns the full request headers of the requests to `endpoint`, in
    /// arrival order, so the i-th entry belongs to `deliveries(endpoint)[i]`.
    pub fn request_headers(&self, endpoint: &str) -> Vec<HeaderMap> {
        self.inner.shared.headers_of(endpoint)
    }

    /// Returns copies of all requests, in arrival order.
    pub fn all(&self) -> Vec<ReceivedWebhook> {
        self.inner.shared.with_records(<[ReceivedWebhook]>::to_vec)
    }

    /// Returns the current counters.
    pub fn stats(&self) -> ReceiverStats {
        self.inner.shared.stats()
    }

    /// Forgets recorded requests, counters and attempt counts, keeping
    /// secrets and behaviours, for example between benchmark phases.
    pub fn clear(&self) {
        self.inner.shared.clear();
    }

    /// Waits until `condition` holds for the counters, checking after each
    /// request. Returns `false` if it still does not hold after `timeout`.
    pub async fn wait_for(
        &self,
        condition: impl Fn(&ReceiverStats) -> bool,
        timeout: Duration,
    ) -> bool {
        self.wait_until(|| condition(&self.stats()), timeout).await
    }

    /// Waits until `condition` holds for the request log, checking after
    /// each request. Returns `false` if it still does not hold after
    /// `timeout`.
    ///
    /// `condition` runs while the receiver's lock is held, which stalls
    /// request handling. Keep it short, and do not call this `Receiver` from
    /// it, because the lock is not reentrant.
    pub async fn wait_for_deliveries(
        &self,
        condition: impl Fn(&[ReceivedWebhook]) -> bool,
        timeout: Duration,
    ) -> bool {
        self.wait_until(|| self.inner.shared.with_records(&condition), timeout)
            .await
    }

    async fn wait_until(&self, check: impl Fn() -> bool, timeout: Duration) -> bool {
        // Subscribing before the first check means no request recorded in
        // between is missed.
        let mut recorded = self.inner.shared.subscribe();
        let wait = async {
            while !check() {
                if recorded.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        check()
    }

    /// Stops accepting connections, gives open requests up to 5 seconds to
    /// finish, then aborts the rest. Clones can still read the log.
    pub async fn shutdown(self) {
        self.inner.shutdown.send_replace(true);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::error!(%error, "webhook receiver task failed");
            }
        }
        tracing::info!(local_addr = %self.inner.local_addr, "webhook receiver stopped");
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}
