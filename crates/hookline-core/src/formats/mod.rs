//! Checks of payloads against their product's format and schema.
//!
//! A product's `schema` is JSON Schema text for JSON products and an Avro
//! schema (JSON) for Avro products; XML products take no schema. With
//! `validate` on, JSON payloads are validated against the schema when there
//! is one, and Avro payloads are decoded: raw datums with the product's
//! schema, or, for a product without a schema, the schema-registry wire
//! format with the schema that the registry returns for the payload's id.
//! Well-formedness ([`crate::ContentType::check_payload`]) is checked either way.
//! [`avro_json`] converts Avro payloads to JSON for applications whose
//! [`crate::AvroFormat`] is `json`.

pub mod avro;
pub mod avro_json;
pub mod json;
pub mod xml;

use crate::content::PayloadError;
use crate::ContentType;

/// A product schema that does not compile; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// A product's schema, compiled once and used for every payload.
pub enum CompiledSchema {
    Json(Box<jsonschema::Validator>),
    Avro(Box<apache_avro::Schema>),
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(_) => f.write_str("CompiledSchema::Json"),
            Self::Avro(schema) => write!(f, "CompiledSchema::Avro({})", schema.canonical_form()),
        }
    }
}

impl CompiledSchema {
    /// Compiles the schema text of a product of `content_type`.
    pub fn compile(content_type: ContentType, schema: &str) -> Result<Self, SchemaError> {
        match content_type {
            ContentType::Json => Ok(Self::Json(Box::new(json::compile(schema)?))),
            ContentType::Avro => Ok(Self::Avro(Box::new(avro::parse_schema(schema)?))),
            ContentType::Xml => Err(SchemaError(
                "XML products take no schema; only well-formedness is checked".to_owned(),
            )),
        }
    }

    /// Validates a JSON payload, or decodes a raw Avro datum.
    pub fn check(&self, payload: &[u8]) -> Result<(), PayloadError> {
        match self {
            Self::Json(validator) => json::validate(validator, payload),
            Self::Avro(schema) => avro::decode(schema, payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_kind_follows_content_type() {
        let json = CompiledSchema::compile(ContentType::Json, r#"{"type": "object"}"#).unwrap();
        assert!(matches!(json, CompiledSchema::Json(_)));
        let avro = CompiledSchema::compile(ContentType::Avro, r#""long""#).unwrap();
        assert!(matches!(avro, CompiledSchema::Avro(_)));
        let xml = CompiledSchema::compile(ContentType::Xml, "<xs:schema/>");
        assert!(xml.is_err());
    }

    #[test]
    fn check_uses_the_compiled_schema() {
        let json = CompiledSchema::compile(ContentType::Json, r#"{"type": "object"}"#).unwrap();
        assert_eq!(json.check(b"{}"), Ok(()));
        assert!(matches!(
            json.check(b"[]"),
            Err(PayloadError::SchemaViolation(_))
        ));
        let avro = CompiledSchema::compile(ContentType::Avro, r#""long""#).unwrap();
        assert_eq!(avro.check(&[0x54]), Ok(()));
        assert!(matches!(
            avro.check(&[0x80]),
            Err(PayloadError::InvalidAvro(_))
        ));
    }
}
