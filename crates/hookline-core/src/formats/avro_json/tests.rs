use super::*;
use apache_avro::types::Value;
use apache_avro::{Decimal, Uuid};
use std::collections::HashMap;

const ORDER_SCHEMA: &str = r#"{
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {"name": "coupon", "type": ["null", "string"], "default": null},
        {"name": "note", "type": ["null", "string"], "default": null},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attributes", "type": {"type": "map", "values": "long"}},
        {"name": "signature", "type": "bytes"},
        {"name": "checksum", "type": {"type": "fixed", "name": "Checksum", "size": 4}},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "request_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "ship_on", "type": {"type": "int", "logicalType": "date"}},
        {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [{"name": "name", "type": "string"}]}},
        {"name": "referrer", "type": ["null", "Customer"], "default": null},
        {"name": "ratio", "type": "double"}
    ]
}"#;

const REQUEST_ID: &str = "4b3e8f0a-2c1d-4e5f-8a9b-0c1d2e3f4a5b";

fn order_value() -> Value {
    let attributes = HashMap::from([
        ("zeta".to_owned(), Value::Long(2)),
        ("alpha".to_owned(), Value::Long(1)),
    ]);
    let customer = |name: &str| Value::Record(vec![("name".into(), Value::String(name.into()))]);
    Value::Record(vec![
        ("id".into(), Value::String("A-1".into())),
        ("quantity".into(), Value::Int(3)),
        ("total".into(), Value::Decimal(Decimal::from([0x30, 0x39]))),
        ("status".into(), Value::Enum(1, "PAID".into())),
        (
            "coupon".into(),
            Value::Union(1, Box::new(Value::String("SPRING".into()))),
        ),
        ("note".into(), Value::Union(0, Box::new(Value::Null))),
        (
            "tags".into(),
            Value::Array(vec![
                Value::String("gift".into()),
                Value::String("express".into()),
            ]),
        ),
        ("attributes".into(), Value::Map(attributes)),
        ("signature".into(), Value::Bytes(vec![1, 2, 3, 255])),
        (
            "checksum".into(),
            Value::Fixed(4, vec![0xde, 0xad, 0xbe, 0xef]),
        ),
        (
            "placed_at".into(),
            Value::TimestampMillis(1_714_566_600_250),
        ),
        (
            "request_id".into(),
            Value::Uuid(Uuid::parse_str(REQUEST_ID).unwrap()),
        ),
        ("ship_on".into(), Value::Date(19_846)),
        ("customer".into(), customer("Ada")),
        (
            "referrer".into(),
            Value::Union(1, Box::new(customer("Bob"))),
        ),
        ("ratio".into(), Value::Double(0.5)),
    ])
}

fn encode(schema: &str, value: Value) -> (Schema, Vec<u8>) {
    let schema = Schema::parse_str(schema).unwrap();
    let datum = apache_avro::to_avro_datum(&schema, value).unwrap();
    (schema, datum)
}

fn convert(schema: &str, value: Value) -> Result<String, ConversionError> {
    let (schema, datum) = encode(schema, value);
    datum_to_json(&schema, &datum).map(|json| String::from_utf8(json.to_vec()).unwrap())
}

#[test]
fn record_converts_field_by_field() {
    let json = convert(ORDER_SCHEMA, order_value()).unwrap();
    let expected = concat!(
        r#"{"id":"A-1","quantity":3,"total":"123.45","status":"PAID","#,
        r#""coupon":"SPRING","note":null,"tags":["gift","express"],"#,
        r#""attributes":{"alpha":1,"zeta":2},"signature":"AQID/w==","checksum":"3q2+7w==","#,
        r#""placed_at":"2024-05-01T12:30:00.250Z","#,
        r#""request_id":"4b3e8f0a-2c1d-4e5f-8a9b-0c1d2e3f4a5b","ship_on":"2024-05-03","#,
        r#""customer":{"name":"Ada"},"referrer":{"name":"Bob"},"ratio":0.5}"#
    );
    assert_eq!(json, expected);
}

#[test]
fn conversion_is_deterministic() {
    let first = convert(ORDER_SCHEMA, order_value()).unwrap();
    // Each conversion decodes the map into a new HashMap with its own random
    // hash seed, so keys written in hash order would differ between runs.
    for _ in 0..20 {
        assert_eq!(convert(ORDER_SCHEMA, order_value()).unwrap(), first);
    }
}

#[test]
fn non_finite_floats_become_strings() {
    assert_eq!(
        convert(r#""double""#, Value::Double(f64::NAN)).unwrap(),
        r#""NaN""#
    );
    assert_eq!(
        convert(r#""double""#, Value::Double(f64::NEG_INFINITY)).unwrap(),
        r#""-Infinity""#
    );
    assert_eq!(
        convert(r#""float""#, Value::Float(f32::INFINITY)).unwrap(),
        r#""Infinity""#
    );
    assert_eq!(convert(r#""float""#, Value::Float(0.1)).unwrap(), "0.1");
}

#[test]
fn logical_types_keep_their_precision() {
    let cases = [
        (
            r#"{"type": "long", "logicalType": "timestamp-micros"}"#,
            Value::TimestampMicros(-1),
            r#""1969-12-31T23:59:59.999999Z""#,
        ),
        (
            r#"{"type": "long", "logicalType": "timestamp-nanos"}"#,
            Value::TimestampNanos(1_000_000_001),
            r#""1970-01-01T00:00:01.000000001Z""#,
        ),
        (
            r#"{"type": "long", "logicalType": "local-timestamp-millis"}"#,
            Value::LocalTimestampMillis(0),
            r#""1970-01-01T00:00:00.000""#,
        ),
        (
            r#"{"type": "int", "logicalType": "time-millis"}"#,
            Value::TimeMillis(45_296_789),
            r#""12:34:56.789""#,
        ),
        (
            r#"{"type": "long", "logicalType": "time-micros"}"#,
            Value::TimeMicros(1),
            r#""00:00:00.000001""#,
        ),
        (
            r#"{"type": "fixed", "name": "Money", "size": 3, "logicalType": "decimal", "precision": 6, "scale": 3}"#,
            Value::Decimal(Decimal::from([0xff, 0xff, 0xfb])),
            r#""-0.005""#,
        ),
        (
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 0}"#,
            Value::Decimal(Decimal::from([0x04, 0xd2])),
            r#""1234""#,
        ),
        (
            r#"{"type": "fixed", "name": "Span", "size": 12, "logicalType": "duration"}"#,
            Value::Duration(apache_avro::Duration::new(
                apache_avro::Months::new(1),
                apache_avro::Days::new(2),
                apache_avro::Millis::new(3),
            )),
            r#"{"months":1,"days":2,"milliseconds":3}"#,
        ),
    ];
    for (schema, value, expected) in cases {
        assert_eq!(convert(schema, value).unwrap(), expected, "{schema}");
    }
}

#[test]
fn timestamp_past_year_9999_fails() {
    let schema = r#"{"type": "long", "logicalType": "timestamp-millis"}"#;
    let error = convert(schema, Value::TimestampMillis(i64::MAX)).unwrap_err();
    assert!(
        error.0.contains("outside the years 0000 to 9999"),
        "{error}"
    );
}

#[test]
fn invalid_datum_fails() {
    let schema = Schema::parse_str(ORDER_SCHEMA).unwrap();
    let error = datum_to_json(&schema, &[0x02]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot convert the Avro payload to JSON"),
        "{error}"
    );
}
