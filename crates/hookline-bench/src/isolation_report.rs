//! Figures of an `isolation` run: the JSON document, the printed table of
//! both phases side by side, and the warnings about faults.

use crate::deployment::Topology;
use crate::latency::LatencySummary;
use crate::receipts::ConnectionUse;
use crate::report::{peak_rss_text, IngestFigures, ProcessFigures};
use crate::usage::CpuFigures;
use serde::{Serialize, Serializer};
use std::time::Duration;

/// Settings of an `isolation` run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IsolationSettings {
    pub(crate) topology: Topology,
    /// Applications whose endpoint hangs in the second phase. The run has
    /// one healthy application besides them.
    pub(crate) hanging_applications: u32,
    /// Events ingested in each phase.
    pub(crate) events_per_phase: u64,
    /// Fixed ingest rate of both phases.
    pub(crate) rate_per_second: f64,
    pub(crate) payload_bytes: usize,
    pub(crate) concurrency: usize,
    /// Hookline's `delivery.timeout`, which ends each hanging attempt.
    #[serde(rename = "delivery_timeout_ms", serialize_with = "as_millis")]
    pub(crate) delivery_timeout: Duration,
    /// Limit of each phase's wait for deliveries after its ingest.
    pub(crate) timeout_seconds: f64,
    /// Extra Hookline settings as (variable, value).
    pub(crate) hookline_env: Vec<(String, String)>,
    /// Address of the healthy application's receiver, filled in at start.
    pub(crate) healthy_receiver: String,
    /// Address of each hanging application's receiver, filled in at start.
    pub(crate) hanging_receivers: Vec<String>,
}

fn as_millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

/// Deliveries to the healthy application in one phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthyFigures {
    /// Events accepted in the phase, one delivery each.
    pub(crate) expected: u64,
    /// Events of the phase with a successful receipt.
    pub(crate) delivered: u64,
    /// `delivered` divided by the time from the first ingest request to the
    /// last first receipt.
    pub(crate) deliveries_per_second: f64,
    /// Every request the healthy receiver recorded.
    pub(crate) requests: u64,
    pub(crate) verification_failures: u64,
    /// 2xx responses to a webhook that already had one.
    pub(crate) duplicates: u64,
    /// Successful requests for an event outside this phase.
    pub(crate) unmatched: u64,
    /// From each event's ingest request to its first successful receipt.
    pub(crate) latency: LatencySummary,
    pub(crate) connection_use: ConnectionUse,
}

/// Counts of the requests that the hanging applications' receivers
/// recorded in one phase, summed over the receivers.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct HangingFigures {
    pub(crate) applications: u32,
    /// Requests recorded: every attempt that reached these endpoints.
    pub(crate) requests: u64,
    /// Distinct webhooks (events) among those requests.
    pub(crate) webhooks_attempted: u64,
    /// Maximum number of attempts that one webhook received.
    pub(crate) max_attempts_per_webhook: u32,
    /// Webhooks with a 2xx response, expected in the baseline only.
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) verification_failures: u64,
    /// TCP connections the requests arrived on.
    pub(crate) connections: usize,
}

/// Figures of one phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhaseFigures {
    /// Number of the phase's first event, so its Idempotency-Keys start at
    /// `event-{first_event}`.
    pub(crate) first_event: u64,
    pub(crate) ingest: IngestFigures,
    pub(crate) healthy: HealthyFigures,
    pub(crate) hanging: HangingFigures,
    /// From just before the first ingest request until the awaited
    /// deliveries arrived.
    pub(crate) cpu: CpuFigures,
}

/// The healthy application's latency with the hang minus without it, in
/// milliseconds. A figure is `None` when a phase has no sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LatencyDelta {
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p90_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) p99_9_ms: Option<f64>,
    pub(crate) max_ms: Option<f64>,
}

impl LatencyDelta {
    /// Subtracts each `baseline` figure from the `hanging` one.
    pub(crate) fn between(baseline: &LatencySummary, hanging: &LatencySummary) -> Self {
        let delta = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
        Self {
            p50_ms: delta(baseline.p50_ms, hanging.p50_ms),
            p90_ms: delta(baseline.p90_ms, hanging.p90_ms),
            p99_ms: delta(baseline.p99_ms, hanging.p99_ms),
            p99_9_ms: delta(baseline.p99_9_ms, hanging.p99_9_ms),
            max_ms: delta(baseline.max_ms, hanging.max_ms),
        }
    }
}

