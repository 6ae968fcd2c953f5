//! The `isolation` command, which measures whether the delivery latency of a
//! healthy application changes while the endpoints of other applications
//! hang until Hookline's delivery timeout.
//!
//! Every application gets its own receiver on its own port of 127.0.0.1.
//! Hookline limits concurrent attempts per scheme, host and port
//! (`delivery.per_endpoint_concurrency`), so each application has its own
//! limit, as consumers on different hosts would. The run has two phases at
//! the same fixed ingest rate, and each event goes to every application in
//! both. In the baseline the hanging applications' endpoints respond with
//! 204. In the second phase they record each request and do not respond,
//! so Hookline abandons each attempt at its delivery timeout. The hang is
//! therefore the only difference between the phases.

use crate::deployment::Deployment;
use crate::generator::{self, per_second, GeneratorConfig, IngestOutcome};
use crate::isolation_report::{
    HangingFigures, HealthyFigures, IsolationReport, IsolationSettings, LatencyDelta, PhaseFigures,
};
use crate::latency::LatencySummary;
use crate::load::{ingest_figures, process_figures, wait_for_deliveries, PRODUCT};
use crate::procfs;
use crate::receipts::{ConnectionUse, Receipts};
use crate::server::{self, HooklineServer};
use crate::usage::{CpuFigures, CpuSample};
use crate::workload::endpoint_name;
use anyhow::{bail, Result};
use hookline_receiver::{Behaviour, Receiver, TestPki};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of the `isolation` command.
#[derive(Debug, Clone)]
pub(crate) struct IsolationOptions {
    pub(crate) hookline: PathBuf,
    pub(crate) settings: IsolationSettings,
    /// Maximum time each phase waits for its deliveries, counted from the
    /// phase's last ingest response.
    pub(crate) timeout: Duration,
    /// File that receives a copy of the Hookline processes' logs.
    pub(crate) hookline_log: Option<PathBuf>,
}

/// The two phases of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Every endpoint responds with 204.
    Baseline,
    /// The hanging applications' endpoints record each request without
    /// responding, so each attempt ends at Hookline's delivery timeout.
    Hanging,
}

/// The receivers of one run: one for the healthy application and one per
/// hanging application, each on its own port.
struct Endpoints {
    healthy: Receiver,
    hanging: Vec<Receiver>,
}

/// The healthy application is application 0 and the hanging ones follow.
const HEALTHY_APPLICATION: u32 = 0;

impl Endpoints {
    async fn start(pki: &TestPki, hanging: u32) -> Result<Self> {
        let healthy = Receiver::start(pki, "127.0.0.1:0".parse()?).await?;
        let mut receivers = Vec::new();
        for _ in 0..hanging {
            receivers.push(Receiver::start(pki, "127.0.0.1:0".parse()?).await?);
        }
        Ok(Self {
            healthy,
            hanging: receivers,
        })
    }

    /// Returns each application's number and receiver, the healthy
    /// application first.
    fn applications(&self) -> impl Iterator<Item = (u32, &Receiver)> {
        let hanging = (HEALTHY_APPLICATION + 1..).zip(&self.hanging);
        std::iter::once((HEALTHY_APPLICATION, &self.healthy)).chain(hanging)
    }

    fn hanging_applications(&self) -> impl Iterator<Item = (u32, &Receiver)> {
        self.applications().skip(1)
    }

    async fn shutdown(self) {
        self.healthy.shutdown().await;
        for receiver in self.hanging {
            receiver.shutdown().await;
        }
    }
}

