//! Configuration of trace export over OTLP (`telemetry.*`).

use super::ConfigError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver, such as `http://collector:4318`.
    /// Spans are posted to `<otlp_endpoint>/v1/traces` as protobuf. When it
    /// is unset or empty, the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// and `OTEL_EXPORTER_OTLP_ENDPOINT` variables set the endpoint, and
    /// without them no exporter is built.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. When it is unset or blank,
    /// `OTEL_SERVICE_NAME` applies, or else `hookline-<role>`, such as
    /// `hookline-dispatcher`.
    #[serde(default)]
    pub service_name: Option<String>,
}

impl TelemetryConfig {
    /// Returns the configured endpoint, treating an empty value as unset.
    pub fn endpoint(&self) -> Option<&str> {
        self.otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|endpoint| !endpoint.is_empty())
    }

    /// Returns the URL that spans are posted to, `<otlp_endpoint>/v1/traces`.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.endpoint()?;
        Some(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let Some(endpoint) = self.endpoint() else {
            return Ok(());
        };
        let invalid = |problem: String| ConfigError::Invalid {
            key: "telemetry.otlp_endpoint",
            problem,
        };
        let url = url::Url::parse(endpoint)
            .map_err(|error| invalid(format!(
                "{endpoint:?} is not a valid URL ({error}). Give a base URL such as \"http://127.0.0.1:4318\""
            )))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "{endpoint:?} must start with http:// or https://, such as \"http://127.0.0.1:4318\""
            )));
        }
        if url.query().is_some() {
            return Err(invalid(format!(
                "{endpoint:?} must not contain a query string. Give the base URL, because /v1/traces is appended to it"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(endpoint: &str) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: Some(endpoint.to_owned()),
            service_name: None,
        }
    }

    #[test]
    fn traces_url_appends_signal_path() {
        let config = with_endpoint("http://collector:4318/");
        assert_eq!(
            config.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let prefixed = with_endpoint("https://otel.example/prefix");
        assert_eq!(
            prefixed.traces_url().as_deref(),
            Some("https://otel.example/prefix/v1/traces")
        );
    }

    #[test]
    fn empty_endpoint_is_unset() {
        let config = with_endpoint("  ");
        assert_eq!(config.endpoint(), None);
        assert_eq!(config.traces_url(), None);
        assert!(config.validate().is_ok());
        assert_eq!(TelemetryConfig::default().traces_url(), None);
    }

    #[test]
    fn validate_rejects_invalid_endpoints() {
        for endpoint in [
            "collector:4318",
            "grpc://collector:4317",
            "http://c:4318/?a=b",
        ] {
            let error = with_endpoint(endpoint).validate().unwrap_err().to_string();
            assert!(
                error.contains("telemetry.otlp_endpoint"),
                "{endpoint}: {error}"
            );
        }
        assert!(with_endpoint("http://127.0.0.1:4318").validate().is_ok());
    }
}