/// All figures of an `isolation` run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IsolationReport {
    pub(crate) settings: IsolationSettings,
    /// Every endpoint healthy.
    pub(crate) baseline: PhaseFigures,
    /// The hanging applications' endpoints never respond.
    pub(crate) hanging: PhaseFigures,
    pub(crate) healthy_latency_delta: LatencyDelta,
    /// Read at the end of the run.
    pub(crate) hookline_processes: Vec<ProcessFigures>,
    /// Lines in the Hookline processes' logs, which run at the `warn` level.
    pub(crate) hookline_log_lines: usize,
    pub(crate) warnings: Vec<String>,
}

/// Share of the requested rate below which the generator counts as having
/// fallen behind, so that the phases did not run at the same rate.
const RATE_SHORTFALL: f64 = 0.95;

impl IsolationReport {
    /// Returns a message for each figure that shows a fault rather than a speed.
    pub(crate) fn collect_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, phase) in [("baseline", &self.baseline), ("hanging", &self.hanging)] {
            let messages = self.phase_warnings(phase, name == "baseline");
            warnings.extend(messages.into_iter().map(|text| format!("{name}: {text}")));
        }
        if self.hookline_log_lines > 0 {
            let lines = self.hookline_log_lines;
            warnings.push(format!("hookline logged {lines} warning or error lines"));
        }
        warnings
    }

    fn phase_warnings(&self, phase: &PhaseFigures, baseline: bool) -> Vec<String> {
        let mut warnings = healthy_warnings(&phase.healthy);
        warnings.extend(self.ingest_warnings(&phase.ingest));
        warnings.extend(hanging_warnings(phase, baseline));
        warnings.extend(cpu_warning(&phase.cpu));
        warnings
    }

    fn ingest_warnings(&self, ingest: &IngestFigures) -> Vec<String> {
        let mut warnings = Vec::new();
        if ingest.rejected > 0 {
            let rejected = ingest.rejected;
            warnings.push(format!(
                "{rejected} events were not accepted by the ingest API"
            ));
        }

        let target = self.settings.rate_per_second;
        let reached = ingest.accepted_per_second;
        if reached < RATE_SHORTFALL * target {
            warnings.push(format!(
                "ingest reached {reached:.0} events/s, below the fixed rate of {target} events/s"
            ));
        }
        warnings
    }
}

fn hanging_warnings(phase: &PhaseFigures, baseline: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    let hanging = &phase.hanging;
    if hanging.verification_failures > 0 {
        let failures = hanging.verification_failures;
        warnings.push(format!(
            "{failures} requests to the hanging applications' endpoints failed signature verification"
        ));
    }

    let expected = phase.ingest.accepted * u64::from(hanging.applications);
    if baseline && hanging.delivered < expected {
        let delivered = hanging.delivered;
        warnings.push(format!(
            "{delivered} of {expected} deliveries to the endpoints that hang later arrived before the timeout"
        ));
    }
    if !baseline && hanging.requests == 0 {
        warnings.push("no attempt reached a hanging endpoint".to_owned());
    }
    if !baseline && hanging.delivered > 0 {
        let delivered = hanging.delivered;
        warnings.push(format!(
            "{delivered} webhooks succeeded on endpoints that should hang"
        ));
    }
    warnings
}

fn cpu_warning(cpu: &CpuFigures) -> Option<String> {
    // NOTE: 10 % of one core is the same judgment call as in `load`, not a
    // measured threshold.
    if cpu.other_seconds <= 0.1 * cpu.wall_seconds {
        return None;
    }
    Some(format!(
        "other processes used {:.1} CPU s during the {:.1} s phase, so its figures include their load",
        cpu.other_seconds, cpu.wall_seconds
    ))
}

fn healthy_warnings(healthy: &HealthyFigures) -> Vec<String> {
    let mut warnings = Vec::new();
    if healthy.delivered < healthy.expected {
        let missing = healthy.expected - healthy.delivered;
        let expected = healthy.expected;
        warnings.push(format!(
            "{missing} of {expected} healthy deliveries did not arrive before the timeout"
        ));
    }
    if healthy.duplicates > 0 {
        let duplicates = healthy.duplicates;
        warnings.push(format!(
            "{duplicates} healthy deliveries arrived successfully more than once"
        ));
    }
    if healthy.verification_failures > 0 {
        let failures = healthy.verification_failures;
        warnings.push(format!(
            "{failures} healthy requests failed signature verification"
        ));
    }
    if healthy.unmatched > 0 {
        let unmatched = healthy.unmatched;
        warnings.push(format!(
            "{unmatched} successful healthy requests matched no event of this phase"
        ));
    }
    warnings
}

