//! Typed configuration: the embedded defaults, then an optional TOML file,
//! then `HOOKLINE_` environment variables (`__` separates sections), then
//! secrets read from the files named by `*_FILE` variables.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use hookline_core::RetryPolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod directory;
mod gateway;
mod limits;
mod portal;
mod secrets;
mod telemetry;

pub use directory::{DirectoryConfig, DirectoryKind};
pub use gateway::{DispatcherConfig, GatewayConfig, HmacEncoding};
pub use limits::LimitsConfig;
pub use portal::PortalConfig;
pub use secrets::{SchemaRegistryConfig, SecretsConfig};
pub use telemetry::TelemetryConfig;

/// The commented defaults, also printed by `hookline config default`.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Keys whose value may come from a file named by `HOOKLINE_<KEY>_FILE`.
/// The URLs are listed because they carry passwords.
const SECRET_KEYS: [&str; 10] = [
    "api.admin_token",
    "api.ingest_token",
    "storage.url",
    "queue.url",
    "redis.url",
    "gateway.token",
    "directory.access_token",
    "directory.provider_key",
    "secrets.keys",
    "kafka.sasl_password",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub api: ApiConfig,
    pub storage: StorageConfig,
    pub kafka: KafkaConfig,
    pub retry: RetryPolicy,
    pub queue: QueueConfig,
    pub redis: RedisConfig,
    pub delivery: DeliveryConfig,
    pub dedup: DedupConfig,
    pub shutdown: ShutdownConfig,
    pub ingest: IngestConfig,
    pub log: LogConfig,
    pub gateway: GatewayConfig,
    pub dispatcher: DispatcherConfig,
    pub directory: DirectoryConfig,
    pub limits: LimitsConfig,
    #[serde(default)]
    pub secrets: SecretsConfig,
    #[serde(default)]
    pub schema_registry: SchemaRegistryConfig,
    #[serde(default)]
    pub portal: PortalConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub admin_token: String,
    /// A second bearer token that only ingest accepts. When it is `None` or
    /// empty, ingest accepts the admin token alone.
    #[serde(default)]
    pub ingest_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub url: Option<String>,
    pub schema: Option<String>,
    pub max_connections: u32,
    pub migrate_on_start: bool,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub url: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: Option<String>,
    pub key_prefix: String,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub idempotency_header: String,
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// The SASL password, passed to the consumer as `sasl.password`. It may
    /// come from `HOOKLINE_KAFKA__SASL_PASSWORD_FILE`, unlike the properties.
    #[serde(default)]
    pub sasl_password: Option<String>,
    /// librdkafka properties passed to the consumer as given, such as
    /// `security.protocol` and `sasl.mechanism` for a secured cluster.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub allow_http: bool,
    pub allow_private_addresses: bool,
    pub allowed_networks: Vec<ipnet::IpNet>,
    pub ca_file: Option<PathBuf>,
    pub concurrency: usize,
    pub per_endpoint_concurrency: usize,
    /// An endpoint whose every attempt failed for this long has its
    /// application disabled; zero never disables for failures alone.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// How often the dispatcher looks again at a kept delivery of a
    /// disabled application.
    #[serde(with = "humantime_serde")]
    pub disabled_recheck: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub on_redis_failure: OnRedisFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisFailure {
    FailClosed,
    StoreOnly,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub max_payload_size: usize,
    /// Ingest batches written at the same time by one process; 0 counts
    /// as 1.
    #[serde(default)]
    pub batches_in_flight: usize,
}

impl IngestConfig {
    /// Returns `batches_in_flight`, at least 1.
    pub fn batches_in_flight(&self) -> usize {
        self.batches_in_flight.max(1)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {}", describe_figment_error(.0))]
    Parse(#[from] Box<figment::Error>),
    #[error(
        "invalid configuration: cannot read {key} from {path} (named by {variable}): {source}"
    )]
    SecretFile {
        key: String,
        variable: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {key} {problem}")]
    Invalid { key: &'static str, problem: String },
}

impl Config {
    /// Loads defaults, the file (if any) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("HOOKLINE_")
            .ignore(&["config"])
            .filter(|key| !is_secret_file_variable(key.as_str()))
            .split("__");
        let variables: Vec<(String, String)> = std::env::vars().collect();
        figment = figment
            .merge(env)
            .merge(Serialized::defaults(secret_files(&variables)?));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        if self.delivery.timeout.is_zero() {
            return invalid(
                "delivery.timeout",
                "must be longer than zero, for example \"15s\"",
            );
        }
        if self.delivery.concurrency == 0 {
            return invalid("delivery.concurrency", "must be at least 1");
        }
        if self.delivery.per_endpoint_concurrency == 0 {
            return invalid("delivery.per_endpoint_concurrency", "must be at least 1");
        }
        if self.delivery.disabled_recheck.is_zero() {
            return invalid(
                "delivery.disabled_recheck",
                "must be longer than zero, for example \"15m\"",
            );
        }
        if self
            .api
            .ingest_token
            .as_deref()
            .is_some_and(|token| !token.is_empty() && token == self.api.admin_token)
        {
            return invalid(
                "api.ingest_token",
                "must differ from api.admin_token, or a leaked ingest token would grant admin access",
            );
        }
        if self.ingest.max_payload_size == 0 {
            return invalid("ingest.max_payload_size", "must be at least 1 byte");
        }
        if self.kafka.idempotency_header.is_empty() {
            return invalid("kafka.idempotency_header", "must not be empty");
        }
        if self
            .kafka
            .properties
            .keys()
            .any(|name| name.trim().eq_ignore_ascii_case("session.timeout.ms"))
        {
            return invalid(
                "kafka.properties",
                "must not set \"session.timeout.ms\": set kafka.session_timeout instead, for example \"45s\"",
            );
        }
        if self.storage.url.is_some() != self.queue.url.is_some() {
            return invalid(
                "queue.url",
                "and storage.url must be set together: the distributed mode needs PostgreSQL and RabbitMQ, the embedded mode neither",
            );
        }
        if let Some(url) = &self.storage.url {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                return invalid(
                    "storage.url",
                    "must start with postgres:// or postgresql://",
                );
            }
        }
        if let Some(url) = &self.queue.url {
            if !url.starts_with("amqp://") && !url.starts_with("amqps://") {
                return invalid("queue.url", "must start with amqp:// or amqps://");
            }
        }
        if self.queue.name.is_empty() {
            return invalid("queue.name", "must not be empty");
        }
        if let Some(path) = &self.delivery.ca_file {
            if !path.is_file() {
                return invalid(
                    "delivery.ca_file",
                    &format!("{} is not a readable file", path.display()),
                );
            }
        }
        self.gateway.validate(&self.dispatcher)?;
        self.directory.validate()?;
        self.limits.validate()?;
        self.secrets.validate()?;
        self.schema_registry.validate()?;
        self.portal.validate()?;
        self.telemetry.validate()?;
        Ok(())
    }

    /// Returns the visibility timeout of leased tasks, longer than any attempt.
    pub fn visibility_timeout(&self) -> Duration {
        self.delivery.timeout + Duration::from_secs(30)
    }

    /// Renders the effective configuration as TOML with secrets replaced.
    pub fn redacted_toml(&self) -> String {
        let mut copy = self.clone();
        if !copy.api.admin_token.is_empty() {
            copy.api.admin_token = "<redacted>".into();
        }
        redact_optional(&mut copy.api.ingest_token);
        copy.storage.url = copy.storage.url.as_deref().map(redact_url);
        copy.queue.url = copy.queue.url.as_deref().map(redact_url);
        copy.redis.url = copy.redis.url.as_deref().map(redact_url);
        copy.telemetry.otlp_endpoint = copy.telemetry.endpoint().map(redact_url);
        if !copy.gateway.token.is_empty() {
            copy.gateway.token = "<redacted>".into();
        }
        if !copy.directory.access_token.is_empty() {
            copy.directory.access_token = "<redacted>".into();
        }
        if !copy.directory.provider_key.is_empty() {
            copy.directory.provider_key = "<redacted>".into();
        }
        for token in copy.directory.service_tokens.values_mut() {
            *token = "<redacted>".into();
        }
        redact_optional(&mut copy.kafka.sasl_password);
        for (name, value) in &mut copy.kafka.properties {
            if is_sensitive_kafka_property(name) {
                *value = "<redacted>".into();
            }
        }
        for key in &mut copy.secrets.keys {
            let id = key.split(':').next().unwrap_or_default().to_owned();
            *key = format!("{id}:<redacted>");
        }
        toml::to_string_pretty(&copy)
            .unwrap_or_else(|error| format!("# cannot render configuration: {error}"))
    }
}

/// Replaces the password of a URL such as `amqp://user:secret@host/`.
/// Returns whether a librdkafka property may carry a credential, such as
/// `sasl.password`, `ssl.key.pem` or `sasl.oauthbearer.client.secret`.
/// Locations of key files match too, which hides only a path.
fn is_sensitive_kafka_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key",
        "pem",
        "token",
        "oauthbearer.config",
    ]
    .iter()
    .any(|part| name.contains(part))
}

