//! Settings of the 3scale directory (`directory.*`).

use std::collections::BTreeMap;
use std::time::Duration;

/// Address, credentials and field mapping of the 3scale directory.
#[derive(Debug, Clone)]
pub struct ThreescaleSettings {
    /// Base URL of the 3scale Admin Portal, such as
    /// `https://acme-admin.3scale.net`.
    pub admin_url: url::Url,
    /// An access token with read access to the Account Management API.
    pub access_token: String,
    /// The 3scale service (product) id of each Hookline product. Each
    /// service id appears at most once, because an application id encodes
    /// its service and a Hookline application belongs to one product.
    pub services: BTreeMap<String, u64>,
    /// How long a service's list of applications is used before a re-read.
    pub cache_ttl: Duration,
    /// How long after the last successful read a list is still served while
    /// 3scale fails.
    pub stale_for: Duration,
    /// Deadline of one request to 3scale.
    pub request_timeout: Duration,
    /// Application field holding the webhook URL: a top-level field of the
    /// application, which is where 3scale returns extra fields.
    pub webhook_url_field: String,
    /// Application field holding the signing key.
    pub secret_field: String,
    /// Hookline plan name of a 3scale application plan, keyed by the plan's
    /// `system_name`. A plan not listed keeps its `system_name`.
    pub plans: BTreeMap<String, String>,
    /// The 3scale metric, by `system_name` or `name`, whose limits in an
    /// application plan apply when the plan maps to no Hookline plan.
    pub usage_metric: String,
}

impl ThreescaleSettings {
    /// Returns settings with the documented defaults for everything but the
    /// address, the token and the services.
    pub fn new(admin_url: url::Url, access_token: String, services: BTreeMap<String, u64>) -> Self {
        Self {
            admin_url,
            access_token,
            services,
            cache_ttl: Duration::from_secs(60),
            stale_for: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
            webhook_url_field: "webhook-url".into(),
            secret_field: "user_key".into(),
            plans: BTreeMap::new(),
            usage_metric: "webhook".into(),
        }
    }

    /// Checks what the types cannot: a token, at least one service, and
    /// distinct service ids. Returns the problem with the key it concerns.
    pub fn validate(&self) -> Result<(), String> {
        if self.access_token.is_empty() {
            return Err("directory.access_token must be set for the 3scale directory".into());
        }
        if self.services.is_empty() {
            return Err(
                "directory.services must map at least one product to a 3scale service id, for example { \"order-created\" = 42 }".into(),
            );
        }
        let mut seen = BTreeMap::new();
        for (product, service) in &self.services {
            if let Some(other) = seen.insert(*service, product) {
                return Err(format!(
                    "directory.services maps both {other:?} and {product:?} to service {service}; each service may feed one product"
                ));
            }
        }
        if self.cache_ttl.is_zero() {
            return Err("directory.cache_ttl must be longer than zero, for example \"60s\"".into());
        }
        Ok(())
    }

    /// Returns the product that `service` feeds.
    pub(crate) fn product_of(&self, service: u64) -> Option<&str> {
        self.services
            .iter()
            .find(|(_, id)| **id == service)
            .map(|(product, _)| product.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(services: &[(&str, u64)]) -> ThreescaleSettings {
        let services = services.iter().map(|(p, s)| (p.to_string(), *s)).collect();
        ThreescaleSettings::new(
            "https://admin.example".parse().unwrap(),
            "t".into(),
            services,
        )
    }

    #[test]
    fn validate_rejects_shared_service_ids() {
        let error = settings(&[("a", 1), ("b", 1)]).validate().unwrap_err();
        assert!(error.contains("service 1"), "{error}");
        assert!(settings(&[("a", 1), ("b", 2)]).validate().is_ok());
        assert!(settings(&[]).validate().is_err());
    }

    #[test]
    fn product_of_finds_the_product() {
        let settings = settings(&[("order-created", 42)]);
        assert_eq!(settings.product_of(42), Some("order-created"));
        assert_eq!(settings.product_of(43), None);
    }
}
