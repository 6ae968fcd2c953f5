//! Sample datums of Avro products: a value built from the product's Avro
//! schema, encoded as one raw binary datum (without the schema-registry
//! header), as products without a registry receive their events.

use apache_avro::schema::{Name, RecordField, ResolvedSchema};
use apache_avro::types::Value;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Schema};
use std::collections::HashMap;
use time::OffsetDateTime;

/// Maximum nesting depth of followed schemas. Past it, a union takes its
/// `null` branch and an array or map is empty, so that a recursive schema
/// still ends. A schema that cannot end there has no sample.
const MAX_DEPTH: usize = 8;

/// Encodes a sample datum of the Avro schema `schema` (JSON text), with
/// times set to `now`. Returns why no sample can be made otherwise.
pub(crate) fn datum(schema: &str, now: OffsetDateTime) -> Result<Vec<u8>, String> {
    let schema = Schema::parse_str(schema)
        .map_err(|error| format!("the product's Avro schema is invalid: {error}"))?;
    let resolved = ResolvedSchema::try_from(&schema)
        .map_err(|error| format!("the product's Avro schema is invalid: {error}"))?;
    let builder = Builder {
        names: resolved.get_names(),
        now,
    };
    let value = builder.value(&schema, 0)?;
    apache_avro::to_avro_datum(&schema, value)
        .map_err(|error| format!("the sample does not match the product's Avro schema: {error}"))
}

/// Builds sample values, looking named types up in `names`.
struct Builder<'a> {
    names: &'a HashMap<Name, &'a Schema>,
    now: OffsetDateTime,
}

