//! The `load` command: a Hookline phase that ingests events and waits for
//! their deliveries, then a raw phase against the same receiver.

use crate::deployment::Deployment;
use crate::generator::{self, ingest_url, per_second, GeneratorConfig, IngestOutcome};
use crate::kafka::{self, EventProducer, KafkaBroker, ProduceConfig};
use crate::latency::LatencySummary;
use crate::procfs;
use crate::raw::{self, RawConfig, RawFigures};
use crate::receipts::{ConnectionUse, Receipts};
use crate::report::{
    self, DeliveryFigures, IngestFigures, LoadReport, ProcessFigures, Settings, Source,
};
use crate::server::{self, HooklineServer};
use crate::usage::{CpuFigures, CpuSample};
use crate::workload::{endpoint_name, product_name};
use anyhow::{bail, Result};
use hookline_receiver::{Behaviour, Receiver, TestPki};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The first product, the only one unless `--products` is more than 1.
pub(crate) use crate::workload::PRODUCT;
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Time without a new delivery after which a stall is logged.
const STALL_AFTER: Duration = Duration::from_secs(15);
/// Limit for the warm-up event of a Kafka run. The source subscribes to a
/// new product's topic within 5 s and the mock broker's group join takes
/// about 3 s more.
const WARM_UP_LIMIT: Duration = Duration::from_secs(60);

/// A Kafka run's broker and producer, alive for the whole run. The
/// producer comes first so that it is dropped before the broker.
struct KafkaIn {
    producer: EventProducer,
    broker: KafkaBroker,
    /// The products' topics, in product order.
    topics: Vec<String>,
}

impl KafkaIn {
    /// Settings to produce events `first_event..first_event + events` to
    /// the products' topics on this run's broker.
    fn produce_config(
        &self,
        first_event: u64,
        events: u64,
        payload_bytes: usize,
        rate: Option<f64>,
    ) -> ProduceConfig {
        ProduceConfig {
            topics: self.topics.clone(),
            partitions: self.broker.partitions(),
            first_event,
            events,
            payload_bytes,
            rate,
        }
    }
}

/// Options of the `load` command.
#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    pub(crate) hookline: PathBuf,
    pub(crate) settings: Settings,
    /// Limit of the Hookline phase, counted from the first ingest request.
    pub(crate) timeout: Duration,
    /// Destination of a copy of the Hookline processes' logs.
    pub(crate) hookline_log: Option<PathBuf>,
    pub(crate) raw: bool,
}

/// Figures of the Hookline phase.
struct HooklinePhase {
    ingest: IngestOutcome,
    delivery: DeliveryFigures,
    latency: LatencySummary,
    processes: Vec<ProcessFigures>,
    cpu: CpuFigures,
}

/// Runs both phases and returns the report.
pub(crate) async fn run(options: LoadOptions) -> Result<LoadReport> {
    let dir = tempfile::Builder::new()
        .prefix("hookline-bench-")
        .tempdir()?;
    let pki = TestPki::generate()?;
    let ca_file = dir.path().join("ca.pem");
    pki.write_ca(&ca_file)?;
    let receiver = Receiver::start(&pki, "127.0.0.1:0".parse()?).await?;
    let kafka = match options.settings.source {
        Source::Http => None,
        Source::Kafka => {
            let settings = &options.settings;
            let records = settings.events + u64::from(settings.products);
            let partitions = kafka::partitions_for(records, settings.payload_bytes)?;
            let topics: Vec<String> = (0..settings.products).map(product_name).collect();
            let broker = KafkaBroker::start(&topics, partitions)?;
            let producer = EventProducer::connect(&broker)?;
            Some(KafkaIn {
                producer,
                broker,
                topics,
            })
        }
    };

    let mut deployment = Deployment::start(
        &options.hookline,
        &options.settings.topology,
        dir.path(),
        &ca_file,
        hookline_env(&options.settings, kafka.as_ref()),
        None,
    )
    .await?;
    if kafka.is_some() && deployment.is_distributed() {
        deployment.start_creator().await?;
    }
    subscribe(deployment.front(), &receiver, &options.settings).await?;
    if let Some(kafka) = &kafka {
        warm_up(kafka, &receiver, &options.settings).await?;
    }

    let phase = hookline_phase(&mut deployment, &receiver, &options, kafka.as_ref()).await?;
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
    let log_lines = server::inspect_logs(&logs, options.hookline_log.as_deref())?;
    receiver.clear();

    let raw = if options.raw {
        let requests = phase.delivery.expected.max(1);
        Some(raw_phase(&receiver, &pki, &options.settings, requests).await?)
    } else {
        None
    };
    receiver.shutdown().await;

    let fraction_of_raw = raw
        .as_ref()
        .filter(|raw| raw.requests_per_second > 0.0)
        .map(|raw| phase.delivery.deliveries_per_second / raw.requests_per_second);
    let mut report = LoadReport {
        ingest: ingest_figures(&phase.ingest, options.settings.applications),
        settings: options.settings,
        delivery: phase.delivery,
        latency: phase.latency,
        hookline_processes: phase.processes,
        cpu: phase.cpu,
        hookline_log_lines: log_lines,
        raw,
        fraction_of_raw,
        warnings: Vec::new(),
    };
    report.warnings = report::warnings(&report);
    Ok(report)
}

