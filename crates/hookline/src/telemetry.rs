//! Logging and trace export: text or JSON lines through `tracing`, and,
//! when an OTLP endpoint is configured, the spans of
//! [`hookline_core::trace::TARGET`] exported over OTLP/HTTP.
//!
//! Without an endpoint no exporter, span processor or OpenTelemetry layer
//! is built, and the trace spans are disabled at their call sites.

use crate::config::{LogConfig, LogFormat, TelemetryConfig};
use hookline_core::trace;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod http_client;

/// Deadline of one export request to the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variables that the OpenTelemetry specification defines for
/// the trace endpoint. Setting either one turns export on even without
/// `telemetry.otlp_endpoint`.
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Failure to set up trace export.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("failed to build the OTLP trace exporter for {endpoint}: {source}. Check telemetry.otlp_endpoint or the OTEL_EXPORTER_OTLP_* variables")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("failed to build the HTTP client of the OTLP exporter: {0}")]
    Client(#[source] reqwest::Error),
}

/// Handle to trace export. [`Telemetry::shutdown`] flushes the spans that
/// are still queued.
#[must_use = "call shutdown() before exiting, or queued spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Reports whether spans are exported.
    pub fn exports(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the queued spans and stops the exporter. It blocks, so call
    /// it outside async code while the Tokio runtime is still running.
    pub fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        if let Err(error) = provider.shutdown() {
            tracing::warn!(%error, "Failed to shut down the OTLP exporter, so queued spans may be lost");
        }
    }
}

/// Installs the global `tracing` subscriber, which writes logs to stderr and,
/// when an endpoint is configured, exports spans over OTLP. A valid
/// `RUST_LOG` takes precedence over `log.level`. `role` names the process,
/// as in `hookline-<role>`. Call it within a Tokio runtime, because the
/// runtime's workers run the batch span processor.
///
/// Panics if a global subscriber is already installed.
pub fn init(
    log: &LogConfig,
    telemetry: &TelemetryConfig,
    role: &str,
) -> Result<Telemetry, TelemetryError> {
    let provider = build_provider(telemetry, role)?;
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("hookline"))
            .with_threads(false)
            .with_location(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            .with_filter(Targets::new().with_target(trace::TARGET, Level::INFO))
    });
    tracing_subscriber::registry()
        .with(log_layer(log))
        .with(otel_layer)
        .init();
    trace::set_export_enabled(provider.is_some());
    if provider.is_some() {
        tracing::info!(role, "Exporting traces over OTLP/HTTP");
    }
    Ok(Telemetry { provider })
}

/// Builds the stderr log layer, in text or JSON lines. It filters out the
/// spans of [`trace::TARGET`], so log lines look the same with export on or off.
fn log_layer<S>(config: &LogConfig) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = filter.add_directive(
        format!("{}=off", trace::TARGET)
            .parse()
            .expect("a target with a level is a valid directive"),
    );
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match config.format {
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
        LogFormat::Text => layer.with_filter(filter).boxed(),
    }
}

/// Builds the tracer provider, or returns `None` when neither
/// `telemetry.otlp_endpoint` nor an endpoint variable is set.
fn build_provider(
    config: &TelemetryConfig,
    role: &str,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let traces_url = config.traces_url();
    if traces_url.is_none() && !endpoint_in_environment() {
        return Ok(None);
    }
    let client =
        http_client::OtlpHttpClient::new(EXPORT_TIMEOUT).map_err(TelemetryError::Client)?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(url) = &traces_url {
        builder = builder.with_endpoint(url.clone());
    }
    let exporter = builder.build().map_err(|source| TelemetryError::Exporter {
        endpoint: traces_url.unwrap_or_else(|| "the OTEL_EXPORTER_OTLP_* endpoint".to_owned()),
        source,
    })?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource(config, role))
        .build();
    Ok(Some(provider))
}

/// Builds the resource with `service.name`, `service.version` and
/// `hookline.role`. The default resource detectors also read
/// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(config: &TelemetryConfig, role: &str) -> Resource {
    let mut builder = Resource::builder().with_attributes([
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("hookline.role", role.to_owned()),
    ]);
    let configured = config
        .service_name
        .as_deref()
        .filter(|name| !name.trim().is_empty());
    if let Some(name) = configured {
        builder = builder.with_service_name(name.to_owned());
    } else if !variable_set("OTEL_SERVICE_NAME") {
        builder = builder.with_service_name(format!("hookline-{role}"));
    }
    builder.build()
}

fn endpoint_in_environment() -> bool {
    ENDPOINT_VARIABLES.iter().any(|name| variable_set(name))
}

fn variable_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| !value.trim().is_empty())
}
