//! Serialization of a decoded Avro value to JSON, guided by the schema it
//! was decoded with. The schema supplies the branch of each union, the type
//! of each record field and the scale of each decimal.

use apache_avro::schema::{DecimalSchema, NamesRef, RecordSchema};
use apache_avro::types::Value;
use apache_avro::{Decimal, Schema};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use num_bigint::BigInt;
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

/// Decoded value paired with the schema it was decoded with.
pub(super) struct Node<'a> {
    value: &'a Value,
    schema: &'a Schema,
    names: &'a NamesRef<'a>,
}

impl<'a> Node<'a> {
    pub(super) fn new(value: &'a Value, schema: &'a Schema, names: &'a NamesRef<'a>) -> Self {
        Self {
            value,
            schema,
            names,
        }
    }

    fn child(&self, value: &'a Value, schema: &'a Schema) -> Self {
        Self::new(value, schema, self.names)
    }

    /// Returns the schema that a named reference points to, or the node's
    /// own schema when it is not a reference.
    fn resolved_schema(&self) -> Result<&'a Schema, String> {
        match self.schema {
            Schema::Ref { name } => self
                .names
                .get(name)
                .copied()
                .ok_or_else(|| format!("the schema refers to {name}, which it does not define")),
            schema => Ok(schema),
        }
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let schema = self.resolved_schema().map_err(S::Error::custom)?;
        match self.value {
            Value::Null => serializer.serialize_unit(),
            Value::Boolean(value) => serializer.serialize_bool(*value),
            Value::Int(value) => serializer.serialize_i32(*value),
            Value::Long(value) => serializer.serialize_i64(*value),
            Value::Float(value) if value.is_finite() => serializer.serialize_f32(*value),
            Value::Float(value) => serializer.serialize_str(non_finite(f64::from(*value))),
            Value::Double(value) if value.is_finite() => serializer.serialize_f64(*value),
            Value::Double(value) => serializer.serialize_str(non_finite(*value)),
            Value::Bytes(bytes) | Value::Fixed(_, bytes) => {
                serializer.serialize_str(&STANDARD.encode(bytes))
            }
            Value::String(text) => serializer.serialize_str(text),
            Value::Enum(_, symbol) => serializer.serialize_str(symbol),
            Value::Uuid(uuid) => serializer.collect_str(&uuid.hyphenated()),
            Value::Union(index, inner) => {
                let branch = union_branch(schema, *index).map_err(S::Error::custom)?;
                self.child(inner, branch).serialize(serializer)
            }
            Value::Array(items) => self.serialize_array(items, schema, serializer),
            Value::Map(entries) => self.serialize_map(entries, schema, serializer),
            Value::Record(fields) => self.serialize_record(fields, schema, serializer),
            Value::Decimal(decimal) => {
                let text = decimal_text(decimal, schema).map_err(S::Error::custom)?;
                serializer.serialize_str(&text)
            }
            Value::BigDecimal(decimal) => serializer.serialize_str(&decimal.to_plain_string()),
            Value::Date(days) => {
                serializer.serialize_str(&date_text(*days).map_err(S::Error::custom)?)
            }
            Value::TimeMillis(millis) => {
                let nanos = i64::from(*millis) * 1_000_000;
                serializer.serialize_str(&time_of_day_text(nanos, 3).map_err(S::Error::custom)?)
            }
            Value::TimeMicros(micros) => {
                let nanos = micros.saturating_mul(1_000);
                serializer.serialize_str(&time_of_day_text(nanos, 6).map_err(S::Error::custom)?)
            }
            Value::TimestampMillis(millis) => serialize_timestamp(serializer, *millis, 3, true),
            Value::TimestampMicros(micros) => serialize_timestamp(serializer, *micros, 6, true),
            Value::TimestampNanos(nanos) => serialize_timestamp(serializer, *nanos, 9, true),
            Value::LocalTimestampMillis(millis) => {
                serialize_timestamp(serializer, *millis, 3, false)
            }
            Value::LocalTimestampMicros(micros) => {
                serialize_timestamp(serializer, *micros, 6, false)
            }
            Value::LocalTimestampNanos(nanos) => serialize_timestamp(serializer, *nanos, 9, false),
            Value::Duration(duration) => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("months", &u32::from(duration.months()))?;
                map.serialize_entry("days", &u32::from(duration.days()))?;
                map.serialize_entry("milliseconds", &u32::from(duration.millis()))?;
                map.end()
            }
        }
    }
}

