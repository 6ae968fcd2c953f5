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
    /// 3scale metric whose plan limits apply to plans without a Hookline plan.
    pub usage_metric: String,
    /// Base URL of 3scale's Service Management API; set, each delivered
    /// notification is reported there as one unit of `usage_metric`.
    pub report_url: Option<String>,
    /// `service_token` of each product's 3scale service, for reporting.
    pub service_tokens: BTreeMap<String, String>,
    /// The account's `provider_key`, for reporting without service tokens.
    pub provider_key: String,
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
        self.validate_reporting()
    }

    /// Checks the keys of usage reporting, which needs a URL, credentials
    /// for every service and the `user_key` as the secret field.
    fn validate_reporting(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        let Some(report_url) = &self.report_url else {
            return Ok(());
        };
        if !matches!(url::Url::parse(report_url), Ok(url) if matches!(url.scheme(), "http" | "https"))
        {
            return invalid(
                "directory.report_url",
                format!("{report_url:?} is not an http:// or https:// URL"),
            );
        }
        if self.secret_field != "user_key" {
            return invalid(
                "directory.report_url",
                "needs directory.secret_field = \"user_key\": 3scale identifies the application by its user_key".to_owned(),
            );
        }
        if self.provider_key.is_empty() {
            let missing = self
                .services
                .keys()
                .find(|product| !self.service_tokens.contains_key(*product));
            if let Some(product) = missing {
                return invalid(
                    "directory.service_tokens",
                    format!("has no token for product {product:?}; set one for every product in directory.services, or set directory.provider_key"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threescale() -> DirectoryConfig {
        DirectoryConfig {
            kind: DirectoryKind::Threescale,
            admin_url: Some("https://acme-admin.3scale.net".into()),
            access_token: "t".into(),
            services: [("order-created".to_owned(), 42)].into(),
            cache_ttl: Duration::from_secs(60),
            stale_for: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
            webhook_url_field: "webhook-url".into(),
            secret_field: "user_key".into(),
            plans: BTreeMap::new(),
            usage_metric: "webhook".into(),
            report_url: Some("https://su1.3scale.net".into()),
            service_tokens: BTreeMap::new(),
            provider_key: String::new(),
        }
    }

    fn rejected_key(config: &DirectoryConfig) -> Option<&'static str> {
        match config.validate() {
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            _ => None,
        }
    }

    #[test]
    fn reporting_needs_credentials() {
        let config = threescale();
        assert_eq!(rejected_key(&config), Some("directory.service_tokens"));

        let mut with_token = threescale();
        with_token
            .service_tokens
            .insert("order-created".into(), "st".into());
        assert!(with_token.validate().is_ok());

        let mut with_provider_key = threescale();
        with_provider_key.provider_key = "pk".into();
        assert!(with_provider_key.validate().is_ok());
    }

    #[test]
    fn reporting_needs_user_key_secret() {
        let mut config = threescale();
        config.provider_key = "pk".into();
        config.secret_field = "app_key".into();
        assert_eq!(rejected_key(&config), Some("directory.report_url"));
    }

    #[test]
    fn reporting_rejects_other_schemes() {
        let mut config = threescale();
        config.provider_key = "pk".into();
        config.report_url = Some("ftp://su1.3scale.net".into());
        assert_eq!(rejected_key(&config), Some("directory.report_url"));
    }
}