/// Returns the variables added to the Hookline processes' environment.
fn hookline_env(settings: &Settings, kafka: Option<&KafkaIn>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(kafka) = kafka {
        env.push((
            "HOOKLINE_KAFKA__BROKERS".to_owned(),
            kafka.broker.bootstrap_servers().to_owned(),
        ));
    }
    if settings.fail_ratio.is_some() {
        // Retry n waits 10 ms + n^4 ms, so retries finish within seconds.
        env.push(("HOOKLINE_RETRY__INTERVAL".to_owned(), "10ms".to_owned()));
        env.push(("HOOKLINE_RETRY__BACKOFF_UNIT".to_owned(), "1ms".to_owned()));
    }
    // Settings from the command line come last, so they win.
    env.extend(settings.hookline_env.iter().cloned());
    env
}

async fn raw_phase(
    receiver: &Receiver,
    pki: &TestPki,
    settings: &Settings,
    requests: u64,
) -> Result<RawFigures> {
    let config = RawConfig {
        requests,
        payload_bytes: settings.payload_bytes,
        concurrency: settings.concurrency,
    };
    tracing::info!(
        requests,
        "raw phase: sending signed requests straight to the receiver"
    );
    raw::run(receiver, &pki.ca_pem, config).await
}

/// Creates the products and their applications, each application on its
/// own receiver endpoint with its secret registered there. Product `p` has
/// the endpoints `app-{p * applications}` onwards.
pub(crate) async fn subscribe(
    server: &HooklineServer,
    receiver: &Receiver,
    settings: &Settings,
) -> Result<()> {
    for product in 0..settings.products {
        let name = product_name(product);
        server.create_product(&name).await?;
        for position in 0..settings.applications {
            let endpoint = endpoint_name(product * settings.applications + position);
            let url = receiver.endpoint_url(&endpoint);
            let secret = server.create_application(&name, &endpoint, &url).await?;
            receiver.set_secret(&endpoint, secret);
            if let Some(ratio) = settings.fail_ratio {
                receiver.script(&endpoint, Behaviour::FailRatio { ratio, status: 500 });
            }
        }
    }
    tracing::info!(
        products = settings.products,
        applications = settings.applications,
        "subscribed applications"
    );
    Ok(())
}

/// Sends one event per product outside the measured range through Kafka
/// and waits until every application received its product's, then clears
/// the receiver. The measured phase so starts with the topics subscribed
/// and the consumer group joined, as in a deployment that has been running.
async fn warm_up(kafka: &KafkaIn, receiver: &Receiver, settings: &Settings) -> Result<()> {
    let started = Instant::now();
    let products = u64::from(settings.products);
    let config = kafka.produce_config(settings.events, products, settings.payload_bytes, None);
    let outcome = kafka.producer.produce(&config).await?;
    if outcome.accepted != products {
        bail!("the mock Kafka broker did not acknowledge every warm-up event");
    }
    let deliveries = products * u64::from(settings.applications);
    let arrived = receiver
        .wait_for(|stats| stats.succeeded >= deliveries, WARM_UP_LIMIT)
        .await;
    if !arrived {
        bail!(
            "the warm-up event produced to Kafka did not reach every application within {WARM_UP_LIMIT:?}: is the Kafka source running?"
        );
    }
    tracing::info!(elapsed = ?started.elapsed(), "warm-up event delivered through Kafka");
    receiver.clear();
    Ok(())
}

/// Sends the run's events to Hookline through Kafka or the HTTP ingest API.
async fn ingest(
    deployment: &Deployment,
    settings: &Settings,
    kafka: Option<&KafkaIn>,
) -> Result<IngestOutcome> {
    if let Some(kafka) = kafka {
        let config = kafka.produce_config(
            0,
            settings.events,
            settings.payload_bytes,
            settings.rate_per_second,
        );
        return kafka.producer.produce(&config).await;
    }
    let api_url = deployment.front().api_url();
    let config = GeneratorConfig {
        ingest_urls: (0..settings.products)
            .map(|product| ingest_url(api_url, &product_name(product)))
            .collect(),
        first_event: 0,
        events: settings.events,
        payload_bytes: settings.payload_bytes,
        concurrency: settings.concurrency,
        rate: settings.rate_per_second,
    };
    generator::run(config).await
}

