//! The process-wide Prometheus recorder and the gauges sampled from the queue.

use hookline_api::MetricsRenderer;
use hookline_core::queue::DeliveryQueue;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process and returns its renderer. A second
/// call (the demo, tests in one process) reuses the first recorder.
pub fn renderer() -> MetricsRenderer {
    let handle = HANDLE.get_or_init(|| {
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &buckets,
            )
            .expect("bucket list is not empty");
        match builder.install_recorder() {
            Ok(handle) => {
                describe();
                handle
            }
            Err(error) => {
                tracing::warn!(%error, "Metrics recorder not installed; /metrics stays empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    });
    let handle = handle.clone();
    Arc::new(move || handle.render())
}

/// Registers the HELP text of the metrics that dashboards and alerts use.
fn describe() {
    metrics::describe_counter!(
        "hookline_events_total",
        "Events offered to the creator, by outcome (created, duplicate, rejected)"
    );
    metrics::describe_counter!(
        "hookline_deliveries_total",
        "Finished delivery attempts, by outcome (delivered, retry, dead)"
    );
    metrics::describe_counter!(
        "hookline_directory_cache_total",
        "Application directory cache lookups, by result (hit, miss)"
    );
    metrics::describe_gauge!(
        "hookline_kafka_consumer_lag",
        "Records between the committed offset and the high watermark of each partition this process consumes"
    );
}

/// Samples queue depth and the age of the oldest ready task every few seconds.
pub async fn sample_queue(queue: Arc<dyn DeliveryQueue>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match queue.depth().await {
            Ok(depth) => {
                metrics::gauge!("hookline_queue_tasks", "state" => "ready").set(depth.ready as f64);
                metrics::gauge!("hookline_queue_tasks", "state" => "scheduled")
                    .set(depth.scheduled as f64);
                metrics::gauge!("hookline_queue_tasks", "state" => "leased")
                    .set(depth.leased as f64);
                metrics::gauge!("hookline_queue_tasks", "state" => "dead").set(depth.dead as f64);
                let age = depth.oldest_ready_age_secs.unwrap_or(0.0);
                metrics::gauge!("hookline_queue_oldest_ready_age_seconds").set(age);
            }
            Err(error) => tracing::warn!(%error, "Sampling the queue depth failed"),
        }
    }
}