/// Replaces a secret that is set and not empty with `<redacted>`.
fn redact_optional(secret: &mut Option<String>) {
    if secret.as_deref().is_some_and(|value| !value.is_empty()) {
        *secret = Some("<redacted>".into());
    }
}

fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => "<invalid URL, redacted>".to_owned(),
    }
}

/// Names each failing key in lowercase dotted form (`retry.backoff_unit`),
/// whether it came from the file or an environment variable.
fn describe_figment_error(error: &figment::Error) -> String {
    let messages: Vec<String> = error
        .clone()
        .into_iter()
        .map(|error| {
            let key = error.path.join(".").to_ascii_lowercase();
            let origin = error
                .metadata
                .as_ref()
                .map(|metadata| format!(" (from {})", metadata.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{origin}", error.kind)
            } else {
                format!("key {key}: {}{origin}", error.kind)
            }
        })
        .collect();
    messages.join("; ")
}

/// Whether `key` (a variable name without `HOOKLINE_`) names a file that
/// contains a secret key's value, such as `API__ADMIN_TOKEN_FILE`.
fn is_secret_file_variable(key: &str) -> bool {
    let dotted = key.to_ascii_lowercase().replace("__", ".");
    dotted
        .strip_suffix("_file")
        .is_some_and(|base| SECRET_KEYS.contains(&base))
}

/// Reads `HOOKLINE_<KEY>_FILE` variables of secret keys into a nested map.
fn secret_files(variables: &[(String, String)]) -> Result<figment::value::Dict, ConfigError> {
    let mut root = figment::value::Dict::new();
    for (name, path) in variables {
        let Some(stripped) = name.strip_prefix("HOOKLINE_") else {
            continue;
        };
        if !is_secret_file_variable(stripped) {
            continue;
        }
        let key = stripped.to_ascii_lowercase().replace("__", ".");
        let key = key.trim_end_matches("_file").to_owned();
        let contents = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
            key: key.clone(),
            variable: name.clone(),
            path: PathBuf::from(path),
            source,
        })?;
        let (section, field) = key.split_once('.').expect("secret keys are nested");
        let entry = root
            .entry(section.to_owned())
            .or_insert_with(|| figment::value::Value::from(figment::value::Dict::new()));
        if let figment::value::Value::Dict(_, dict) = entry {
            dict.insert(
                field.to_owned(),
                contents.trim_end_matches(['\r', '\n']).into(),
            );
        }
    }
    Ok(root)
}
