//! Sample payloads of a product, for test events and the catalogue: made
//! from the product's JSON Schema or Avro schema when it has one, or a small
//! generic document in the product's format. Avro products need a schema.

use hookline_core::{ContentType, Product};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Maximum nesting depth of followed schemas; deeper ones become `null`.
const MAX_DEPTH: usize = 8;

/// Reason that no sample can be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SampleError {
    #[error("this Avro product has no schema, so no test event can be built; send one with the ingest API instead")]
    AvroWithoutSchema,
    #[error("no test event can be built: {0}")]
    Avro(String),
}

/// Returns a sample payload for `product`, sent at `now`.
pub(crate) fn payload(product: &Product, now: OffsetDateTime) -> Result<Vec<u8>, SampleError> {
    let sent_at = now.format(&Rfc3339).unwrap_or_default();
    match product.content_type {
        ContentType::Json => {
            let value = match product.schema.as_deref().map(serde_json::from_str::<Value>) {
                Some(Ok(schema)) => from_schema(&schema, &schema, &sent_at, 0),
                _ => generic_json(product, &sent_at),
            };
            Ok(serde_json::to_vec_pretty(&value).unwrap_or_default())
        }
        ContentType::Xml => Ok(generic_xml(product, &sent_at).into_bytes()),
        // NOTE: the sample is a raw datum. A deployment that validates Avro
        // against a schema registry expects the registry's header, which a
        // test event does not carry.
        ContentType::Avro => {
            let schema = product
                .schema
                .as_deref()
                .ok_or(SampleError::AvroWithoutSchema)?;
            crate::sample_avro::datum(schema, now).map_err(SampleError::Avro)
        }
    }
}

fn generic_json(product: &Product, sent_at: &str) -> Value {
    json!({
        "type": "hookline.test",
        "product": product.name,
        "sent_at": sent_at,
        "message": "A test event sent from the developer portal."
    })
}

fn generic_xml(product: &Product, sent_at: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<test-event product=\"{}\" sent-at=\"{}\">A test event sent from the developer portal.</test-event>\n",
        escape_xml(&product.name),
        escape_xml(sent_at)
    )
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Builds a value that matches `schema`: `const`, `examples`, `default`
/// and `enum` win; otherwise a value of the declared type, with every
/// property of an object and `minItems` items of an array.
fn from_schema(schema: &Value, root: &Value, sent_at: &str, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let Some(object) = schema.as_object() else {
        return Value::Null;
    };
    if let Some(target) = object.get("$ref").and_then(Value::as_str) {
        return resolve_local(root, target)
            .map(|resolved| from_schema(resolved, root, sent_at, depth + 1))
            .unwrap_or(Value::Null);
    }
    if let Some(value) = object.get("const") {
        return value.clone();
    }
    if let Some(first) = object
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|examples| examples.first())
    {
        return first.clone();
    }
    if let Some(value) = object.get("default") {
        return value.clone();
    }
    if let Some(first) = object
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|values| values.first())
    {
        return first.clone();
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = object
            .get(combinator)
            .and_then(Value::as_array)
            .and_then(|options| options.first())
        {
            return from_schema(first, root, sent_at, depth + 1);
        }
    }
    match declared_type(object).as_deref() {
        Some("object") => object_sample(object, root, sent_at, depth),
        Some("array") => array_sample(object, root, sent_at, depth),
        Some("string") => string_sample(object, sent_at),
        Some("integer") => number_sample(object, true),
        Some("number") => number_sample(object, false),
        Some("boolean") => Value::Bool(true),
        Some("null") => Value::Null,
        _ if object.contains_key("properties") => object_sample(object, root, sent_at, depth),
        _ => Value::Null,
    }
}

/// Returns the schema's `type`, taking the first non-null entry of a type list.
fn declared_type(object: &Map<String, Value>) -> Option<String> {
    match object.get("type")? {
        Value::String(name) => Some(name.clone()),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|name| *name != "null")
            .map(str::to_owned),
        _ => None,
    }
}

/// Follows a `#/...` JSON pointer inside the schema document.
fn resolve_local<'a>(root: &'a Value, target: &str) -> Option<&'a Value> {
    root.pointer(target.strip_prefix('#')?)
}

fn object_sample(object: &Map<String, Value>, root: &Value, sent_at: &str, depth: usize) -> Value {
    let mut sample = Map::new();
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            sample.insert(
                name.clone(),
                from_schema(property, root, sent_at, depth + 1),
            );
        }
    }
    Value::Object(sample)
}

