//! Conversion of Avro datums to JSON for applications whose `avro_format`
//! is `json`.
//!
//! The output is one JSON document per datum, in plain JSON rather than the
//! Avro JSON encoding, so that a consumer can read it without the schema:
//!
//! | Avro | JSON |
//! | --- | --- |
//! | `null`, `boolean`, `string` | the same value |
//! | `int`, `long` | number |
//! | `float`, `double` | number, except NaN and the infinities, which JSON numbers cannot represent and which become the strings `"NaN"`, `"Infinity"` and `"-Infinity"` |
//! | `bytes`, `fixed` | string: standard base64 with padding (RFC 4648, section 4) |
//! | `enum` | the symbol as a string |
//! | `array` | array |
//! | `map` | object with its keys in byte order |
//! | `record` | object with the fields in schema order |
//! | `union` | the value of the branch alone, without the `{"type": value}` wrapper of the Avro JSON encoding, so the null branch gives `null` |
//! | `decimal` (bytes or fixed) | string with the exact digits and `scale` digits after the point, such as `"-12.30"` |
//! | `big-decimal` | string with all its digits, without an exponent |
//! | `uuid` | string, lowercase and hyphenated |
//! | `date` | string `YYYY-MM-DD` |
//! | `time-millis`, `time-micros` | string `HH:MM:SS.fff` with 3 or 6 fraction digits |
//! | `timestamp-millis`, `-micros`, `-nanos` | RFC 3339 string in UTC with 3, 6 or 9 fraction digits, such as `"2024-05-01T12:30:00.250Z"` |
//! | `local-timestamp-millis`, `-micros`, `-nanos` | the same without the `Z` |
//! | `duration` | object `{"months": n, "days": n, "milliseconds": n}` |
//!
//! The same datum and schema always give the same bytes, because the output
//! has no whitespace, record fields follow schema order and map keys are
//! sorted. Dates and timestamps outside the years 0000 to 9999 have no
//! RFC 3339 form, so they fail the conversion. A time of day outside
//! 00:00:00 to 23:59:59.999999999 and a datum that does not decode with its
//! schema fail it too.

mod render;

use super::avro;
use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;
use apache_avro::Schema;
use async_trait::async_trait;
use bytes::Bytes;

/// Error for an Avro payload that cannot be converted to JSON, with the
/// reason. Converting the same payload again gives the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot convert the Avro payload to JSON: {0}")]
pub struct ConversionError(pub String);

/// Decodes one binary datum with `schema` and returns it as JSON.
pub fn datum_to_json(schema: &Schema, datum: &[u8]) -> Result<Bytes, ConversionError> {
    let value =
        avro::decode_value(schema, datum).map_err(|error| ConversionError(error.to_string()))?;
    value_to_json(schema, &value).map(Bytes::from)
}

/// Serializes a decoded Avro value of `schema` to JSON bytes.
pub fn value_to_json(schema: &Schema, value: &Value) -> Result<Vec<u8>, ConversionError> {
    let resolved = ResolvedSchema::try_from(schema)
        .map_err(|error| ConversionError(format!("the Avro schema is invalid: {error}")))?;
    let node = render::Node::new(value, schema, resolved.get_names());
    serde_json::to_vec(&node).map_err(|error| ConversionError(error.to_string()))
}

/// A failed conversion of a delivery's payload.
#[derive(Debug, thiserror::Error)]
pub enum ConverterError {
    /// The payload or its schema cannot be converted to JSON, so a retry
    /// would fail the same way.
    #[error(transparent)]
    Failed(#[from] ConversionError),
    /// The product or the schema could not be read from the state store or
    /// the schema registry. A later attempt may succeed.
    #[error("reading the Avro schema failed: {0}")]
    Unavailable(String),
}

/// Converter of a product's Avro payloads to JSON. It decodes each payload
/// with the product's schema, or for the schema-registry wire format with
/// the schema whose id the payload carries.
#[async_trait]
pub trait AvroJsonConverter: Send + Sync + 'static {
    /// Converts `payload`, an event of the Avro product named `product`, to
    /// JSON.
    async fn convert(&self, product: &str, payload: &[u8]) -> Result<Bytes, ConverterError>;
}

#[cfg(test)]
mod tests;
