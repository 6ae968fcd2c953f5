//! The `cold-start` command: how long a Hookline process takes from being
//! started to being ready and to its first delivery, and how much memory
//! the processes hold once idle.
//!
//! Distributed: `hookline api` starts with no dispatcher, the events are
//! ingested and wait in RabbitMQ, and then one `hookline dispatcher` is
//! started, as KEDA does when it scales from zero. Embedded: `hookline
//! serve` is started, and once it is ready the events are ingested.

use crate::deployment::{Deployment, Topology};
use crate::generator::{self, GeneratorConfig};
use crate::load::subscribe;
use crate::procfs;
use crate::report::{Settings, Source};
use anyhow::{bail, Result};
use hookline_receiver::{Receiver, TestPki};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of the `cold-start` command.
pub(crate) struct ColdStartOptions {
    pub(crate) hookline: PathBuf,
    pub(crate) topology: Topology,
    pub(crate) events: u64,
    pub(crate) payload_bytes: usize,
    /// Quiet time after the last delivery before the idle RSS is read.
    pub(crate) idle: Duration,
}

/// Memory of one process after the idle time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IdleMemory {
    pub(crate) command: String,
    pub(crate) rss_mib: f64,
    pub(crate) peak_rss_mib: f64,
}

/// Figures of a `cold-start` run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ColdStartReport {
    pub(crate) topology: Topology,
    pub(crate) events: u64,
    /// The process started last: `dispatcher` or `serve`.
    pub(crate) measured_command: String,
    /// From spawning the process to its first 2xx `/readyz` (polled every 5 ms).
    pub(crate) start_to_ready_ms: f64,
    /// From spawning the process to the first successful receipt.
    pub(crate) start_to_first_delivery_ms: Option<f64>,
    /// From spawning the process to the receipt of the last event.
    pub(crate) start_to_all_delivered_ms: Option<f64>,
    pub(crate) delivered: u64,
    pub(crate) idle_memory: Vec<IdleMemory>,
}

/// Runs one cold start and returns its figures.
pub(crate) async fn run(options: ColdStartOptions) -> Result<ColdStartReport> {
    let dir = tempfile::Builder::new()
        .prefix("hookline-bench-")
        .tempdir()?;
    let pki = TestPki::generate()?;
    let ca_file = dir.path().join("ca.pem");
    pki.write_ca(&ca_file)?;
    let receiver = Receiver::start(&pki, "127.0.0.1:0".parse()?).await?;
    let settings = one_application(&options);

    let started = Instant::now();
    let mut deployment = Deployment::start(
        &options.hookline,
        &options.topology,
        dir.path(),
        &ca_file,
        Vec::new(),
        Some(0),
    )
    .await?;
    let mut ready = started.elapsed();
    subscribe(deployment.front(), &receiver, &settings).await?;

    let distributed = matches!(options.topology, Topology::Distributed(_));
    let ingest = ingest(&deployment, &options).await?;
    let measured_from = if distributed {
        let spawned = Instant::now();
        deployment.start_dispatcher().await?;
        ready = spawned.elapsed();
        spawned
    } else {
        started
    };

    let delivered = wait_for_all(&mut deployment, &receiver, ingest).await?;
    let receipts = receiver.all();
    let successes = receipts.iter().filter(|record| record.succeeded());
    let first = successes
        .clone()
        .map(|record| record.received_instant)
        .min();
    let last = successes.map(|record| record.received_instant).max();
    let since_start = |at: Option<Instant>| at.map(|at| millis(at - measured_from));

    tokio::time::sleep(options.idle).await;
    let idle_memory = idle_memory(&deployment)?;
    let measured_command = deployment
        .processes()
        .last()
        .map_or_else(String::new, |process| process.command().to_owned());
    deployment.stop().await?;
    receiver.shutdown().await;
    Ok(ColdStartReport {
        topology: options.topology,
        events: options.events,
        measured_command,
        start_to_ready_ms: millis(ready),
        start_to_first_delivery_ms: since_start(first),
        start_to_all_delivered_ms: since_start(last),
        delivered,
        idle_memory,
    })
}

fn one_application(options: &ColdStartOptions) -> Settings {
    Settings {
        topology: options.topology.clone(),
        source: Source::Http,
        events: options.events,
        products: 1,
        applications: 1,
        payload_bytes: options.payload_bytes,
        concurrency: 8,
        rate_per_second: None,
        fail_ratio: None,
        timeout_seconds: DELIVERY_TIMEOUT.as_secs_f64(),
        hookline_env: Vec::new(),
    }
}

/// Ingests the events and returns how many were accepted.
async fn ingest(deployment: &Deployment, options: &ColdStartOptions) -> Result<u64> {
    let config = GeneratorConfig {
        ingest_urls: vec![generator::ingest_url(
            deployment.front().api_url(),
            crate::load::PRODUCT,
        )],
        first_event: 0,
        events: options.events,
        payload_bytes: options.payload_bytes,
        concurrency: 8,
        rate: None,
    };
    let outcome = generator::run(config).await?;
    if outcome.rejected > 0 {
        bail!(
            "{} of {} events were rejected",
            outcome.rejected,
            options.events
        );
    }
    Ok(outcome.accepted)
}

async fn wait_for_all(
    deployment: &mut Deployment,
    receiver: &Receiver,
    expected: u64,
) -> Result<u64> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let stats = receiver.stats();
        let delivered = stats.succeeded - stats.duplicates;
        if delivered >= expected {
            return Ok(delivered);
        }
        deployment.check_running()?;
        if Instant::now() >= deadline {
            tracing::warn!(delivered, expected, "timed out waiting for deliveries");
            return Ok(delivered);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn idle_memory(deployment: &Deployment) -> Result<Vec<IdleMemory>> {
    deployment
        .processes()
        .map(|process| {
            Ok(IdleMemory {
                command: process.command().to_owned(),
                rss_mib: procfs::rss_kib(process.pid())? as f64 / 1024.0,
                peak_rss_mib: procfs::peak_rss_kib(process.pid())? as f64 / 1024.0,
            })
        })
        .collect()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Prints the summary of a `cold-start` run to standard output.
pub(crate) fn print(report: &ColdStartReport) {
    println!(
        "\nhookline-bench cold-start: {} events, {}",
        report.events,
        report.topology.describe()
    );
    let optional =
        |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0}"));
    let command = &report.measured_command;
    println!(
        "  {:<40} {:>10.0}",
        format!("{command}: start to ready ms"),
        report.start_to_ready_ms
    );
    println!(
        "  {:<40} {:>10}",
        format!("{command}: start to first delivery ms"),
        optional(report.start_to_first_delivery_ms)
    );
    println!(
        "  {:<40} {:>10}",
        format!("{command}: start to last delivery ms"),
        optional(report.start_to_all_delivered_ms)
    );
    println!("  {:<40} {:>10}", "delivered", report.delivered);
    for memory in &report.idle_memory {
        println!(
            "  {:<40} {:>10}",
            format!("{}: idle RSS MiB (peak)", memory.command),
            format!("{:.1} ({:.1})", memory.rss_mib, memory.peak_rss_mib)
        );
    }
    if report.delivered < report.events {
        println!(
            "WARNING: {} of {} events were not delivered",
            report.events - report.delivered,
            report.events
        );
    }
}