/// Runs both phases against one deployment and returns the report.
pub(crate) async fn run(mut options: IsolationOptions) -> Result<IsolationReport> {
    let temp_dir = tempfile::Builder::new()
        .prefix("hookline-bench-")
        .tempdir()?;
    let pki = TestPki::generate()?;
    let ca_file = temp_dir.path().join("ca.pem");
    pki.write_ca(&ca_file)?;
    let endpoints = Endpoints::start(&pki, options.settings.hanging_applications).await?;
    options.settings.healthy_receiver = endpoints.healthy.local_addr().to_string();
    options.settings.hanging_receivers = endpoints
        .hanging
        .iter()
        .map(|receiver| receiver.local_addr().to_string())
        .collect();

    let mut deployment = Deployment::start(
        &options.hookline,
        &options.settings.topology,
        temp_dir.path(),
        &ca_file,
        hookline_env(&options.settings),
        None,
    )
    .await?;
    subscribe(deployment.front(), &endpoints).await?;

    let baseline = run_phase(&mut deployment, &endpoints, &options, Phase::Baseline).await?;
    let hanging = run_phase(&mut deployment, &endpoints, &options, Phase::Hanging).await?;
    // Read before stopping the processes, because an exited process has no VmHWM.
    let processes = process_figures(&deployment, procfs::clock_ticks_per_second())?;

    let log_lines = stop(deployment, options.hookline_log.as_deref()).await?;
    endpoints.shutdown().await;

    let mut report = IsolationReport {
        healthy_latency_delta: LatencyDelta::between(
            &baseline.healthy.latency,
            &hanging.healthy.latency,
        ),
        settings: options.settings,
        baseline,
        hanging,
        hookline_processes: processes,
        hookline_log_lines: log_lines,
        warnings: Vec::new(),
    };
    report.warnings = report.collect_warnings();
    Ok(report)
}

/// Returns the variables added to the Hookline processes' environment.
fn hookline_env(settings: &IsolationSettings) -> Vec<(String, String)> {
    let timeout = humantime::format_duration(settings.delivery_timeout).to_string();
    let mut env = vec![("HOOKLINE_DELIVERY__TIMEOUT".to_owned(), timeout)];
    // Settings from the command line come last, so they override the ones
    // above.
    env.extend(settings.hookline_env.iter().cloned());
    env
}

/// Creates the product and one application per receiver, each with its
/// secret registered on its receiver.
async fn subscribe(server: &HooklineServer, endpoints: &Endpoints) -> Result<()> {
    server.create_product(PRODUCT).await?;
    for (application, receiver) in endpoints.applications() {
        let name = endpoint_name(application);
        let url = receiver.endpoint_url(&name);
        let secret = server.create_application(PRODUCT, &name, &url).await?;
        receiver.set_secret(&name, secret);
    }
    tracing::info!(
        healthy = %endpoints.healthy.local_addr(),
        hanging = endpoints.hanging.len(),
        "subscribed the healthy and the hanging applications"
    );
    Ok(())
}

/// Sets the hanging endpoints' behaviour for `phase`, ingests the phase's
/// events and waits for the expected deliveries. The baseline waits for
/// every application's deliveries, and the hanging phase for the healthy
/// application's only.
async fn run_phase(
    deployment: &mut Deployment,
    endpoints: &Endpoints,
    options: &IsolationOptions,
    phase: Phase,
) -> Result<PhaseFigures> {
    let settings = &options.settings;
    let behaviour = match phase {
        Phase::Baseline => Behaviour::Succeed,
        Phase::Hanging => Behaviour::Hang,
    };
    for (application, receiver) in endpoints.applications() {
        receiver.clear();
        if application != HEALTHY_APPLICATION {
            receiver.script(&endpoint_name(application), behaviour.clone());
        }
    }
    let first_event = match phase {
        Phase::Baseline => 0,
        Phase::Hanging => settings.events_per_phase,
    };
    tracing::info!(?phase, first_event, "phase started");

    let clock_ticks = procfs::clock_ticks_per_second();
    let pids: Vec<u32> = deployment.processes().map(HooklineServer::pid).collect();
    let cpu_before = CpuSample::take(&pids, clock_ticks)?;
    let ingest = generator::run(GeneratorConfig {
        ingest_urls: vec![generator::ingest_url(deployment.front().api_url(), PRODUCT)],
        first_event,
        events: settings.events_per_phase,
        payload_bytes: settings.payload_bytes,
        concurrency: settings.concurrency,
        rate: Some(settings.rate_per_second),
    })
    .await?;

    let deadline = ingest.finished + options.timeout;
    let (awaited, expected): (Vec<&Receiver>, u64) = match phase {
        Phase::Baseline => {
            let applications = 1 + u64::from(settings.hanging_applications);
            let receivers = endpoints.applications().map(|(_, receiver)| receiver);
            (receivers.collect(), ingest.accepted * applications)
        }
        Phase::Hanging => (vec![&endpoints.healthy], ingest.accepted),
    };
    wait_for_deliveries(deployment, &awaited, expected, deadline).await?;
    let cpu_after = CpuSample::take(&pids, clock_ticks)?;

    let healthy = healthy_figures(&endpoints.healthy, &ingest, first_event, settings);
    let hanging = hanging_figures(endpoints);
    tracing::info!(
        ?phase,
        healthy_delivered = healthy.delivered,
        hanging_requests = hanging.requests,
        "phase finished"
    );
    Ok(PhaseFigures {
        first_event,
        ingest: ingest_figures(&ingest, 1 + settings.hanging_applications),
        healthy,
        hanging,
        cpu: CpuFigures::between(&cpu_before, &cpu_after),
    })
}

