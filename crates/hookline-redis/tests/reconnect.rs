//! Recovery after Redis connections drop. A loopback TCP proxy in front of
//! the test Redis cuts the connections, so the shared server keeps running.

mod common;

use hookline_redis::{InvalidationBus, RedisClient};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Forwards TCP connections from a loopback port to the test Redis.
struct Proxy {
    address: SocketAddr,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let connections = Arc::new(Mutex::new(Vec::new()));
        let registry = connections.clone();
        let accept_task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let forward = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                registry.lock().expect("proxy registry").push(forward);
            }
        });
        Self {
            address,
            connections,
            accept_task,
        }
    }

    /// Closes every forwarded connection. New connections still go through.
    fn cut_connections(&self) {
        for forward in self.connections.lock().expect("proxy registry").drain(..) {
            forward.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut_connections();
        self.accept_task.abort();
    }
}

/// Returns the `host:port` of the test Redis.
fn redis_address() -> String {
    let url = url::Url::parse(&common::redis_url()).expect("valid test Redis URL");
    let host = url.host_str().expect("test Redis URL has a host");
    format!("{host}:{}", url.port().unwrap_or(6379))
}

/// Returns the test Redis URL with its host and port replaced by `proxy`.
fn url_through(proxy: SocketAddr) -> String {
    let mut url = url::Url::parse(&common::redis_url()).expect("valid test Redis URL");
    url.set_ip_host(proxy.ip()).expect("set proxy host");
    url.set_port(Some(proxy.port())).expect("set proxy port");
    url.to_string()
}

async fn proxied_client(key_prefix: &str) -> (Proxy, RedisClient) {
    let proxy = Proxy::start(redis_address()).await;
    let mut settings = common::settings(key_prefix);
    settings.url = url_through(proxy.address);
    let client = RedisClient::connect(settings)
        .await
        .expect("connect through proxy");
    (proxy, client)
}

#[tokio::test]
async fn client_recovers_after_connection_cut() {
    let prefix = common::random_prefix();
    let (proxy, client) = proxied_client(&prefix).await;
    client.ping().await.expect("ping before the cut");

    proxy.cut_connections();

    let mut recovered = false;
    for _ in 0..40 {
        if client.ping().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "ping kept failing for 2 s after the cut");
    common::delete_keys(&prefix).await;
}

#[tokio::test]
async fn subscriber_resubscribes_after_connection_cut() {
    let prefix = common::random_prefix();
    let (proxy, client) = proxied_client(&prefix).await;
    let publisher = InvalidationBus::new(common::connect(&prefix).await);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let shutdown = CancellationToken::new();
    let task = InvalidationBus::new(client).subscribe(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
        },
        shutdown.clone(),
    );
    let subscribed =
        common::eventually(Duration::from_secs(5), || calls.load(Ordering::SeqCst) >= 1).await;
    assert!(subscribed, "no call after subscribing");

    proxy.cut_connections();

    // The call after resubscribing represents messages missed meanwhile.
    let resubscribed =
        common::eventually(Duration::from_secs(3), || calls.load(Ordering::SeqCst) >= 2).await;
    assert!(resubscribed, "no call after resubscribing");
    publisher.publish().await.expect("publish");
    let delivered =
        common::eventually(Duration::from_secs(1), || calls.load(Ordering::SeqCst) >= 3).await;
    assert!(delivered, "message after resubscribing not delivered");
    assert!(!task.is_finished(), "subscriber stopped after the cut");
    shutdown.cancel();
    common::delete_keys(&prefix).await;
}
