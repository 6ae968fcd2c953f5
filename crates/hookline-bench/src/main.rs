//! `hookline-bench`: measures Hookline's whole path on one machine, from
//! HTTP or Kafka ingest to a verifying HTTPS receiver.
//!
//! `load` runs the receiver in this process and Hookline as child
//! processes: `hookline serve`, or with `--distributed` `hookline api` and
//! `--dispatchers` dispatchers on PostgreSQL, RabbitMQ and Redis. It ingests
//! events, through the HTTP API or with `--source kafka` through a topic on
//! librdkafka's mock broker, and waits until each one reached every
//! application. Then it
//! prints throughput, end-to-end latency and the processes' CPU time and
//! peak memory. It then drives the same receiver directly (the raw phase),
//! which shows how fast the receiver and this machine go with no Hookline
//! in between. `raw` runs only that second phase. `cold-start` measures
//! process start to first delivery and idle memory. `isolation` measures one
//! application's latency before and while another application's endpoint
//! hangs.

mod coldstart;
mod deployment;
mod generator;
mod isolation;
mod isolation_report;
mod kafka;
mod latency;
mod load;
mod procfs;
mod raw;
mod receipts;
mod report;
mod server;
mod usage;
mod workload;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use hookline_receiver::{Receiver, TestPki};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "hookline-bench",
    version,
    about = "Load benchmarks of Hookline, from HTTP or Kafka ingest to HTTPS delivery"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest events into Hookline, wait for every delivery, then run the raw phase
    Load(LoadArgs),
    /// Send signed requests straight to a receiver, with no Hookline in between
    Raw(RawArgs),
    /// Time from process start to ready and to first delivery, and idle memory
    ColdStart(ColdStartArgs),
    /// A healthy application's latency before and while other applications' endpoints hang
    Isolation(IsolationArgs),
}

/// Processes that run Hookline.
#[derive(Args)]
struct TopologyArgs {
    /// Run `hookline api` and separate `hookline dispatcher` processes on
    /// PostgreSQL, RabbitMQ and Redis instead of `hookline serve` on SQLite.
    /// Each run uses its own schema, queue names and key prefix and removes
    /// them at the end (with psql and rabbitmqctl)
    #[arg(long)]
    distributed: bool,
    /// Dispatcher processes in the distributed mode
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=32))]
    dispatchers: u32,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

impl TopologyArgs {
    fn topology(self) -> deployment::Topology {
        if !self.distributed {
            return deployment::Topology::Embedded;
        }
        deployment::Topology::Distributed(deployment::DistributedSettings {
            dispatchers: self.dispatchers,
            postgres_url: self.postgres_url,
            amqp_url: self.amqp_url,
            redis_url: self.redis_url,
        })
    }
}

