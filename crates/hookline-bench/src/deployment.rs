//! The Hookline processes of one run: `hookline serve` alone (embedded),
//! or `hookline api`, N `hookline dispatcher` processes and, when events
//! come from Kafka, a `hookline creator`, sharing PostgreSQL, RabbitMQ and
//! Redis (distributed).

use crate::server::{HooklineServer, Launch};
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Key that encrypts signing secrets at rest in the benchmark's throwaway
/// PostgreSQL schema, which the distributed mode requires. `isolation` also
/// passes it to `hookline serve`.
const BENCH_SECRET_KEY: &str = "bench:QkVOQ0hCRU5DSEJFTkNIQkVOQ0hCRU5DSEJFTkNIQkU=";

/// Addresses of the distributed backends and the number of dispatchers to run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DistributedSettings {
    pub(crate) dispatchers: u32,
    pub(crate) postgres_url: String,
    pub(crate) amqp_url: String,
    pub(crate) redis_url: String,
}

/// The set of processes a run starts.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub(crate) enum Topology {
    Embedded,
    Distributed(DistributedSettings),
}

impl Topology {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Embedded => "embedded (hookline serve, SQLite)".to_owned(),
            Self::Distributed(settings) => format!(
                "distributed (hookline api + {} dispatcher(s), PostgreSQL, RabbitMQ, Redis)",
                settings.dispatchers
            ),
        }
    }
}

/// Names in the shared backends that belong to one run alone, removed
/// when the run ends.
struct Namespace {
    schema: String,
    queue: String,
    settings: DistributedSettings,
}

/// The running processes of one run, stopped or killed when dropped.
pub(crate) struct Deployment {
    /// `hookline serve` or `hookline api`: the process that takes ingest.
    front: HooklineServer,
    /// `hookline creator` processes, which consume Kafka (distributed).
    creators: Vec<HooklineServer>,
    dispatchers: Vec<HooklineServer>,
    binary: PathBuf,
    env: Vec<(String, String)>,
    work_dir: PathBuf,
    ca_file: PathBuf,
    namespace: Option<Namespace>,
}

impl Deployment {
    /// Starts the processes of `topology` and waits until each is ready.
    /// `dispatchers` overrides the configured dispatcher count, so a
    /// cold-start run can begin with none.
    pub(crate) async fn start(
        binary: &Path,
        topology: &Topology,
        work_dir: &Path,
        ca_file: &Path,
        extra_env: Vec<(String, String)>,
        dispatchers: Option<u32>,
    ) -> Result<Self> {
        let (front_command, namespace, mut env) = match topology {
            // Without a key, `hookline serve` generates one and logs a
            // warning, which would count as a warning of the run.
            Topology::Embedded => (
                "serve",
                None,
                vec![(
                    "HOOKLINE_SECRETS__KEYS".to_owned(),
                    BENCH_SECRET_KEY.to_owned(),
                )],
            ),
            Topology::Distributed(settings) => {
                let namespace = Namespace::new(settings.clone());
                let env = namespace.env();
                ("api", Some(namespace), env)
            }
        };
        env.extend(extra_env);
        let front = HooklineServer::start(Launch {
            binary,
            command: front_command,
            data_dir: &work_dir.join("data"),
            ca_file,
            log_file: &work_dir.join(format!("{front_command}.log")),
            extra_env: env.clone(),
        })
        .await?;
        let mut deployment = Self {
            front,
            creators: Vec::new(),
            dispatchers: Vec::new(),
            binary: binary.to_owned(),
            env,
            work_dir: work_dir.to_owned(),
            ca_file: ca_file.to_owned(),
            namespace,
        };
        let count = match topology {
            Topology::Embedded => 0,
            Topology::Distributed(settings) => dispatchers.unwrap_or(settings.dispatchers),
        };
        for _ in 0..count {
            deployment.start_dispatcher().await?;
        }
        Ok(deployment)
    }

    /// Starts one more `hookline dispatcher` and waits until it is ready.
    pub(crate) async fn start_dispatcher(&mut self) -> Result<&HooklineServer> {
        let number = self.dispatchers.len() + 1;
        let dispatcher = self.start_worker("dispatcher", number).await?;
        self.dispatchers.push(dispatcher);
        Ok(self.dispatchers.last().expect("just pushed"))
    }

    /// Starts one more `hookline creator`, which consumes the Kafka
    /// brokers given in the environment, and waits until it is ready.
    pub(crate) async fn start_creator(&mut self) -> Result<()> {
        let number = self.creators.len() + 1;
        let creator = self.start_worker("creator", number).await?;
        self.creators.push(creator);
        Ok(())
    }

