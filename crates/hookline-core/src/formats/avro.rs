//! Avro payloads: raw binary datums, and the schema-registry wire format.
//!
//! The wire format that Confluent's serializers write, and that Apicurio
//! Registry also accepts, is byte 0 (the magic byte), the schema id as a
//! 4-byte big-endian integer, and then the binary datum.

use super::SchemaError;
use crate::content::PayloadError;
use apache_avro::types::Value;
use apache_avro::Schema;

/// First byte of a payload in the schema-registry wire format.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the wire-format header: the magic byte and the schema id.
pub const HEADER_LEN: usize = 5;

/// Parses an Avro schema given as JSON text.
pub fn parse_schema(schema: &str) -> Result<Schema, SchemaError> {
    Schema::parse_str(schema)
        .map_err(|error| SchemaError(format!("the Avro schema is invalid: {error}")))
}

/// Splits a wire-format payload into its schema id and the datum that
/// follows. Returns `None` when the payload does not start with the header.
pub fn split_wire_format(payload: &[u8]) -> Option<(u32, &[u8])> {
    if payload.len() < HEADER_LEN || payload[0] != MAGIC_BYTE {
        return None;
    }
    let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    Some((id, &payload[HEADER_LEN..]))
}

/// Decodes one binary datum with `schema` and checks that no bytes follow it.
pub fn decode(schema: &Schema, datum: &[u8]) -> Result<(), PayloadError> {
    decode_value(schema, datum).map(drop)
}

/// Decodes one binary datum with `schema` into its value, with the checks
/// of [`decode`].
pub fn decode_value(schema: &Schema, datum: &[u8]) -> Result<Value, PayloadError> {
    let mut rest = datum;
    let value = apache_avro::from_avro_datum(schema, &mut rest, None)
        .map_err(|error| PayloadError::InvalidAvro(error.to_string()))?;
    // apache-avro 0.21 decodes a string cut short by the end of the input
    // as null instead of failing, so the value is checked against the schema.
    if !value.validate(schema) {
        return Err(PayloadError::InvalidAvro(
            "the datum ends before its last value is complete".to_owned(),
        ));
    }
    if !rest.is_empty() {
        return Err(PayloadError::InvalidAvro(format!(
            "{} bytes follow the datum; a payload contains exactly one datum",
            rest.len()
        )));
    }
    Ok(value)
}

/// Caps the size of any single allocation made while decoding at `bytes`.
///
/// A length prefix in a datum is read before the bytes it announces, so a
/// small malformed payload could otherwise ask for a buffer of gigabytes.
/// apache-avro keeps the first value set in the process; later calls
/// change nothing. Returns the cap in force.
pub fn limit_allocations(bytes: usize) -> usize {
    apache_avro::util::max_allocation_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_SCHEMA: &str = r#"{
        "type": "record", "name": "OrderCreated",
        "fields": [
            {"name": "orderId", "type": "string"},
            {"name": "amount", "type": "long"}
        ]
    }"#;

    fn order_datum(order_id: &str, amount: i64) -> Vec<u8> {
        let schema = parse_schema(ORDER_SCHEMA).unwrap();
        let value = Value::Record(vec![
            ("orderId".into(), Value::String(order_id.into())),
            ("amount".into(), Value::Long(amount)),
        ]);
        apache_avro::to_avro_datum(&schema, value).unwrap()
    }

    #[test]
    fn datum_decodes_with_its_schema() {
        let schema = parse_schema(ORDER_SCHEMA).unwrap();
        assert_eq!(decode(&schema, &order_datum("A-1", 42)), Ok(()));
    }

    #[test]
    fn truncated_and_padded_datums_are_rejected() {
        let schema = parse_schema(ORDER_SCHEMA).unwrap();
        let datum = order_datum("A-1", 42);
        let truncated = &datum[..datum.len() - 1];
        assert!(matches!(
            decode(&schema, truncated),
            Err(PayloadError::InvalidAvro(_))
        ));
        let cut_in_string = &datum[..3];
        assert!(matches!(
            decode(&schema, cut_in_string),
            Err(PayloadError::InvalidAvro(_))
        ));
        let mut padded = datum.clone();
        padded.push(7);
        let result = decode(&schema, &padded);
        assert!(
            matches!(&result, Err(PayloadError::InvalidAvro(reason)) if reason.contains("1 bytes follow")),
            "{result:?}"
        );
    }

    #[test]
    fn wire_format_header_is_split() {
        let mut payload = vec![MAGIC_BYTE, 0, 0, 1, 2];
        payload.extend(order_datum("A-1", 1));
        let (id, datum) = split_wire_format(&payload).unwrap();
        assert_eq!(id, 258);
        assert_eq!(datum, &payload[HEADER_LEN..]);
        assert_eq!(split_wire_format(&[1, 0, 0, 0, 1, 2]), None);
        assert_eq!(split_wire_format(&[0, 0, 0]), None);
    }

    #[test]
    fn invalid_schema_is_rejected() {
        assert!(parse_schema(r#"{"type": "record", "name": "X"}"#).is_err());
        assert!(parse_schema("not json").is_err());
    }
}