impl<'a> Node<'a> {
    fn serialize_array<S: Serializer>(
        &self,
        items: &'a [Value],
        schema: &'a Schema,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let Schema::Array(array) = schema else {
            return Err(S::Error::custom(mismatch("array", schema)));
        };
        let mut sequence = serializer.serialize_seq(Some(items.len()))?;
        for item in items {
            sequence.serialize_element(&self.child(item, &array.items))?;
        }
        sequence.end()
    }

    /// Writes map entries with their keys sorted, because Avro maps have
    /// no order and the output must not depend on hashing.
    fn serialize_map<S: Serializer>(
        &self,
        entries: &'a std::collections::HashMap<String, Value>,
        schema: &'a Schema,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let Schema::Map(map_schema) = schema else {
            return Err(S::Error::custom(mismatch("map", schema)));
        };
        let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
        sorted.sort_unstable_by(|left, right| left.0.cmp(right.0));
        let mut map = serializer.serialize_map(Some(sorted.len()))?;
        for (key, value) in sorted {
            map.serialize_entry(key, &self.child(value, &map_schema.types))?;
        }
        map.end()
    }

    fn serialize_record<S: Serializer>(
        &self,
        fields: &'a [(String, Value)],
        schema: &'a Schema,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let Schema::Record(record) = schema else {
            return Err(S::Error::custom(mismatch("record", schema)));
        };
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (name, value) in fields {
            let field_schema = field_schema(record, name).map_err(S::Error::custom)?;
            map.serialize_entry(name, &self.child(value, field_schema))?;
        }
        map.end()
    }
}

fn field_schema<'a>(record: &'a RecordSchema, name: &str) -> Result<&'a Schema, String> {
    record
        .lookup
        .get(name)
        .and_then(|&index| record.fields.get(index))
        .map(|field| &field.schema)
        .ok_or_else(|| format!("record {} has no field {name:?}", record.name))
}

fn union_branch(schema: &Schema, index: u32) -> Result<&Schema, String> {
    let Schema::Union(union) = schema else {
        return Err(mismatch("union", schema));
    };
    usize::try_from(index)
        .ok()
        .and_then(|index| union.variants().get(index))
        .ok_or_else(|| format!("union branch {index} does not exist in the schema"))
}

fn mismatch(value_kind: &str, schema: &Schema) -> String {
    format!(
        "a decoded {value_kind} value does not match its schema {}",
        schema.canonical_form()
    )
}

fn non_finite(value: f64) -> &'static str {
    if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Formats the unscaled integer of a decimal with the decimal point
/// `scale` digits from the right.
fn decimal_text(decimal: &Decimal, schema: &Schema) -> Result<String, String> {
    let Schema::Decimal(DecimalSchema { scale, .. }) = schema else {
        return Err(mismatch("decimal", schema));
    };
    let unscaled = BigInt::from(decimal.clone());
    let negative = unscaled.sign() == num_bigint::Sign::Minus;
    let digits = unscaled.magnitude().to_string();
    let mut text = String::with_capacity(digits.len() + scale + 3);
    if negative {
        text.push('-');
    }
    if *scale == 0 {
        text.push_str(&digits);
        return Ok(text);
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    text.push_str(whole);
    text.push('.');
    text.push_str(fraction);
    Ok(text)
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD`, failing outside the
/// years 0000 to 9999.
fn date_text(days: i32) -> Result<String, String> {
    let date = OffsetDateTime::UNIX_EPOCH
        .date()
        .checked_add(time::Duration::days(i64::from(days)))
        .filter(|date| (0..=9999).contains(&date.year()))
        .ok_or_else(|| {
            format!("date {days} (days since 1970-01-01) is outside the years 0000 to 9999")
        })?;
    Ok(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// Formats nanoseconds after midnight as `HH:MM:SS` with `digits` fraction
/// digits, failing outside one day.
fn time_of_day_text(nanos: i64, digits: u32) -> Result<String, String> {
    const DAY: i64 = 86_400 * 1_000_000_000;
    if !(0..DAY).contains(&nanos) {
        return Err(format!(
            "time of day {nanos} ns is outside 00:00:00 to 23:59:59.999999999"
        ));
    }
    let seconds = nanos / 1_000_000_000;
    let fraction = nanos % 1_000_000_000 / 10_i64.pow(9 - digits);
    Ok(format!(
        "{:02}:{:02}:{:02}.{fraction:0width$}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        width = digits as usize
    ))
}

/// Writes `since_epoch`, a count of milliseconds, microseconds or
/// nanoseconds (`digits` 3, 6 or 9) since the Unix epoch, in RFC 3339 form.
/// A UTC timestamp ends with `Z`, and a local timestamp has no offset.
fn serialize_timestamp<S: Serializer>(
    serializer: S,
    since_epoch: i64,
    digits: u32,
    utc: bool,
) -> Result<S::Ok, S::Error> {
    let text = timestamp_text(since_epoch, digits, utc).map_err(S::Error::custom)?;
    serializer.serialize_str(&text)
}

fn timestamp_text(since_epoch: i64, digits: u32, utc: bool) -> Result<String, String> {
    let nanos = i128::from(since_epoch) * 10_i128.pow(9 - digits);
    let out_of_range = || format!("timestamp {since_epoch} is outside the years 0000 to 9999");
    let datetime = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| out_of_range())?;
    if !(0..=9999).contains(&datetime.year()) {
        return Err(out_of_range());
    }
    let fraction = datetime.nanosecond() / 10_u32.pow(9 - digits);
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{fraction:0width$}{zone}",
        datetime.year(),
        u8::from(datetime.month()),
        datetime.day(),
        datetime.hour(),
        datetime.minute(),
        datetime.second(),
        width = digits as usize,
        zone = if utc { "Z" } else { "" },
    ))
}