    async fn start_worker(&self, command: &str, number: usize) -> Result<HooklineServer> {
        if self.namespace.is_none() {
            bail!("the embedded mode has no separate {command} to start");
        }
        HooklineServer::start(Launch {
            binary: &self.binary,
            command,
            data_dir: &self.work_dir.join("data"),
            ca_file: &self.ca_file,
            log_file: &self.work_dir.join(format!("{command}-{number}.log")),
            extra_env: self.env.clone(),
        })
        .await
    }

    /// Returns whether the processes share the distributed backends.
    pub(crate) fn is_distributed(&self) -> bool {
        self.namespace.is_some()
    }

    /// Returns the process that serves the admin and ingest API.
    pub(crate) fn front(&self) -> &HooklineServer {
        &self.front
    }

    /// Returns every process: the front one, then creators, then dispatchers.
    pub(crate) fn processes(&self) -> impl Iterator<Item = &HooklineServer> {
        std::iter::once(&self.front)
            .chain(&self.creators)
            .chain(&self.dispatchers)
    }

    /// Fails with the log's tail when any process has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        let all = std::iter::once(&mut self.front)
            .chain(&mut self.creators)
            .chain(&mut self.dispatchers);
        for process in all {
            if let Some(status) = process.exit_status()? {
                bail!(
                    "hookline {} exited with {status} during the run. Its log ends with:\n{}",
                    process.command(),
                    process.log_tail(20)
                );
            }
        }
        Ok(())
    }

    /// Sends SIGTERM to every process and waits for them; returns the
    /// commands that did not exit cleanly.
    /// The namespace is removed after the processes exit.
    pub(crate) async fn stop(self) -> Result<Vec<String>> {
        let mut unclean = Vec::new();
        let all = self.dispatchers.into_iter().chain(self.creators);
        for process in all.chain([self.front]) {
            let command = process.command().to_owned();
            if !process.stop().await?.success() {
                unclean.push(command);
            }
        }
        drop(self.namespace);
        Ok(unclean)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Namespace {
    fn new(settings: DistributedSettings) -> Self {
        let tag = format!("{:08x}", std::process::id() ^ nanos_now());
        Self {
            schema: format!("hl_bench_{tag}"),
            queue: format!("hlbench-{tag}.webhookQueue"),
            settings,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let pairs = [
            ("HOOKLINE_STORAGE__URL", self.settings.postgres_url.as_str()),
            ("HOOKLINE_STORAGE__SCHEMA", self.schema.as_str()),
            ("HOOKLINE_SECRETS__KEYS", BENCH_SECRET_KEY),
            ("HOOKLINE_QUEUE__URL", self.settings.amqp_url.as_str()),
            ("HOOKLINE_QUEUE__NAME", self.queue.as_str()),
            ("HOOKLINE_REDIS__URL", self.settings.redis_url.as_str()),
        ];
        let mut env: Vec<(String, String)> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        env.push((
            "HOOKLINE_REDIS__KEY_PREFIX".to_owned(),
            format!("{}:", self.schema),
        ));
        env
    }

    /// Drops the schema with `psql` and the run's queues with
    /// `rabbitmqctl`, best effort: a failure is logged and the run's
    /// figures stand.
    fn remove(&self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        let status = Command::new("psql")
            .args([
                self.settings.postgres_url.as_str(),
                "-q",
                "-c",
                &drop_schema,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|status| status.success()) {
            tracing::warn!(schema = %self.schema, "failed to drop the benchmark schema with psql");
        }
        for queue in self.queues() {
            let status = Command::new("rabbitmqctl")
                .args(["delete_queue", "-q", &queue])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !status.is_ok_and(|status| status.success()) {
                tracing::warn!(%queue, "failed to delete a benchmark queue with rabbitmqctl");
            }
        }
    }

    /// The run's main, delay and dead-letter queues, listed by `rabbitmqctl`.
    fn queues(&self) -> Vec<String> {
        let listing = Command::new("rabbitmqctl")
            .args(["list_queues", "-q", "--no-table-headers", "name"])
            .output();
        let Ok(listing) = listing else {
            tracing::warn!("failed to list queues with rabbitmqctl");
            return Vec::new();
        };
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .map(str::trim)
            .filter(|name| name.starts_with(&self.queue))
            .map(str::to_owned)
            .collect()
    }
}

fn nanos_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos())
}
