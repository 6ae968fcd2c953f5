//! Runs the smallest benchmark scenarios for a few seconds so that the
//! harness keeps working. These tests check that each run completed and
//! that every delivery verified; they never check a speed.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// Returns the debug `hookline` binary, which `cargo test --workspace` builds for
/// the `hookline` package's own tests.
fn hookline_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_hookline-bench"));
    let binary = bench.with_file_name("hookline");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p hookline` first (cargo test --workspace builds it)",
        binary.display()
    );
    binary
}

fn run_bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("figures.json");
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-bench"))
        .args(args)
        .arg("--hookline")
        .arg(hookline_binary())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run hookline-bench");
    assert!(
        output.status.success(),
        "hookline-bench {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn assert_all_delivered_and_verified(figures: &Value, expected: u64) {
    let delivery = &figures["delivery"];
    assert_eq!(delivery["expected"], expected, "{figures:#}");
    assert_eq!(delivery["delivered"], expected, "{figures:#}");
    assert_eq!(delivery["verification_failures"], 0, "{figures:#}");
    assert_eq!(delivery["duplicates"], 0, "{figures:#}");
    assert_eq!(figures["ingest"]["rejected"], 0, "{figures:#}");
    let raw = &figures["raw"];
    assert_eq!(raw["requests"], raw["succeeded"], "{figures:#}");
    assert_eq!(raw["verification_failures"], 0, "{figures:#}");
}

/// Returns the subcommand of each Hookline process in the run's figures.
fn commands(figures: &Value) -> Vec<&str> {
    figures["hookline_processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|process| process["command"].as_str().unwrap())
        .collect()
}

#[test]
fn embedded_load_delivers_and_verifies_everything() {
    let figures = run_bench(&[
        "load",
        "--events",
        "100",
        "--applications",
        "3",
        "--concurrency",
        "8",
        "--timeout",
        "60s",
    ]);
    assert_all_delivered_and_verified(&figures, 300);
    assert_eq!(figures["settings"]["topology"]["mode"], "embedded");
}

/// Three products, each with its own topic and two applications: each
/// event reaches only its own product's two applications.
#[test]
fn embedded_kafka_load_delivers_and_verifies_everything() {
    let figures = run_bench(&[
        "load",
        "--source",
        "kafka",
        "--events",
        "99",
        "--products",
        "3",
        "--applications",
        "2",
        "--timeout",
        "60s",
    ]);
    assert_all_delivered_and_verified(&figures, 198);
    assert_eq!(figures["settings"]["source"], "kafka");
    assert_eq!(figures["settings"]["products"], 3);
    assert_eq!(figures["delivery"]["unmatched"], 0, "{figures:#}");
    assert_eq!(figures["delivery"]["receiver_requests"], 198, "{figures:#}");
}

/// Sends the events through two products' ingest URLs in turn.
#[test]
fn embedded_load_spreads_events_over_products() {
    let figures = run_bench(&[
        "load",
        "--events",
        "40",
        "--products",
        "2",
        "--applications",
        "2",
        "--concurrency",
        "4",
        "--timeout",
        "60s",
    ]);
    assert_all_delivered_and_verified(&figures, 80);
    assert_eq!(figures["settings"]["products"], 2);
    assert_eq!(figures["delivery"]["unmatched"], 0, "{figures:#}");
    assert_eq!(figures["delivery"]["receiver_requests"], 80, "{figures:#}");
}

#[test]
fn distributed_kafka_load_runs_a_creator() {
    let figures = run_bench(&[
        "load",
        "--source",
        "kafka",
        "--distributed",
        "--events",
        "100",
        "--applications",
        "2",
        "--timeout",
        "60s",
    ]);
    assert_all_delivered_and_verified(&figures, 200);
    assert_eq!(commands(&figures), ["api", "creator", "dispatcher"]);
}

#[test]
fn distributed_two_dispatchers_deliver_everything() {
    let figures = run_bench(&[
        "load",
        "--distributed",
        "--dispatchers",
        "2",
        "--events",
        "100",
        "--applications",
        "2",
        "--concurrency",
        "8",
        "--timeout",
        "60s",
    ]);
    assert_all_delivered_and_verified(&figures, 200);
    assert_eq!(commands(&figures), ["api", "dispatcher", "dispatcher"]);
}

#[test]
fn distributed_cold_start_delivers_the_waiting_events() {
    let figures = run_bench(&[
        "cold-start",
        "--distributed",
        "--events",
        "20",
        "--idle",
        "100ms",
    ]);
    assert_eq!(figures["delivered"], 20, "{figures:#}");
    assert_eq!(figures["measured_command"], "dispatcher");
    let ready = figures["start_to_ready_ms"].as_f64().unwrap();
    let first = figures["start_to_first_delivery_ms"].as_f64().unwrap();
    // The first delivery can come before the first /readyz response, so the
    // two are not ordered.
    assert!(ready > 0.0, "{figures:#}");
    assert!(first > 0.0, "{figures:#}");
}

#[test]
fn isolation_keeps_healthy_deliveries_whole() {
    let figures = run_bench(&[
        "isolation",
        "--rate",
        "50",
        "--duration",
        "2s",
        "--delivery-timeout",
        "500ms",
        "--concurrency",
        "8",
        "--timeout",
        "60s",
    ]);
    assert_eq!(figures["settings"]["events_per_phase"], 100, "{figures:#}");
    let healthy_receiver = figures["settings"]["healthy_receiver"].as_str().unwrap();
    let hanging_receiver = figures["settings"]["hanging_receivers"][0]
        .as_str()
        .unwrap();
    assert_ne!(healthy_receiver, hanging_receiver, "{figures:#}");

    for phase in ["baseline", "hanging"] {
        let figures = &figures[phase];
        assert_eq!(figures["ingest"]["accepted"], 100, "{phase}: {figures:#}");
        let healthy = &figures["healthy"];
        assert_eq!(healthy["expected"], 100, "{phase}: {figures:#}");
        assert_eq!(healthy["delivered"], 100, "{phase}: {figures:#}");
        assert_eq!(healthy["duplicates"], 0, "{phase}: {figures:#}");
        assert_eq!(healthy["verification_failures"], 0, "{phase}: {figures:#}");
        assert_eq!(healthy["unmatched"], 0, "{phase}: {figures:#}");
        assert_eq!(healthy["latency"]["samples"], 100, "{phase}: {figures:#}");
        assert_eq!(figures["hanging"]["verification_failures"], 0, "{phase}");
    }

    // In the baseline the endpoint that hangs later responds 204 to every delivery.
    let baseline = &figures["baseline"]["hanging"];
    assert_eq!(baseline["delivered"], 100, "{figures:#}");
    assert_eq!(baseline["duplicates"], 0, "{figures:#}");

    let hanging = &figures["hanging"]["hanging"];
    let requests = hanging["requests"].as_u64().unwrap();
    assert!(
        requests > 0,
        "the hanging endpoint saw no attempt: {figures:#}"
    );
    assert_eq!(hanging["delivered"], 0, "{figures:#}");
    assert!(figures["healthy_latency_delta"]["p50_ms"].is_number());
}
