//! JSON Schema validation with the `jsonschema` crate.
//!
//! `$ref`s to other documents are not fetched: the crate is built without
//! its HTTP and file resolvers, so a schema must be self-contained. The
//! `format` keyword is asserted (for example `"format": "email"`), not only
//! annotated as the 2019-09 and 2020-12 drafts do by default.

use super::SchemaError;
use crate::content::PayloadError;

/// Number of violations named in one rejection reason.
const MAX_REPORTED_VIOLATIONS: usize = 3;

/// Compiles a JSON Schema document given as text.
pub fn compile(schema: &str) -> Result<jsonschema::Validator, SchemaError> {
    let document: serde_json::Value = serde_json::from_str(schema)
        .map_err(|error| SchemaError(format!("the schema is not valid JSON: {error}")))?;
    jsonschema::options()
        .should_validate_formats(true)
        .build(&document)
        .map_err(|error| SchemaError(format!("the JSON Schema is invalid: {error}")))
}

/// Validates a JSON payload against a compiled schema.
///
/// The reason names the location and rule of the first few violations with
/// the values masked, so that payload data does not reach the logs.
pub fn validate(validator: &jsonschema::Validator, payload: &[u8]) -> Result<(), PayloadError> {
    let instance: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|error| PayloadError::InvalidJson(error.to_string()))?;
    let mut violations = Vec::new();
    let mut total = 0;
    for error in validator.iter_errors(&instance) {
        total += 1;
        if violations.len() < MAX_REPORTED_VIOLATIONS {
            let path = error.instance_path().to_string();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            violations.push(format!("{path}: {}", error.masked()));
        }
    }
    if total == 0 {
        return Ok(());
    }
    let mut reason = violations.join("; ");
    if total > violations.len() {
        reason.push_str(&format!(" (and {} more)", total - violations.len()));
    }
    Err(PayloadError::SchemaViolation(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_SCHEMA: &str = include_str!("../../../../fixtures/order-created.schema.json");
    const ORDER_EVENT: &str = include_str!("../../../../fixtures/order-created.event.json");

    #[test]
    fn sample_event_matches_sample_schema() {
        let validator = compile(ORDER_SCHEMA).unwrap();
        assert_eq!(validate(&validator, ORDER_EVENT.as_bytes()), Ok(()));
    }

    #[test]
    fn violations_name_location_without_values() {
        let validator = compile(ORDER_SCHEMA).unwrap();
        let event = ORDER_EVENT.replace("ORDER_CREATED", "SECRET_STATUS");
        let Err(PayloadError::SchemaViolation(reason)) = validate(&validator, event.as_bytes())
        else {
            panic!("a wrong enum value must fail validation");
        };
        assert!(reason.contains("/status"), "{reason}");
        assert!(!reason.contains("SECRET_STATUS"), "{reason}");
    }

    #[test]
    fn email_format_is_asserted() {
        let validator = compile(ORDER_SCHEMA).unwrap();
        let mut event: serde_json::Value = serde_json::from_str(ORDER_EVENT).unwrap();
        event["email"] = "not an address".into();
        let payload = serde_json::to_vec(&event).unwrap();
        let result = validate(&validator, &payload);
        assert!(
            matches!(&result, Err(PayloadError::SchemaViolation(reason)) if reason.contains("/email")),
            "{result:?}"
        );
    }

    #[test]
    fn invalid_schemas_are_rejected() {
        assert!(compile("{not json").is_err());
        assert!(compile(r#"{"type": 12}"#).is_err());
        let remote = r#"{"$ref": "https://schemas.example/order.json"}"#;
        assert!(compile(remote).is_err(), "remote $ref must not be fetched");
    }
}