/// Computes the healthy application's figures from the requests its
/// receiver recorded.
fn healthy_figures(
    receiver: &Receiver,
    ingest: &IngestOutcome,
    first_event: u64,
    settings: &IsolationSettings,
) -> HealthyFigures {
    let records = receiver.all();
    let stats = receiver.stats();
    let events = settings.events_per_phase;
    let receipts = Receipts::collect_from(&records, first_event, events, 1, 1);
    let elapsed = receipts
        .last_receipt
        .map_or(Duration::ZERO, |last| last - ingest.started);
    HealthyFigures {
        expected: ingest.accepted,
        delivered: receipts.delivered,
        deliveries_per_second: per_second(receipts.delivered, elapsed),
        requests: stats.total,
        verification_failures: stats.failed_verification,
        duplicates: stats.duplicates,
        unmatched: receipts.unmatched,
        latency: LatencySummary::from_samples(receipts.latencies(&ingest.sent)),
        connection_use: ConnectionUse::of(&records),
    }
}

/// Sums the figures that the hanging applications' receivers recorded in
/// this phase.
fn hanging_figures(endpoints: &Endpoints) -> HangingFigures {
    let mut figures = HangingFigures {
        applications: endpoints.hanging.len() as u32,
        ..HangingFigures::default()
    };
    for (application, receiver) in endpoints.hanging_applications() {
        let records = receiver.all();
        let stats = receiver.stats();
        let name = endpoint_name(application);
        let own_records = || records.iter().filter(|record| record.endpoint == name);
        let webhooks: HashSet<&str> = own_records()
            .map(|record| record.webhook_id.as_str())
            .collect();
        let max_attempts = own_records().map(|record| record.attempt_index).max();

        figures.requests += stats.total;
        figures.webhooks_attempted += webhooks.len() as u64;
        figures.max_attempts_per_webhook = figures
            .max_attempts_per_webhook
            .max(max_attempts.unwrap_or(0));
        figures.delivered += stats.succeeded - stats.duplicates;
        figures.duplicates += stats.duplicates;
        figures.verification_failures += stats.failed_verification;
        figures.connections += ConnectionUse::of(&records).connections;
    }
    figures
}

/// Stops the processes and returns the number of lines they logged.
async fn stop(deployment: Deployment, copy_log_to: Option<&Path>) -> Result<usize> {
    let logs: Vec<_> = deployment
        .processes()
        .map(HooklineServer::log_file)
        .collect();
    for command in deployment.stop().await? {
        tracing::warn!(
            command,
            "a hookline process did not exit cleanly after SIGTERM"
        );
    }
    server::inspect_logs(&logs, copy_log_to)
}

/// Returns the number of events in one phase, `rate` times `duration`
/// rounded up, and fails unless that number is 1 to 1e9.
pub(crate) fn events_per_phase(rate: f64, duration: Duration) -> Result<u64> {
    let events = (rate * duration.as_secs_f64()).ceil();
    if !(1.0..=1e9).contains(&events) {
        bail!(
            "invalid --rate {rate} with --duration {}: a phase sends rate x duration events, which must be 1 to 1e9. Change --rate or --duration",
            humantime::format_duration(duration)
        );
    }
    Ok(events as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_per_phase_rounds_up() {
        let events = events_per_phase(500.0, Duration::from_secs(20)).unwrap();
        assert_eq!(events, 10_000);
        let events = events_per_phase(3.0, Duration::from_millis(500)).unwrap();
        assert_eq!(events, 2);
    }

    #[test]
    fn events_per_phase_rejects_empty_phase() {
        let error = events_per_phase(10.0, Duration::ZERO).unwrap_err();
        assert!(error.to_string().contains("must be 1 to 1e9"), "{error}");
    }
}