fn array_sample(object: &Map<String, Value>, root: &Value, sent_at: &str, depth: usize) -> Value {
    let count = object
        .get("minItems")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 3);
    let item = object
        .get("items")
        .map(|items| from_schema(items, root, sent_at, depth + 1))
        .unwrap_or(Value::Null);
    Value::Array(vec![item; count as usize])
}

fn string_sample(object: &Map<String, Value>, sent_at: &str) -> Value {
    let text = match object.get("format").and_then(Value::as_str) {
        Some("date-time") => sent_at.to_owned(),
        Some("date") => sent_at.get(..10).unwrap_or("2025-01-01").to_owned(),
        Some("time") => sent_at
            .get(11..19)
            .map_or("12:00:00Z".to_owned(), |t| format!("{t}Z")),
        Some("email") => "consumer@example.com".to_owned(),
        Some("uri" | "url" | "iri") => "https://example.com/".to_owned(),
        Some("uuid") => "0b6e1f3c-5a7d-4e2b-9c1f-8d3a2b4c5e6f".to_owned(),
        Some("hostname") => "example.com".to_owned(),
        Some("ipv4") => "192.0.2.1".to_owned(),
        Some("ipv6") => "2001:db8::1".to_owned(),
        _ => "example".to_owned(),
    };
    let min = object.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = object
        .get("maxLength")
        .and_then(Value::as_u64)
        .map(|max| max as usize);
    let mut text = text;
    while text.chars().count() < min {
        text.push('x');
    }
    if let Some(max) = max {
        text = text.chars().take(max).collect();
    }
    Value::String(text)
}

fn number_sample(object: &Map<String, Value>, integer: bool) -> Value {
    let minimum = object.get("minimum").and_then(Value::as_f64).or_else(|| {
        object
            .get("exclusiveMinimum")
            .and_then(Value::as_f64)
            .map(|m| m + 1.0)
    });
    let maximum = object.get("maximum").and_then(Value::as_f64);
    let mut value = minimum.unwrap_or(1.0).max(1.0);
    if let Some(maximum) = maximum {
        value = value.min(maximum);
    }
    if integer {
        json!(value.ceil() as i64)
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::formats::CompiledSchema;
    use hookline_core::ContentType;

    fn product(content_type: ContentType, schema: Option<&str>) -> Product {
        Product {
            name: "order-created".into(),
            topic: "order-created-event".into(),
            content_type,
            schema: schema.map(str::to_owned),
            validate: true,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn schema_sample_fills_every_property() {
        let schema = r##"{
            "type": "object",
            "required": ["id", "total", "items", "at"],
            "properties": {
                "id": {"type": "string", "minLength": 10},
                "total": {"type": "number", "minimum": 0},
                "count": {"type": "integer", "minimum": 3},
                "status": {"enum": ["new", "paid"]},
                "at": {"type": "string", "format": "date-time"},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
            },
            "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string"}}}}
        }"##;
        let bytes = payload(
            &product(ContentType::Json, Some(schema)),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["id"].as_str().unwrap().len(), 10);
        assert_eq!(value["count"], json!(3));
        assert_eq!(value["status"], json!("new"));
        assert_eq!(value["at"], json!("1970-01-01T00:00:00Z"));
        assert_eq!(value["items"][0]["sku"], json!("example"));
    }

    #[test]
    fn xml_sample_is_well_formed() {
        let bytes = payload(&product(ContentType::Xml, None), OffsetDateTime::UNIX_EPOCH).unwrap();
        assert!(ContentType::Xml.check_payload(&bytes).is_ok());
    }

    #[test]
    fn json_sample_without_schema_is_json() {
        let bytes = payload(
            &product(ContentType::Json, None),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        assert!(ContentType::Json.check_payload(&bytes).is_ok());
    }

    #[test]
    fn avro_sample_without_schema_is_rejected() {
        let result = payload(
            &product(ContentType::Avro, None),
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(result, Err(SampleError::AvroWithoutSchema));
    }

    #[test]
    fn avro_sample_decodes_with_product_schema() {
        let schema =
            r#"{"type": "record", "name": "Ping", "fields": [{"name": "id", "type": "string"}]}"#;
        let bytes = payload(
            &product(ContentType::Avro, Some(schema)),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        let compiled = CompiledSchema::compile(ContentType::Avro, schema).unwrap();
        assert!(compiled.check(&bytes).is_ok());
    }
}