/// Prints both phases side by side, with the latency delta, to standard output.
pub(crate) fn print(report: &IsolationReport) {
    let settings = &report.settings;
    println!(
        "\nhookline-bench isolation: 1 healthy and {} hanging application(s), {} events per phase at {} events/s, {} B payloads",
        settings.hanging_applications,
        settings.events_per_phase,
        settings.rate_per_second,
        settings.payload_bytes
    );
    println!("  {}", settings.topology.describe());
    println!(
        "  delivery timeout {}; healthy receiver {}, hanging receiver(s) {}",
        humantime::format_duration(settings.delivery_timeout),
        settings.healthy_receiver,
        settings.hanging_receivers.join(", ")
    );
    for (key, value) in &settings.hookline_env {
        println!("  hookline setting: {key}={value}");
    }

    println!(
        "  {:<34} {:>14} {:>14} {:>10}",
        "", "baseline", "hanging", "delta"
    );
    for row in rows(report) {
        println!(
            "  {:<34} {:>14} {:>14} {:>10}",
            row.name, row.baseline, row.hanging, row.delta
        );
    }
    println!(
        "  {:<34} {:>14}",
        "hookline peak RSS MiB",
        peak_rss_text(&report.hookline_processes)
    );
    for warning in &report.warnings {
        println!("WARNING: {warning}");
    }
}

/// One printed line: a figure in both phases and, for latency, the delta.
struct Row {
    name: &'static str,
    baseline: String,
    hanging: String,
    delta: String,
}

fn rows(report: &IsolationReport) -> Vec<Row> {
    let (before, after) = (&report.baseline, &report.hanging);
    let row = |name, figure: &dyn Fn(&PhaseFigures) -> String| Row {
        name,
        baseline: figure(before),
        hanging: figure(after),
        delta: String::new(),
    };
    let latency = |name, pick: fn(&LatencySummary) -> Option<f64>, delta: Option<f64>| Row {
        name,
        baseline: millis(pick(&before.healthy.latency)),
        hanging: millis(pick(&after.healthy.latency)),
        delta: delta.map_or_else(|| "-".to_owned(), |ms| format!("{ms:+.1}")),
    };
    let delta = &report.healthy_latency_delta;
    vec![
        row("events accepted/s", &|phase| {
            format!("{:.0}", phase.ingest.accepted_per_second)
        }),
        row("healthy delivered / expected", &|phase| {
            format!("{} / {}", phase.healthy.delivered, phase.healthy.expected)
        }),
        latency("healthy latency p50 ms", |l| l.p50_ms, delta.p50_ms),
        latency("healthy latency p90 ms", |l| l.p90_ms, delta.p90_ms),
        latency("healthy latency p99 ms", |l| l.p99_ms, delta.p99_ms),
        latency("healthy latency p99.9 ms", |l| l.p99_9_ms, delta.p99_9_ms),
        latency("healthy latency max ms", |l| l.max_ms, delta.max_ms),
        row("healthy duplicates", &|phase| {
            phase.healthy.duplicates.to_string()
        }),
        row("healthy verification failures", &|phase| {
            phase.healthy.verification_failures.to_string()
        }),
        row("hanging endpoint requests", &|phase| {
            phase.hanging.requests.to_string()
        }),
        row("hanging webhooks attempted", &|phase| {
            phase.hanging.webhooks_attempted.to_string()
        }),
        row("hanging endpoint 2xx webhooks", &|phase| {
            phase.hanging.delivered.to_string()
        }),
        row("hookline CPU s (cores)", &|phase| {
            format!(
                "{:.1} ({:.2})",
                phase.cpu.hookline_seconds, phase.cpu.hookline_cores
            )
        }),
        row("bench process CPU s", &|phase| {
            format!("{:.1}", phase.cpu.bench_seconds)
        }),
        row("backend servers CPU s", &|phase| {
            format!("{:.1}", phase.cpu.backend_seconds)
        }),
        row("other processes CPU s", &|phase| {
            format!("{:.1}", phase.cpu.other_seconds)
        }),
    ]
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p50: f64, max: f64) -> LatencySummary {
        LatencySummary {
            samples: 10,
            p50_ms: Some(p50),
            p90_ms: Some(p50),
            p99_ms: Some(max),
            p99_9_ms: Some(max),
            max_ms: Some(max),
        }
    }

    #[test]
    fn delta_subtracts_baseline() {
        let delta = LatencyDelta::between(&summary(10.0, 20.0), &summary(12.5, 19.0));
        assert_eq!(delta.p50_ms, Some(2.5));
        assert_eq!(delta.max_ms, Some(-1.0));
    }

    #[test]
    fn delta_without_samples_is_none() {
        let empty = LatencySummary::from_samples(Vec::new());
        let delta = LatencyDelta::between(&summary(10.0, 20.0), &empty);
        assert_eq!(delta.p50_ms, None);
        assert_eq!(delta.p99_9_ms, None);
    }
}
