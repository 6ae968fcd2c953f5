//! Shared helpers of the end-to-end tests: a `hookline serve` child process
//! with its own data directory, a verifying HTTPS receiver, and API calls.

#![allow(dead_code, unreachable_pub)]

use hookline_core::signing::SigningSecret;
use hookline_receiver::{Receiver, TestPki};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const TOKEN: &str = "test-admin-token";

/// Which backends a test's server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the test's data directory.
    Embedded,
    /// The machine's PostgreSQL, RabbitMQ and Redis, isolated by a schema,
    /// a queue name and a key prefix of the test's own.
    Distributed,
}

/// Runs an async test body once per backend, as `name::embedded` and
/// `name::distributed`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::common::Backend::Embedded).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                super::$name($crate::common::Backend::Distributed).await
            }
        }
    };
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A test's private world: data directory, certificates, receiver and
/// backend isolation.
pub struct World {
    pub dir: tempfile::TempDir,
    pub pki: TestPki,
    pub ca_file: PathBuf,
    pub receiver: Receiver,
    pub backend: Backend,
    /// Variables that point the server at this test's backends.
    backend_env: Vec<(String, String)>,
    schema: Option<String>,
}

impl World {
    pub async fn new() -> Self {
        Self::with_backend(Backend::Embedded).await
    }

