//! Payload formats of an event API and the checks made on ingest.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Payload format of an event API. Payloads are delivered byte for byte,
/// except Avro for an application whose [`crate::AvroFormat`] is `json`. The
/// format decides the `content-type` header and the checks made on ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    Json,
    Xml,
    Avro,
}

/// A payload that does not match its product's format or schema.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is empty; send the event body as the request body")]
    Empty,
    #[error("payload is not well-formed XML: {0}")]
    InvalidXml(String),
    #[error(
        "payload contains a <!DOCTYPE> declaration; DTDs are rejected so that no external \
         entity is resolved and no entity is expanded"
    )]
    XmlDoctype,
    #[error("payload does not match the product's schema: {0}")]
    SchemaViolation(String),
    #[error("payload is not valid Avro for its schema: {0}")]
    InvalidAvro(String),
    #[error(
        "Avro payload has no schema id: the product has no schema, so the payload must start \
         with the schema-registry header (byte 0, then a 4-byte big-endian schema id)"
    )]
    MissingSchemaId,
    #[error("Avro schema id {0} is not in the schema registry")]
    UnknownSchemaId(u32),
}

impl ContentType {
    /// Parses a media type or a short name (`json`, `xml`, `avro`).
    /// Parameters such as `; charset=utf-8` are ignored.
    pub fn parse(value: &str) -> Option<Self> {
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "json" | "application/json" | "text/json" => Some(Self::Json),
            "xml" | "application/xml" | "text/xml" => Some(Self::Xml),
            "avro" | "application/avro" | "avro/binary" | "application/vnd.apache.avro+binary" => {
                Some(Self::Avro)
            }
            other if other.starts_with("application/") && other.ends_with("+json") => {
                Some(Self::Json)
            }
            other if other.starts_with("application/") && other.ends_with("+xml") => {
                Some(Self::Xml)
            }
            _ => None,
        }
    }

    /// Returns the media type sent as `content-type` with each delivery.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Xml => "application/xml",
            Self::Avro => "application/avro",
        }
    }

    /// Checks that a payload is well-formed for this format.
    ///
    /// JSON is parsed without building a value. XML must be well-formed UTF-8
    /// without a DTD. Avro needs a schema to be decoded, so here it only has
    /// to be non-empty; [`crate::formats`] decodes it against its schema.
    pub fn check_payload(self, payload: &[u8]) -> Result<(), PayloadError> {
        if payload.is_empty() {
            return Err(PayloadError::Empty);
        }
        match self {
            Self::Json => serde_json::from_slice::<serde::de::IgnoredAny>(payload)
                .map(|_| ())
                .map_err(|error| PayloadError::InvalidJson(error.to_string())),
            Self::Xml => crate::formats::xml::check_well_formed(payload),
            Self::Avro => Ok(()),
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.media_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_media_types_and_short_names() {
        assert_eq!(
            ContentType::parse("application/json; charset=utf-8"),
            Some(ContentType::Json)
        );
        assert_eq!(
            ContentType::parse("application/cloudevents+json"),
            Some(ContentType::Json)
        );
        assert_eq!(ContentType::parse("XML"), Some(ContentType::Xml));
        assert_eq!(ContentType::parse("avro/binary"), Some(ContentType::Avro));
        assert_eq!(ContentType::parse("text/plain"), None);
    }

    #[test]
    fn json_check_rejects_malformed() {
        assert!(ContentType::Json.check_payload(br#"{"a":1}"#).is_ok());
        assert!(matches!(
            ContentType::Json.check_payload(br#"{"a":"#),
            Err(PayloadError::InvalidJson(_))
        ));
        assert_eq!(
            ContentType::Xml.check_payload(b""),
            Err(PayloadError::Empty)
        );
    }
}
