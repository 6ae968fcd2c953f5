//! The figures of a run: the JSON document, the printed summary table and
//! the warnings about results that should not happen.

use crate::deployment::Topology;
use crate::latency::LatencySummary;
use crate::raw::RawFigures;
use crate::receipts::ConnectionUse;
use crate::usage::CpuFigures;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// The entry through which a `load` run puts its events into Hookline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Source {
    /// One `POST` to the ingest API per event, over keep-alive connections.
    Http,
    /// Records on the product's Kafka topic, on a mock broker in the bench process.
    Kafka,
}

/// Settings of a `load` run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) topology: Topology,
    pub(crate) source: Source,
    pub(crate) events: u64,
    /// Products that the events take turns among.
    pub(crate) products: u32,
    /// Applications subscribed to each product.
    pub(crate) applications: u32,
    pub(crate) payload_bytes: usize,
    pub(crate) concurrency: usize,
    /// Fixed ingest rate in events per second, or `None` for as fast as possible.
    pub(crate) rate_per_second: Option<f64>,
    pub(crate) fail_ratio: Option<f64>,
    pub(crate) timeout_seconds: f64,
    /// Extra Hookline settings as (variable, value).
    pub(crate) hookline_env: Vec<(String, String)>,
}

/// The ingest phase, from the first request to the last response.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IngestFigures {
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) seconds: f64,
    pub(crate) accepted_per_second: f64,
    /// `accepted_per_second` times the applications: the deliveries the
    /// fan-out created per second.
    pub(crate) fanned_out_per_second: f64,
}

/// Deliveries, from the first ingest request to the last first receipt.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeliveryFigures {
    /// Accepted events times applications.
    pub(crate) expected: u64,
    /// Pairs of event and application with a successful receipt.
    pub(crate) delivered: u64,
    pub(crate) seconds: f64,
    pub(crate) deliveries_per_second: f64,
    /// Every request the receiver recorded, including failed attempts.
    pub(crate) receiver_requests: u64,
    /// `receiver_requests / expected`.
    pub(crate) attempts_per_delivery: f64,
    pub(crate) verification_failures: u64,
    /// 2xx responses to a webhook that already had one.
    pub(crate) duplicates: u64,
    /// Successful requests for an endpoint or key this run did not make.
    pub(crate) unmatched: u64,
    pub(crate) connection_use: ConnectionUse,
}

/// Resource use of one Hookline process over its whole life.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProcessFigures {
    /// `serve`, `api` or `dispatcher`.
    pub(crate) command: String,
    /// CPU time since the process started, including setup.
    pub(crate) cpu_seconds_total: f64,
    /// `VmHWM`, the peak resident set size, in MiB.
    pub(crate) peak_rss_mib: f64,
}

/// All figures of a `load` run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadReport {
    pub(crate) settings: Settings,
    pub(crate) ingest: IngestFigures,
    pub(crate) delivery: DeliveryFigures,
    pub(crate) latency: LatencySummary,
    pub(crate) hookline_processes: Vec<ProcessFigures>,
    /// CPU time from just before the first ingest request until the wait
    /// for deliveries ended.
    pub(crate) cpu: CpuFigures,
    /// Lines in the Hookline processes' logs, which run at the `warn` level.
    pub(crate) hookline_log_lines: usize,
    pub(crate) raw: Option<RawFigures>,
    /// Hookline's deliveries per second divided by the raw requests per second.
    pub(crate) fraction_of_raw: Option<f64>,
    pub(crate) warnings: Vec<String>,
}

/// Returns a message for each figure that shows a fault rather than a speed.
pub(crate) fn warnings(report: &LoadReport) -> Vec<String> {
    let mut warnings = delivery_warnings(&report.delivery);

    if report.ingest.rejected > 0 {
        let rejected = report.ingest.rejected;
        let by = match report.settings.source {
            Source::Http => "the ingest API",
            Source::Kafka => "the Kafka broker",
        };
        warnings.push(format!("{rejected} events were not accepted by {by}"));
    }
    if report.settings.source == Source::Kafka && report.settings.rate_per_second.is_some() {
        warnings.push(
            "latencies through the mock Kafka broker include its fetch wait: it holds an empty fetch answer for up to 500 ms even when records arrive meanwhile, so measure latency with --source http".to_owned(),
        );
    }
    if report.hookline_log_lines > 0 {
        let lines = report.hookline_log_lines;
        warnings.push(format!("hookline logged {lines} warning or error lines"));
    }

    // NOTE: 10 % of one core is a judgment call for "busy enough to skew
    // the figures", not a measured threshold.
    let cpu = &report.cpu;
    if cpu.other_seconds > 0.1 * cpu.wall_seconds {
        warnings.push(format!(
            "other processes used {:.1} CPU s during the {:.1} s Hookline phase, so the figures understate this machine",
            cpu.other_seconds, cpu.wall_seconds
        ));
    }

    if let Some(warning) = report.raw.as_ref().and_then(raw_warning) {
        warnings.push(format!("raw phase: {warning}"));
    }
    warnings
}

fn delivery_warnings(delivery: &DeliveryFigures) -> Vec<String> {
    let mut warnings = Vec::new();
    if delivery.delivered < delivery.expected {
        let missing = delivery.expected - delivery.delivered;
        let expected = delivery.expected;
        warnings.push(format!(
            "{missing} of {expected} deliveries did not arrive before the timeout"
        ));
    }
    if delivery.verification_failures > 0 {
        let failures = delivery.verification_failures;
        warnings.push(format!("{failures} requests failed signature verification"));
    }
    if delivery.duplicates > 0 {
        let duplicates = delivery.duplicates;
        warnings.push(format!(
            "{duplicates} deliveries arrived successfully more than once"
        ));
    }
    if delivery.unmatched > 0 {
        let unmatched = delivery.unmatched;
        warnings.push(format!(
            "{unmatched} successful requests matched no event of this run"
        ));
    }
    warnings
}

