//! One Hookline process (`hookline serve`, `api` or `dispatcher`) as a
//! child process, and the admin API calls that set up a benchmark: one
//! product and its applications.

use anyhow::{bail, Context, Result};
use hookline_core::signing::SigningSecret;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// Bearer token of the benchmark's own throwaway server.
pub(crate) const ADMIN_TOKEN: &str = "hookline-bench-admin-token";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Launch settings of one Hookline process.
pub(crate) struct Launch<'a> {
    pub(crate) binary: &'a Path,
    /// The subcommand: `serve`, `api` or `dispatcher`.
    pub(crate) command: &'a str,
    pub(crate) data_dir: &'a Path,
    pub(crate) ca_file: &'a Path,
    /// File that receives the process's stderr, where it logs.
    pub(crate) log_file: &'a Path,
    /// Settings added to the fixed benchmark ones, such as retry timing.
    pub(crate) extra_env: Vec<(String, String)>,
}

/// A running Hookline process, killed when dropped.
pub(crate) struct HooklineServer {
    command: String,
    child: Child,
    pid: u32,
    api: String,
    http: reqwest::Client,
    log_file: PathBuf,
}

impl HooklineServer {
    /// Starts the process with its API (or, for a dispatcher, its
    /// operational endpoints) on a free 127.0.0.1 port and waits until
    /// `/readyz` returns a 2xx status.
    pub(crate) async fn start(launch: Launch<'_>) -> Result<Self> {
        if !launch.binary.is_file() {
            bail!(
                "hookline binary not found at {}: build it with `cargo build --release -p hookline` or pass --hookline PATH",
                launch.binary.display()
            );
        }
        std::fs::create_dir_all(launch.data_dir)
            .with_context(|| format!("failed to create {}", launch.data_dir.display()))?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(launch.log_file)
            .with_context(|| format!("failed to create {}", launch.log_file.display()))?;

        let mut command = Command::new(launch.binary);
        command
            .arg(launch.command)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOOKLINE_API__LISTEN", &listen)
            .env("HOOKLINE_API__ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HOOKLINE_STORAGE__DATA_DIR", launch.data_dir)
            .env("HOOKLINE_DELIVERY__CA_FILE", launch.ca_file)
            .env("HOOKLINE_DELIVERY__ALLOW_PRIVATE_ADDRESSES", "true")
            .env("HOOKLINE_LOG__LEVEL", "warn")
            .envs(launch.extra_env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {}", launch.binary.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("hookline {} exited right after starting", launch.command))?;
        tracing::info!(pid, %listen, command = launch.command, "started a hookline process");

        let http = reqwest::Client::builder().no_proxy().build()?;
        let mut server = Self {
            command: launch.command.to_owned(),
            child,
            pid,
            api: format!("http://{listen}"),
            http,
            log_file: launch.log_file.to_owned(),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Returns the subcommand this process runs.
    pub(crate) fn command(&self) -> &str {
        &self.command
    }

    pub(crate) fn log_file(&self) -> LogFile {
        LogFile {
            command: self.command.clone(),
            pid: self.pid,
            path: self.log_file.clone(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Returns `http://127.0.0.1:PORT` with no trailing slash.
    pub(crate) fn api_url(&self) -> &str {
        &self.api
    }

    /// Returns the exit status if the process has exited.
    pub(crate) fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Returns the last `lines` lines of the log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let url = format!("{}/readyz", self.api);
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.exit_status()? {
                bail!(
                    "hookline {} exited with {status} before it was ready. Its log ends with:\n{}",
                    self.command,
                    self.log_tail(20)
                );
            }
            if let Ok(response) = self.http.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            // Short, because the cold-start figures count from the spawn to this response.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        bail!(
            "hookline {} was not ready within {READY_TIMEOUT:?}. Its log ends with:\n{}",
            self.command,
            self.log_tail(20)
        )
    }

    /// Creates a product that takes JSON events.
    pub(crate) async fn create_product(&self, name: &str) -> Result<()> {
        let body = json!({"name": name, "content_type": "application/json"});
        self.post("/api/v1/products", &body).await?;
        Ok(())
    }

    /// Subscribes an application with `webhook_url` to `product` and
    /// returns its signing secret.
    pub(crate) async fn create_application(
        &self,
        product: &str,
        name: &str,
        webhook_url: &str,
    ) -> Result<SigningSecret> {
        let body =
            json!({"name": name, "product": product, "plan": "paid", "webhook_url": webhook_url});
        let created = self.post("/api/v1/applications", &body).await?;
        let secret = created["secret"].as_str().with_context(|| {
            format!("application {name}: the response has no secret: {created}")
        })?;
        SigningSecret::parse(secret)
            .with_context(|| format!("application {name}: invalid secret in the response"))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.api);
        let response = self
            .http
            .post(&url)
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url} failed"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.as_u16() != 201 {
            bail!("POST {url} returned {status}, expected 201 Created: {text}");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("POST {url} returned invalid JSON: {text}"))
    }

    /// Sends SIGTERM and waits for the exit, or kills the process after
    /// 10 seconds.
    pub(crate) async fn stop(mut self) -> Result<ExitStatus> {
        let pid = self.pid.to_string();
        let signal = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        if let Err(error) = signal {
            tracing::warn!(%error, pid, command = %self.command, "failed to run kill -TERM, so the process is killed");
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                tracing::warn!(
                    pid,
                    command = %self.command,
                    "the process did not exit within {STOP_TIMEOUT:?} of SIGTERM, so it is killed"
                );
                self.child.kill().await?;
                Ok(self.child.wait().await?)
            }
        }
    }
}

/// Log file of one process, kept so the log can be read after the process exits.
#[derive(Debug, Clone)]
pub(crate) struct LogFile {
    pub(crate) command: String,
    pub(crate) pid: u32,
    pub(crate) path: PathBuf,
}

/// Returns a port that was free a moment ago. Another process could take
/// it before the Hookline process binds it, which would fail its start.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("failed to bind a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Counts the lines of the processes' logs, logs the first few of each,
/// and writes them all to `copy_to` when given, each under its command.
pub(crate) fn inspect_logs(logs: &[LogFile], copy_to: Option<&Path>) -> Result<usize> {
    let mut lines = 0;
    let mut copy = String::new();
    for log in logs {
        let text = std::fs::read_to_string(&log.path)
            .with_context(|| format!("failed to read {}", log.path.display()))?;
        for line in text.lines().take(5) {
            tracing::warn!(line, command = %log.command, "hookline logged");
        }
        lines += text.lines().count();
        copy.push_str(&format!("== hookline {} (pid {})\n", log.command, log.pid));
        copy.push_str(&text);
    }
    if let Some(path) = copy_to {
        std::fs::write(path, copy)
            .with_context(|| format!("failed to copy the hookline logs to {}", path.display()))?;
    }
    Ok(lines)
}