    pub async fn with_backend(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pki = TestPki::generate().expect("test certificates");
        let ca_file = dir.path().join("ca.pem");
        pki.write_ca(&ca_file).expect("write CA");
        let receiver = Receiver::start(&pki, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("receiver starts");
        let (backend_env, schema) = match backend {
            Backend::Embedded => (Vec::new(), None),
            Backend::Distributed => distributed_env(),
        };
        Self {
            dir,
            pki,
            ca_file,
            receiver,
            backend,
            backend_env,
            schema,
        }
    }

    /// Secrets of the applications created through servers of this world.
    pub fn receiver_secrets(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("secrets.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The main queue name of a distributed world.
    pub fn queue_name(&self) -> Option<String> {
        self.backend_env
            .iter()
            .find(|(key, _)| key == "HOOKLINE_QUEUE__NAME")
            .map(|(_, value)| value.clone())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts a server that applies the production URL rules (no private
    /// addresses, HTTPS only), in a data directory of its own.
    pub async fn serve_strict(&self) -> Server {
        let data_dir = self.dir.path().join("strict");
        Server::start(
            &data_dir,
            &self.ca_file,
            &[("HOOKLINE_DELIVERY__ALLOW_PRIVATE_ADDRESSES", "false")],
        )
        .await
    }

    /// Starts `hookline serve` with test settings plus `extra` variables.
    pub async fn serve(&self, extra: &[(&str, &str)]) -> Server {
        self.start("serve", extra).await
    }

    /// Starts `hookline <command>` with this world's backends and `extra` variables.
    pub async fn start(&self, command: &str, extra: &[(&str, &str)]) -> Server {
        let mut env: Vec<(&str, &str)> = self
            .backend_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        Server::start_command(command, &self.data_dir(), &self.ca_file, &env).await
    }
}

/// Variables for a fresh schema, queue name and key prefix.
fn distributed_env() -> (Vec<(String, String)>, Option<String>) {
    let tag = format!("{:016x}", rand_u64());
    let schema = format!("hl_test_{tag}");
    let env = vec![
        (
            "HOOKLINE_STORAGE__URL".to_owned(),
            env_or(
                "HOOKLINE_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
        ),
        ("HOOKLINE_STORAGE__SCHEMA".to_owned(), schema.clone()),
        // The distributed mode needs a key for signing secrets at rest.
        (
            "HOOKLINE_SECRETS__KEYS".to_owned(),
            "test:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_owned(),
        ),
        (
            "HOOKLINE_QUEUE__URL".to_owned(),
            env_or(
                "HOOKLINE_TEST_AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            ),
        ),
        (
            "HOOKLINE_QUEUE__NAME".to_owned(),
            format!("hltest-{tag}.webhookQueue"),
        ),
        (
            "HOOKLINE_REDIS__URL".to_owned(),
            env_or("HOOKLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        ),
        (
            "HOOKLINE_REDIS__KEY_PREFIX".to_owned(),
            format!("hltest-{tag}:"),
        ),
    ];
    (env, Some(schema))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish()
}

impl Drop for World {
    fn drop(&mut self) {
        // Best effort: the schema of a distributed test is dropped with psql.
        if let Some(schema) = &self.schema {
            let url = env_or(
                "HOOKLINE_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            );
            let _ = Command::new("psql")
                .args([
                    url.as_str(),
                    "-q",
                    "-c",
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(queue) = self.queue_name() {
            delete_queues(&queue);
        }
    }
}

/// Deletes the main, delay and dead-letter queues of a distributed test, so
/// quorum queues do not pile up on the broker across test runs.
pub fn delete_queues(main: &str) {
    let listing = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name"])
        .output();
    let Ok(listing) = listing else { return };
    let names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| name.starts_with(main))
        .map(str::to_owned)
        .collect();
    let url = env_or(
        "HOOKLINE_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async move {
            let properties = lapin::ConnectionProperties::default();
            let connection = lapin::Connection::connect(&url, properties).await.ok()?;
            let channel = connection.create_channel().await.ok()?;
            for name in names {
                let options = lapin::options::QueueDeleteOptions::default();
                let _ = channel.queue_delete(name.as_str().into(), options).await;
            }
            Some(())
        })
    })
    .join();
}

/// A running `hookline serve` process.
pub struct Server {
    child: Child,
    pub api: String,
    pub log: PathBuf,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

impl Server {
    pub async fn start(data_dir: &Path, ca_file: &Path, extra: &[(&str, &str)]) -> Self {
        Self::start_command("serve", data_dir, ca_file, extra).await
    }

    pub async fn start_command(
        subcommand: &str,
        data_dir: &Path,
        ca_file: &Path,
        extra: &[(&str, &str)],
    ) -> Self {
        std::fs::create_dir_all(data_dir).unwrap();
        let port = free_port();
        let log = data_dir.join(format!("{subcommand}-{port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
        command
            .arg(subcommand)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,hookline_delivery=debug")
            .env("HOOKLINE_API__LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKLINE_API__ADMIN_TOKEN", TOKEN)
            .env("HOOKLINE_STORAGE__DATA_DIR", data_dir)
            .env("HOOKLINE_DELIVERY__CA_FILE", ca_file)
            .env("HOOKLINE_DELIVERY__ALLOW_PRIVATE_ADDRESSES", "true")
            .stdout(Stdio::null())
            .stderr(log_file);
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("hookline serve starts");
        let server = Self {
            child,
            api: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(response) = self.http.get(format!("{}/readyz", self.api)).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "hookline serve did not become ready; log:\n{}",
            self.log_text()
        );
    }

    /// Appends a secret to `secrets.txt` beside the data directory, where
    /// [`World::receiver_secrets`] reads it back.
    fn note_secret(&self, secret: &str) {
        use std::io::Write;
        let path = self
            .log
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("secrets.txt"));
        if let Some(path) = path {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            writeln!(file, "{secret}").unwrap();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.child.kill().expect("kill hookline serve");
        self.child.wait().unwrap();
    }

    /// Sends SIGKILL without waiting; usable while other tasks share the server.
    pub fn kill_now(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("send SIGKILL");
        assert!(status.success(), "kill -KILL {pid} failed");
    }

    /// Sends SIGHUP, which makes the server reload its configuration.
    pub fn hang_up(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("send SIGHUP");
        assert!(status.success(), "kill -HUP {pid} failed");
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("send SIGTERM");
        self.child.wait().unwrap()
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn create_product(&self, name: &str, topic: &str) {
        let body = json!({"name": name, "topic": topic, "content_type": "application/json"});
        let (status, body) = self
            .request(reqwest::Method::POST, "/api/v1/products", Some(body))
            .await;
        assert_eq!(status, 201, "create product: {body}");
    }

    /// Creates an application on the receiver's endpoint and registers its secret there.
    pub async fn create_application(
        &self,
        receiver: &Receiver,
        product: &str,
        endpoint: &str,
    ) -> String {
        // The unlimited `paid` plan, so that tests sending many events are not rate-limited.
        let body = json!({"name": endpoint, "product": product, "plan": "paid", "webhook_url": receiver.endpoint_url(endpoint)});
        let (status, body) = self
            .request(reqwest::Method::POST, "/api/v1/applications", Some(body))
            .await;
        assert_eq!(status, 201, "create application: {body}");
        let text = body["secret"].as_str().unwrap();
        let secret = SigningSecret::parse(text).expect("whsec_ secret");
        self.note_secret(text);
        receiver.set_secret(endpoint, secret);
        body["id"].as_str().unwrap().to_owned()
    }

    /// Posts one event; returns the status and the response body.
    pub async fn ingest(&self, product: &str, key: Option<&str>, payload: &str) -> (u16, Value) {
        self.try_ingest(product, key, payload)
            .await
            .expect("ingest request")
    }

    /// Posts one event; `None` when the server did not answer.
    pub async fn try_ingest(
        &self,
        product: &str,
        key: Option<&str>,
        payload: &str,
    ) -> Option<(u16, Value)> {
        let mut request = self
            .http
            .post(format!("{}/api/v1/products/{product}/events", self.api))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(payload.to_owned());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn deliveries(&self, application: &str) -> Vec<Value> {
        let path = format!("/api/v1/applications/{application}/deliveries?limit=500");
        let (status, body) = self.request(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "list deliveries: {body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Polls until `condition` holds for the application's deliveries.
    pub async fn wait_deliveries(
        &self,
        application: &str,
        timeout: Duration,
        condition: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let deliveries = self.deliveries(application).await;
            if condition(&deliveries) || tokio::time::Instant::now() > deadline {
                return deliveries;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample order-created event with another order id.
pub fn order_event(order_id: &str) -> String {
    include_str!("../../../../fixtures/order-created.event.json").replace("1001XYZ", order_id)
}
