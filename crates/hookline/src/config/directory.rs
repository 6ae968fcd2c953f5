//! Configuration of the subscription directory (`directory.*`).

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    pub kind: DirectoryKind,
    /// Base URL of the 3scale Admin Portal.
    pub admin_url: Option<String>,
    pub access_token: String,
    /// 3scale service id of each Hookline product.
    pub services: BTreeMap<String, u64>,
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub stale_for: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub webhook_url_field: String,
    pub secret_field: String,
    /// Hookline plan of each 3scale application plan, by `system_name`.
    pub plans: BTreeMap<String, String>,
}

/// `directory.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    /// Applications in the state store, managed through the admin API.
    Builtin,
    /// Applications of 3scale services.
    Threescale,
}

impl DirectoryConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == DirectoryKind::Builtin {
            return Ok(());
        }
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        let Some(admin_url) = &self.admin_url else {
            return invalid(
                "directory.admin_url",
                "must be set for the 3scale directory, for example \"https://acme-admin.3scale.net\"",
            );
        };
        if !matches!(url::Url::parse(admin_url), Ok(url) if matches!(url.scheme(), "http" | "https"))
        {
            return invalid("directory.admin_url", "must be an http:// or https:// URL");
        }
        if self.access_token.is_empty() {
            return invalid(
                "directory.access_token",
                "must be set for the 3scale directory",
            );
        }
        if self.services.is_empty() {
            return invalid(
                "directory.services",
                "must map at least one product to its 3scale service id, for example { \"order-created\" = 42 }",
            );
        }
        if self.cache_ttl.is_zero() || self.request_timeout.is_zero() {
            return invalid(
                "directory.cache_ttl",
                "and directory.request_timeout must be longer than zero",
            );
        }
        Ok(())
    }
}