async fn hookline_phase(
    deployment: &mut Deployment,
    receiver: &Receiver,
    options: &LoadOptions,
    kafka: Option<&KafkaIn>,
) -> Result<HooklinePhase> {
    let settings = &options.settings;
    let clock_ticks = procfs::clock_ticks_per_second();
    let pids: Vec<u32> = deployment.processes().map(HooklineServer::pid).collect();
    let before = CpuSample::take(&pids, clock_ticks)?;

    let ingest = ingest(deployment, settings, kafka).await?;
    tracing::info!(
        accepted = ingest.accepted,
        rejected = ingest.rejected,
        "ingest finished"
    );
    let expected = ingest.accepted * u64::from(settings.applications);
    let deadline = ingest.started + options.timeout;
    wait_for_deliveries(deployment, &[receiver], expected, deadline).await?;

    // Read before stopping the processes, because an exited process has no VmHWM.
    let after = CpuSample::take(&pids, clock_ticks)?;
    let processes = process_figures(deployment, clock_ticks)?;
    let (delivery, latency) = delivery_figures(receiver, &ingest, settings, expected);
    Ok(HooklinePhase {
        ingest,
        delivery,
        latency,
        processes,
        cpu: CpuFigures::between(&before, &after),
    })
}

/// Reads the CPU time and peak RSS of each running Hookline process.
pub(crate) fn process_figures(
    deployment: &Deployment,
    clock_ticks: u64,
) -> Result<Vec<ProcessFigures>> {
    deployment
        .processes()
        .map(|process| {
            Ok(ProcessFigures {
                command: process.command().to_owned(),
                cpu_seconds_total: procfs::cpu_seconds(process.pid(), clock_ticks)?,
                peak_rss_mib: procfs::peak_rss_kib(process.pid())? as f64 / 1024.0,
            })
        })
        .collect()
}

/// Computes delivery figures and latencies from the receiver's log.
fn delivery_figures(
    receiver: &Receiver,
    ingest: &IngestOutcome,
    settings: &Settings,
    expected: u64,
) -> (DeliveryFigures, LatencySummary) {
    let records = receiver.all();
    let stats = receiver.stats();
    let receipts = Receipts::collect(
        &records,
        settings.events,
        settings.products,
        settings.applications,
    );
    let latency = LatencySummary::from_samples(receipts.latencies(&ingest.sent));
    let elapsed = receipts
        .last_receipt
        .map_or(Duration::ZERO, |last| last - ingest.started);
    let delivery = DeliveryFigures {
        expected,
        delivered: receipts.delivered,
        seconds: elapsed.as_secs_f64(),
        deliveries_per_second: per_second(receipts.delivered, elapsed),
        receiver_requests: stats.total,
        attempts_per_delivery: stats.total as f64 / expected.max(1) as f64,
        verification_failures: stats.failed_verification,
        duplicates: stats.duplicates,
        unmatched: receipts.unmatched,
        connection_use: ConnectionUse::of(&records),
    };
    (delivery, latency)
}

/// Polls the receivers until `expected` distinct webhooks succeeded on
/// them together or `deadline` passed, logging progress and stalls. Fails
/// if a Hookline process exits meanwhile.
pub(crate) async fn wait_for_deliveries(
    deployment: &mut Deployment,
    receivers: &[&Receiver],
    expected: u64,
    deadline: Instant,
) -> Result<()> {
    let mut last_progress_log = Instant::now();
    let mut last_change = Instant::now();
    let mut last_delivered = 0;
    let mut stall_logged = false;
    loop {
        let all_stats = receivers.iter().map(|receiver| receiver.stats());
        let (delivered, requests) = all_stats.fold((0, 0), |(delivered, requests), stats| {
            (
                delivered + stats.succeeded - stats.duplicates,
                requests + stats.total,
            )
        });
        if delivered >= expected {
            return Ok(());
        }
        deployment.check_running()?;
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(delivered, expected, "timed out waiting for deliveries");
            return Ok(());
        }
        if delivered != last_delivered {
            last_delivered = delivered;
            last_change = now;
            stall_logged = false;
        } else if now - last_change >= STALL_AFTER && !stall_logged {
            tracing::warn!(delivered, expected, "no new delivery for {STALL_AFTER:?}");
            stall_logged = true;
        }
        if now - last_progress_log >= PROGRESS_INTERVAL {
            tracing::info!(delivered, expected, requests, "waiting for deliveries");
            last_progress_log = now;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

pub(crate) fn ingest_figures(ingest: &IngestOutcome, applications: u32) -> IngestFigures {
    IngestFigures {
        fanned_out_per_second: ingest.accepted_per_second() * f64::from(applications),
        accepted: ingest.accepted,
        rejected: ingest.rejected,
        seconds: (ingest.finished - ingest.started).as_secs_f64(),
        accepted_per_second: ingest.accepted_per_second(),
    }
}
