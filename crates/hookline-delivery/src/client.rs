//! The shared HTTPS client. One instance serves every delivery, so
//! connections and TLS sessions are reused across deliveries.

use futures::future::BoxFuture;
use hookline_core::webhook_url::AddressPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the delivery client (`delivery.*`).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Deadline of one attempt: connect, TLS, request and response.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub policy: AddressPolicy,
    /// Extra CA certificates (a PEM file, one or more) to trust besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// Idle connections kept per endpoint for reuse.
    pub max_idle_per_host: usize,
}

/// Failure to build the client from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read delivery.ca_file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("delivery.ca_file {path} holds no valid PEM certificate: {source}")]
    InvalidCa {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build the HTTPS client: {0}")]
    Build(#[source] reqwest::Error),
}

/// A resolved address that the address policy rejects.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to blocked addresses ({addresses}); set delivery.allow_private_addresses to allow them")]
pub struct BlockedAddress {
    pub host: String,
    pub addresses: String,
}

/// Looks up the addresses of a host name. [`build_client`] uses the system
/// resolver; tests pass their own to [`build_client_with_lookup`] so that no
/// DNS query leaves the machine.
pub trait HostLookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (`getaddrinfo`, on a blocking thread).
struct SystemLookup;

impl HostLookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addresses.map(|address| address.ip()).collect())
        })
    }
}

/// Resolves host names and drops every address the policy rejects. reqwest
/// dials exactly the addresses returned here, so a DNS answer cannot change
/// between the check and the connection.
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
    lookup: Arc<dyn HostLookup>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let lookup = self.lookup.lookup(name.as_str());
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = lookup
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|address| policy.is_allowed(address.ip()))
                .collect();
            if allowed.is_empty() {
                let addresses: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(BlockedAddress {
                    host,
                    addresses: addresses.join(", "),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Builds the delivery client: rustls, no redirects, a total deadline per
/// attempt, connection reuse, and the guarded resolver.
pub fn build_client(settings: &ClientSettings) -> Result<reqwest::Client, ClientError> {
    build_client_with_lookup(settings, Arc::new(SystemLookup))
}

/// Builds the delivery client like [`build_client`], resolving host names
/// with `lookup` instead of the system resolver.
pub fn build_client_with_lookup(
    settings: &ClientSettings,
    lookup: Arc<dyn HostLookup>,
) -> Result<reqwest::Client, ClientError> {
    let resolver = GuardedResolver {
        policy: Arc::new(settings.policy.clone()),
        lookup,
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.connect_timeout.min(settings.timeout))
        .pool_max_idle_per_host(settings.max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .https_only(!settings.policy.allow_http)
        .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(resolver));
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|source| ClientError::ReadCa {
            path: path.clone(),
            source,
        })?;
        let certificate =
            reqwest::Certificate::from_pem(&pem).map_err(|source| ClientError::InvalidCa {
                path: path.clone(),
                source,
            })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(ClientError::Build)
}