impl Builder<'_> {
    fn value(&self, schema: &Schema, depth: usize) -> Result<Value, String> {
        let now_millis = i64::try_from(self.now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let now_nanos = i64::try_from(self.now.unix_timestamp_nanos()).unwrap_or(0);
        let too_deep = depth > MAX_DEPTH;
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => Value::Boolean(true),
            Schema::Int => Value::Int(1),
            Schema::Long => Value::Long(1),
            Schema::Float => Value::Float(1.5),
            Schema::Double => Value::Double(1.5),
            Schema::Bytes => Value::Bytes(b"example".to_vec()),
            Schema::String => Value::String("example".to_owned()),
            Schema::Array(_) if too_deep => Value::Array(Vec::new()),
            Schema::Array(array) => Value::Array(vec![self.value(&array.items, depth + 1)?]),
            Schema::Map(_) if too_deep => Value::Map(HashMap::new()),
            Schema::Map(map) => {
                let entry = self.value(&map.types, depth + 1)?;
                Value::Map(HashMap::from([("key".to_owned(), entry)]))
            }
            Schema::Union(union) => {
                let variants = union.variants();
                let null = variants
                    .iter()
                    .position(|variant| matches!(variant, Schema::Null));
                let first = match (null, variants.first()) {
                    (Some(_), _) if too_deep => None,
                    (_, Some(first)) => Some(self.value(first, depth + 1)),
                    (_, None) => return Err("an Avro union has no branches".to_owned()),
                };
                // The first branch, unless it nests too deep and the union
                // has a null branch to end on.
                match (first, null) {
                    (Some(Ok(value)), _) => Value::Union(0, Box::new(value)),
                    (_, Some(index)) => {
                        Value::Union(u32::try_from(index).unwrap_or(0), Box::new(Value::Null))
                    }
                    (Some(Err(error)), None) => return Err(error),
                    (None, None) => unreachable!("a union without null is never skipped"),
                }
            }
            Schema::Record(_) if too_deep => {
                return Err(format!(
                    "the Avro schema nests records deeper than {MAX_DEPTH} levels without a null branch"
                ))
            }
            Schema::Record(record) => {
                let mut fields = Vec::with_capacity(record.fields.len());
                for field in &record.fields {
                    fields.push((field.name.clone(), self.field_value(field, depth)?));
                }
                Value::Record(fields)
            }
            Schema::Enum(enumeration) => {
                let symbol = enumeration
                    .default
                    .clone()
                    .or_else(|| enumeration.symbols.first().cloned())
                    .ok_or_else(|| format!("the Avro enum {} has no symbols", enumeration.name))?;
                let index = enumeration
                    .symbols
                    .iter()
                    .position(|candidate| *candidate == symbol)
                    .unwrap_or(0);
                Value::Enum(u32::try_from(index).unwrap_or(0), symbol)
            }
            Schema::Fixed(fixed) => Value::Fixed(fixed.size, vec![0; fixed.size]),
            Schema::Decimal(decimal) => {
                let size = match decimal.inner.as_ref() {
                    Schema::Fixed(fixed) => fixed.size,
                    _ => 1,
                };
                Value::Decimal(Decimal::from(vec![0u8; size]))
            }
            Schema::BigDecimal => {
                return Err("samples of the Avro big-decimal type are not supported".to_owned())
            }
            Schema::Uuid => Value::Uuid(apache_avro::Uuid::nil()),
            Schema::Date => Value::Date(i32::try_from(now_millis / 86_400_000).unwrap_or(0)),
            Schema::TimeMillis => Value::TimeMillis(0),
            Schema::TimeMicros => Value::TimeMicros(0),
            Schema::TimestampMillis => Value::TimestampMillis(now_millis),
            Schema::TimestampMicros => Value::TimestampMicros(now_millis * 1000),
            Schema::TimestampNanos => Value::TimestampNanos(now_nanos),
            Schema::LocalTimestampMillis => Value::LocalTimestampMillis(now_millis),
            Schema::LocalTimestampMicros => Value::LocalTimestampMicros(now_millis * 1000),
            Schema::LocalTimestampNanos => Value::LocalTimestampNanos(now_nanos),
            Schema::Duration => Value::Duration(Duration::new(
                Months::new(0),
                Days::new(1),
                Millis::new(0),
            )),
            Schema::Ref { name } => {
                let named = self
                    .names
                    .get(name)
                    .ok_or_else(|| format!("the Avro type {name} is not defined"))?;
                self.value(named, depth + 1)?
            }
        })
    }

    /// Uses the field's default when it fits the field's schema, and a
    /// generated value otherwise.
    fn field_value(&self, field: &RecordField, depth: usize) -> Result<Value, String> {
        if let Some(default) = &field.default {
            let resolved = Value::from(default.clone()).resolve(&field.schema);
            if let Ok(value) = resolved {
                return Ok(value);
            }
        }
        self.value(&field.schema, depth + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::formats::avro::{decode, parse_schema};

    const ORDER_SCHEMA: &str = r#"{
        "type": "record", "name": "OrderCreated", "namespace": "shop",
        "fields": [
            {"name": "orderId", "type": "string"},
            {"name": "amount", "type": "long"},
            {"name": "currency", "type": "string", "default": "EUR"},
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
            {"name": "note", "type": ["null", "string"], "default": null},
            {"name": "lines", "type": {"type": "array", "items": {
                "type": "record", "name": "Line",
                "fields": [{"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"}]
            }}},
            {"name": "attributes", "type": {"type": "map", "values": "double"}},
            {"name": "placedAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "checksum", "type": {"type": "fixed", "name": "Checksum", "size": 4}},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
            {"name": "firstLine", "type": "Line"}
        ]
    }"#;

    fn decoded(schema: &str, bytes: &[u8]) -> Value {
        let schema = parse_schema(schema).unwrap();
        assert_eq!(decode(&schema, bytes), Ok(()), "the datum decodes");
        let mut rest = bytes;
        apache_avro::from_avro_datum(&schema, &mut rest, None).unwrap()
    }

    #[test]
    fn record_sample_decodes_with_its_schema() {
        let bytes = datum(ORDER_SCHEMA, OffsetDateTime::UNIX_EPOCH).unwrap();
        let Value::Record(fields) = decoded(ORDER_SCHEMA, &bytes) else {
            panic!("the sample is not a record");
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.clone())
                .unwrap()
        };
        assert_eq!(field("orderId"), Value::String("example".to_owned()));
        assert_eq!(field("currency"), Value::String("EUR".to_owned()));
        assert_eq!(field("status"), Value::Enum(0, "NEW".to_owned()));
        assert_eq!(field("note"), Value::Union(0, Box::new(Value::Null)));
        assert_eq!(field("placedAt"), Value::TimestampMillis(0));
        let Value::Array(lines) = field("lines") else {
            panic!("lines is not an array");
        };
        assert_eq!(lines.len(), 1);
    }

    #[test]
    fn recursive_schema_ends_at_null_branch() {
        let schema = r#"{
            "type": "record", "name": "Node",
            "fields": [
                {"name": "label", "type": "string"},
                {"name": "next", "type": ["Node", "null"]}
            ]
        }"#;
        let bytes = datum(schema, OffsetDateTime::UNIX_EPOCH).unwrap();
        decoded(schema, &bytes);
    }

    #[test]
    fn primitive_schema_has_a_sample() {
        let bytes = datum(r#""long""#, OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(decoded(r#""long""#, &bytes), Value::Long(1));
    }

    #[test]
    fn invalid_schema_is_reported() {
        let error = datum(r#"{"type": "record"}"#, OffsetDateTime::UNIX_EPOCH).unwrap_err();
        assert!(error.contains("Avro schema is invalid"), "{error}");
    }
}
