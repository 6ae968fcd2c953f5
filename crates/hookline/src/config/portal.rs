//! Configuration of the developer portal (`portal.*`).

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// Serve the portal under `/portal` from `hookline serve` and `hookline api`.
    pub enabled: bool,
    /// Name shown in the portal's header and page titles.
    pub brand_name: String,
    /// URL (https) or absolute path of the logo; empty shows Hookline's logo.
    pub logo_url: String,
    /// Accent colour as `#rrggbb` or `#rgb`.
    pub brand_colour: String,
    /// Accounts signed up with one of these emails get the provider role,
    /// which can see every application and the provider pages. Also read as one
    /// text of emails separated by commas or spaces.
    #[serde(deserialize_with = "super::secrets::list_or_text")]
    pub provider_emails: Vec<String>,
    /// Mark the session cookie `Secure`, so browsers send it over HTTPS only.
    /// Turn it off only when the portal is reached over plain HTTP on a
    /// trusted network.
    pub secure_cookie: bool,
    /// How long a sign-in lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// How long the previous signing secret keeps signing after a consumer
    /// rotates the secret in the portal.
    #[serde(with = "humantime_serde")]
    pub secret_rotation_overlap: Duration,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            brand_name: "Hookline".to_owned(),
            logo_url: String::new(),
            brand_colour: "#1d4ed8".to_owned(),
            provider_emails: Vec::new(),
            secure_cookie: true,
            session_ttl: Duration::from_secs(12 * 3600),
            secret_rotation_overlap: Duration::from_secs(24 * 3600),
        }
    }
}

impl PortalConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        if !hookline_portal::is_valid_colour(&self.brand_colour) {
            return invalid(
                "portal.brand_colour",
                "must be a hex colour such as \"#1d4ed8\" or \"#14b\"",
            );
        }
        let logo = self.logo_url.trim();
        if !logo.is_empty() && !logo.starts_with('/') && !logo.starts_with("https://") {
            return invalid(
                "portal.logo_url",
                "must be an https:// URL or a path starting with /, or empty for the built-in logo",
            );
        }
        if self.brand_name.trim().is_empty() {
            return invalid("portal.brand_name", "must not be empty");
        }
        if self.session_ttl < Duration::from_secs(60) {
            return invalid(
                "portal.session_ttl",
                "must be at least 1m, for example \"12h\"",
            );
        }
        Ok(())
    }

    /// Returns the provider emails lowercased, as accounts store them.
    pub fn provider_emails(&self) -> Vec<String> {
        self.provider_emails
            .iter()
            .map(|email| email.trim().to_lowercase())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_emails_read_from_text() {
        let config: PortalConfig =
            toml::from_str("provider_emails = \"Ops@Example.com, api@example.com\"").unwrap();
        assert_eq!(
            config.provider_emails(),
            ["ops@example.com", "api@example.com"]
        );
    }

    #[test]
    fn brand_colour_must_be_hex() {
        let config = PortalConfig {
            brand_colour: "red".to_owned(),
            ..PortalConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("portal.brand_colour"), "{error}");
    }
}