#[derive(Args)]
struct ColdStartArgs {
    /// Path of the hookline binary [default: target/release/hookline in this workspace]
    #[arg(long)]
    hookline: Option<PathBuf>,
    #[command(flatten)]
    topology: TopologyArgs,
    /// Events waiting for the dispatcher (distributed) or ingested once ready (embedded)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Size of each JSON event payload in bytes
    #[arg(long, default_value_t = 1024)]
    payload_bytes: usize,
    /// Quiet time after the last delivery before the idle memory is read
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Write the figures as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Payload and client settings shared by both commands.
#[derive(Args)]
struct TrafficArgs {
    /// Size of each JSON event payload in bytes (at least about 30)
    #[arg(long, default_value_t = 1024)]
    payload_bytes: usize,
    /// Requests in flight at once, over keep-alive connections
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
}

#[derive(Args)]
struct LoadArgs {
    /// Path of the hookline binary [default: target/release/hookline in this workspace]
    #[arg(long)]
    hookline: Option<PathBuf>,
    /// Events to ingest
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Products, each with its own ingest URL and Kafka topic. Events take
    /// turns among them
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    products: u32,
    /// Applications subscribed to each product. Each event is delivered to
    /// every application of its product
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    applications: u32,
    /// Entry of the events: the HTTP ingest API, or a Kafka topic on a mock
    /// broker in this process (the distributed mode then adds a `hookline
    /// creator` process)
    #[arg(long, value_enum, default_value = "http")]
    source: report::Source,
    #[command(flatten)]
    traffic: TrafficArgs,
    #[command(flatten)]
    topology: TopologyArgs,
    /// Fixed ingest rate in events per second [default: as fast as responses allow]
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Fraction of delivery attempts that the receiver fails with HTTP 500, from 0.0 to below 1.0.
    /// It also sets retry.interval=10ms and retry.backoff_unit=1ms
    #[arg(long, value_parser = parse_fail_ratio)]
    fail_ratio: Option<f64>,
    /// Limit of the Hookline phase from the first ingest request, such as 120s or 10m
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write the figures as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Copy the logs of the Hookline processes (warnings and errors) to this file
    #[arg(long)]
    hookline_log: Option<PathBuf>,
    /// Extra environment variable for the Hookline processes, such as
    /// HOOKLINE_DELIVERY__PER_ENDPOINT_CONCURRENCY=64. Repeat it for several variables
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    hookline_env: Vec<(String, String)>,
    /// Skip the raw phase
    #[arg(long)]
    no_raw: bool,
}

#[derive(Args)]
struct IsolationArgs {
    /// Path of the hookline binary [default: target/release/hookline in this workspace]
    #[arg(long)]
    hookline: Option<PathBuf>,
    #[command(flatten)]
    topology: TopologyArgs,
    /// Fixed ingest rate of both phases, in events per second
    #[arg(long, default_value_t = 500.0, value_parser = parse_rate)]
    rate: f64,
    /// Ingest time of each phase, such as 20s. Each phase sends rate x duration events
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Applications whose endpoint hangs in the second phase, each on its own receiver port
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    hanging: u32,
    /// Hookline's deadline of one attempt (delivery.timeout), which ends each hanging attempt
    #[arg(long, default_value = "2s", value_parser = parse_delivery_timeout)]
    delivery_timeout: Duration,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Limit of each phase's wait for its deliveries after its last ingest response
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write the figures as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Copy the logs of the Hookline processes (warnings and errors) to this file
    #[arg(long)]
    hookline_log: Option<PathBuf>,
    /// Extra environment variable for the Hookline processes, such as
    /// HOOKLINE_DELIVERY__PER_ENDPOINT_CONCURRENCY=64. Repeat it for several variables
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    hookline_env: Vec<(String, String)>,
}

#[derive(Args)]
struct RawArgs {
    /// Requests to send
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Write the figures as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,hookline_bench=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match Cli::parse().command {
        Command::Load(args) => run_load(args).await,
        Command::Raw(args) => run_raw(args).await,
        Command::ColdStart(args) => run_cold_start(args).await,
        Command::Isolation(args) => run_isolation(args).await,
    }
}

async fn run_load(args: LoadArgs) -> Result<()> {
    let settings = report::Settings {
        topology: args.topology.topology(),
        source: args.source,
        events: args.events,
        products: args.products,
        applications: args.applications,
        payload_bytes: args.traffic.payload_bytes,
        concurrency: usize::try_from(args.traffic.concurrency)?,
        rate_per_second: args.rate,
        fail_ratio: args.fail_ratio,
        timeout_seconds: args.timeout.as_secs_f64(),
        hookline_env: args.hookline_env,
    };
    let options = load::LoadOptions {
        hookline: args.hookline.unwrap_or_else(default_hookline_path),
        settings,
        timeout: args.timeout,
        hookline_log: args.hookline_log,
        raw: !args.no_raw,
    };
    let report = load::run(options).await?;
    report::print_load(&report);
    if let Some(path) = &args.json {
        report::write_json(path, &report)?;
    }
    Ok(())
}

async fn run_cold_start(args: ColdStartArgs) -> Result<()> {
    let options = coldstart::ColdStartOptions {
        hookline: args.hookline.unwrap_or_else(default_hookline_path),
        topology: args.topology.topology(),
        events: args.events,
        payload_bytes: args.payload_bytes,
        idle: args.idle,
    };
    let report = coldstart::run(options).await?;
    coldstart::print(&report);
    if let Some(path) = &args.json {
        report::write_json(path, &report)?;
    }
    Ok(())
}

async fn run_isolation(args: IsolationArgs) -> Result<()> {
    let settings = isolation_report::IsolationSettings {
        topology: args.topology.topology(),
        hanging_applications: args.hanging,
        events_per_phase: isolation::events_per_phase(args.rate, args.duration)?,
        rate_per_second: args.rate,
        payload_bytes: args.traffic.payload_bytes,
        concurrency: usize::try_from(args.traffic.concurrency)?,
        delivery_timeout: args.delivery_timeout,
        timeout_seconds: args.timeout.as_secs_f64(),
        hookline_env: args.hookline_env,
        healthy_receiver: String::new(),
        hanging_receivers: Vec::new(),
    };
    let options = isolation::IsolationOptions {
        hookline: args.hookline.unwrap_or_else(default_hookline_path),
        settings,
        timeout: args.timeout,
        hookline_log: args.hookline_log,
    };
    let report = isolation::run(options).await?;
    isolation_report::print(&report);
    if let Some(path) = &args.json {
        report::write_json(path, &report)?;
    }
    Ok(())
}

async fn run_raw(args: RawArgs) -> Result<()> {
    let pki = TestPki::generate()?;
    let receiver = Receiver::start(&pki, "127.0.0.1:0".parse()?).await?;
    let config = raw::RawConfig {
        requests: args.requests,
        payload_bytes: args.traffic.payload_bytes,
        concurrency: usize::try_from(args.traffic.concurrency)?,
    };
    let figures = raw::run(&receiver, &pki.ca_pem, config).await?;
    receiver.shutdown().await;
    report::print_raw(&figures);
    if let Some(path) = &args.json {
        report::write_json(path, &figures)?;
    }
    Ok(())
}

/// Returns `target/release/hookline` under the workspace root, which is
/// two levels above this crate's manifest.
fn default_hookline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/hookline")
}

fn parse_rate(text: &str) -> Result<f64> {
    let rate: f64 = text.parse()?;
    if !(rate.is_finite() && rate > 0.0) {
        bail!("invalid rate {text}: expected a positive number of events per second");
    }
    Ok(rate)
}

fn parse_fail_ratio(text: &str) -> Result<f64> {
    let ratio: f64 = text.parse()?;
    if !(0.0..1.0).contains(&ratio) {
        bail!("invalid fail ratio {text}: expected at least 0.0 and below 1.0, because at 1.0 nothing is ever delivered");
    }
    Ok(ratio)
}

fn parse_delivery_timeout(text: &str) -> Result<Duration> {
    let timeout = humantime::parse_duration(text)?;
    if timeout < Duration::from_millis(1) {
        bail!("invalid delivery timeout {text}: expected at least 1ms, such as 2s");
    }
    Ok(timeout)
}

fn parse_env_pair(text: &str) -> Result<(String, String)> {
    let Some((key, value)) = text.split_once('=') else {
        bail!("invalid setting {text:?}: expected KEY=VALUE");
    };
    if !key.starts_with("HOOKLINE_") {
        bail!("invalid setting {text:?}: the variable must start with HOOKLINE_");
    }
    Ok((key.to_owned(), value.to_owned()))
}