/// Returns a warning when some raw requests failed or did not verify.
fn raw_warning(raw: &RawFigures) -> Option<String> {
    if raw.verification_failures == 0 && raw.succeeded == raw.requests {
        return None;
    }
    Some(format!(
        "{} of {} requests succeeded, {} failed verification",
        raw.succeeded, raw.requests, raw.verification_failures
    ))
}

/// Writes `value` as pretty-printed JSON to `path`.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("failed to write {}", path.display()))
}

/// Prints the summary table of a `load` run to standard output.
pub(crate) fn print_load(report: &LoadReport) {
    let settings = &report.settings;
    let products = match settings.products {
        1 => String::new(),
        products => format!(" in turn among {products} products,"),
    };
    println!(
        "\nhookline-bench load: {} events{products} x {} applications, {} B payloads, concurrency {}",
        settings.events, settings.applications, settings.payload_bytes, settings.concurrency
    );
    println!("  {}", settings.topology.describe());
    print_optional_settings(settings);

    let delivery = &report.delivery;
    let latency = &report.latency;
    let cpu = &report.cpu;
    let ingest_label = match settings.source {
        Source::Http => "events accepted/s (ingest)",
        Source::Kafka => "events produced/s (Kafka)",
    };
    let mut rows = vec![
        (
            ingest_label,
            format!("{:.0}", report.ingest.accepted_per_second),
        ),
        (
            "fanned out/s (x applications)",
            format!("{:.0}", report.ingest.fanned_out_per_second),
        ),
        (
            "deliveries/s",
            format!("{:.0}", delivery.deliveries_per_second),
        ),
        (
            "delivered / expected",
            format!("{} / {}", delivery.delivered, delivery.expected),
        ),
        ("latency p50 ms", millis(latency.p50_ms)),
        ("latency p90 ms", millis(latency.p90_ms)),
        ("latency p99 ms", millis(latency.p99_ms)),
        ("latency p99.9 ms", millis(latency.p99_9_ms)),
        ("latency max ms", millis(latency.max_ms)),
        (
            "attempts per delivery",
            format!("{:.3}", delivery.attempts_per_delivery),
        ),
        (
            "verification failures",
            delivery.verification_failures.to_string(),
        ),
        ("duplicates", delivery.duplicates.to_string()),
        (
            "hookline CPU s (cores)",
            format!("{:.1} ({:.2})", cpu.hookline_seconds, cpu.hookline_cores),
        ),
        (
            "hookline peak RSS MiB",
            peak_rss_text(&report.hookline_processes),
        ),
        ("bench process CPU s", format!("{:.1}", cpu.bench_seconds)),
        (
            "backend servers CPU s",
            format!("{:.1}", cpu.backend_seconds),
        ),
        ("other processes CPU s", format!("{:.1}", cpu.other_seconds)),
        (
            "receiver connections",
            connection_text(&delivery.connection_use),
        ),
    ];
    if let Some(raw) = &report.raw {
        rows.extend(raw_rows(raw));
    }
    if let Some(fraction) = report.fraction_of_raw {
        rows.push(("hookline / raw", format!("{:.1} %", fraction * 100.0)));
    }
    print_rows(&rows);
    print_warnings(&report.warnings);
}

/// Prints the summary of a `raw` run to standard output.
pub(crate) fn print_raw(raw: &RawFigures) {
    println!("\nhookline-bench raw: {} requests", raw.requests);
    print_rows(&raw_rows(raw));
    if let Some(warning) = raw_warning(raw) {
        print_warnings(&[warning]);
    }
}

fn print_optional_settings(settings: &Settings) {
    if settings.source == Source::Kafka {
        println!("  events in through Kafka (librdkafka's mock broker in the bench process)");
    }
    if let Some(rate) = settings.rate_per_second {
        println!("  fixed ingest rate: {rate} events/s");
    }
    if let Some(ratio) = settings.fail_ratio {
        println!("  receiver fails {ratio} of attempts with HTTP 500");
    }
    for (key, value) in &settings.hookline_env {
        println!("  hookline setting: {key}={value}");
    }
}

/// Peak RSS of each process, such as `61.2` or `api 48.0, dispatcher 40.1`.
pub(crate) fn peak_rss_text(processes: &[ProcessFigures]) -> String {
    if let [only] = processes {
        return format!("{:.1}", only.peak_rss_mib);
    }
    processes
        .iter()
        .map(|process| format!("{} {:.1}", process.command, process.peak_rss_mib))
        .collect::<Vec<_>>()
        .join(", ")
}

fn raw_rows(raw: &RawFigures) -> Vec<(&'static str, String)> {
    vec![
        ("raw requests/s", format!("{:.0}", raw.requests_per_second)),
        ("raw connections", connection_text(&raw.connection_use)),
    ]
}

fn print_rows(rows: &[(&str, String)]) {
    for (name, value) in rows {
        println!("  {name:<28} {value:>14}");
    }
}

fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        println!("WARNING: {warning}");
    }
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
}

fn connection_text(usage: &ConnectionUse) -> String {
    format!("{} {}", usage.connections, usage.http_versions.join("+"))
}
