//! Keys that encrypt signing secrets at rest (`secrets.keys`), and the
//! schema registry of Avro payloads (`schema_registry.url`).

use super::ConfigError;
use hookline_core::cipher::SecretCipher;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// `<id>:<base64 of 32 bytes>` entries, newest first. The newest key
    /// encrypts; any listed key decrypts the values that name its id. Also
    /// read as one text of entries separated by commas, spaces or line
    /// breaks, as `HOOKLINE_SECRETS__KEYS` or the file named by
    /// `HOOKLINE_SECRETS__KEYS_FILE` give it.
    #[serde(default, deserialize_with = "list_or_text")]
    pub keys: Vec<String>,
}

impl SecretsConfig {
    /// Returns the configured keys, or `None` when none is configured.
    pub fn cipher(&self) -> Result<Option<SecretCipher>, ConfigError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        SecretCipher::parse(&self.keys)
            .map(Some)
            .map_err(|error| ConfigError::Invalid {
                key: "secrets.keys",
                problem: format!("is invalid: {error}"),
            })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.cipher().map(drop)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL of a registry with the Confluent REST API (Apicurio serves
    /// it under `/apis/ccompat/v7`). Unset: Avro payloads in the wire format
    /// are rejected by products that validate them without a schema.
    pub url: Option<String>,
}

impl SchemaRegistryConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
            Ok(_) => Err(ConfigError::Invalid {
                key: "schema_registry.url",
                problem: "must start with http:// or https://".to_owned(),
            }),
            Err(error) => Err(ConfigError::Invalid {
                key: "schema_registry.url",
                problem: format!("is not a valid URL: {error}"),
            }),
        }
    }
}

/// Reads a list of strings, or one string of entries separated by commas,
/// whitespace or line breaks.
pub(super) fn list_or_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        List(Vec<String>),
        Text(String),
    }
    let entries = match Keys::deserialize(deserializer)? {
        Keys::List(entries) => entries,
        Keys::Text(text) => text
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(str::to_owned)
            .collect(),
    };
    Ok(entries
        .into_iter()
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    const K2: &str = "k2:CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=";

    #[test]
    fn keys_read_from_list_or_text() {
        let list: SecretsConfig = toml::from_str(&format!("keys = [\"{K2}\", \"{K1}\"]")).unwrap();
        assert_eq!(list.keys, [K2, K1]);
        let text: SecretsConfig = toml::from_str(&format!("keys = \"{K2},\\n{K1}\\n\"")).unwrap();
        assert_eq!(text.keys, [K2, K1]);
        assert_eq!(text.cipher().unwrap().unwrap().newest_key_id(), "k2");
    }

    #[test]
    fn invalid_key_names_the_setting() {
        let config = SecretsConfig {
            keys: vec!["k1:short".to_owned()],
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("secrets.keys"), "{error}");
        assert!(!error.contains("short"), "the key is not echoed: {error}");
    }

    #[test]
    fn registry_url_must_be_http() {
        let config = SchemaRegistryConfig {
            url: Some("ftp://registry".to_owned()),
        };
        assert!(config.validate().is_err());
    }
}
