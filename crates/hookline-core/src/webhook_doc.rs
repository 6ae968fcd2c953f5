//! The OpenAPI 3.1 description of the webhook that one product delivers:
//! the request a consumer's endpoint receives (payload schema, signature
//! headers), how to verify it, which responses count as success, and the
//! retry schedule. The developer portal shows it to API consumers.

use crate::content::ContentType;
use crate::ids::WebhookId;
use crate::model::Product;
use crate::retry::RetryPolicy;
use crate::signing::SigningSecret;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Header with the schema-registry id of an Avro payload. It has the same
/// value as the header that the egress sends (`hookline_delivery::SCHEMA_ID_HEADER`).
pub const SCHEMA_ID_HEADER: &str = "webhook-schema-id";

/// Maximum distance of `webhook-timestamp` from the consumer's clock that
/// the document advises consumers to accept, in seconds (the Standard
/// Webhooks recommendation).
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// JSON Schema dialect of OpenAPI 3.1 Schema Objects without a `$schema`.
const DIALECT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Idempotency key of the example `webhook-id` in the document.
const EXAMPLE_IDEMPOTENCY_KEY: &str = "order-1001";

/// `webhook-timestamp` of the example request in the document.
const EXAMPLE_TIMESTAMP: i64 = 1_691_797_320;

/// Builds the OpenAPI 3.1.0 document of `product`'s webhook. The document has
/// one entry under `webhooks`, named after the product, whose `POST`
/// operation describes a delivery, and an empty `paths`.
///
/// The operation carries the retry schedule of `retry` twice: as text in its
/// description and as numbers in the `x-hookline-retry-schedule` extension.
pub fn webhook_document(product: &Product, retry: &RetryPolicy) -> Value {
    let payload = payload_description(product);
    let operation = json!({
        "operationId": format!("{}-webhook", component_name(&product.name)),
        "summary": format!("`{}` event", product.name),
        "description": operation_description(product, retry),
        "parameters": header_parameters(product),
        "requestBody": {
            "description": payload.description,
            "required": true,
            "content": {
                product.content_type.media_type(): {"schema": payload.schema},
            },
        },
        "responses": responses(),
        "x-hookline-retry-schedule": retry_schedule(retry),
    });

    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("{} webhook", product.name),
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Webhook requests that Hookline sends to the endpoint of every application \
                 subscribed to the `{}` event API.",
                product.name
            ),
        },
        "paths": {},
        "webhooks": {
            product.name.clone(): {"post": operation},
        },
    });
    if let Some((name, schema)) = payload.component {
        document["components"] = json!({"schemas": {name: schema}});
    }
    document
}

/// The request body of a delivery: its description, its Schema Object and,
/// for a JSON product with a schema, the component that contains that schema.
struct PayloadDescription {
    description: String,
    schema: Value,
    component: Option<(String, Value)>,
}

fn payload_description(product: &Product) -> PayloadDescription {
    let mut description = format!(
        "The event exactly as the producer sent it: Hookline delivers the payload byte for \
         byte, and the signature covers these bytes. `content-type` is `{}`.",
        product.content_type.media_type()
    );
    match product.content_type {
        ContentType::Json => json_payload(product, description),
        ContentType::Xml => {
            description.push_str(
                " The body is one well-formed UTF-8 XML document without a `<!DOCTYPE>` \
                 declaration.",
            );
            push_schema_text(&mut description, "XML", product);
            PayloadDescription {
                description,
                schema: json!({"type": "string", "contentMediaType": "application/xml"}),
                component: None,
            }
        }
        ContentType::Avro => {
            let mut schema = json!({"type": "string", "contentMediaType": "application/avro"});
            if product.schema.is_some() {
                description.push_str(
                    " The body is a raw Avro datum (binary encoding) of the schema below.",
                );
            } else {
                description.push_str(&format!(
                    " The body is in the schema-registry wire format: byte 0, the schema id as \
                     4 bytes big-endian, then the Avro datum. The `{SCHEMA_ID_HEADER}` header \
                     repeats the schema id."
                ));
            }
            push_schema_text(&mut description, "Avro", product);
            // An Avro schema is JSON, so tools can also read it from the extension.
            let parsed = product
                .schema
                .as_deref()
                .and_then(|text| serde_json::from_str::<Value>(text).ok());
            if let Some(avro_schema) = parsed {
                schema["x-avro-schema"] = avro_schema;
            }
            PayloadDescription {
                description,
                schema,
                component: None,
            }
        }
    }
}

fn json_payload(product: &Product, mut description: String) -> PayloadDescription {
    let Some(text) = product.schema.as_deref() else {
        description.push_str(" The product declares no schema, so the body is any JSON value.");
        return PayloadDescription {
            description,
            schema: json!({}),
            component: None,
        };
    };
    let parsed = serde_json::from_str::<Value>(text)
        .ok()
        .filter(|value| value.is_object() || value.is_boolean());
    let Some(mut schema) = parsed else {
        // The API rejects schemas that do not compile, so only a product
        // stored by other means gets here. Its text is shown as given.
        description.push_str(" The product's schema is not a JSON Schema object:");
        description.push_str(&format!("\n\n```\n{text}\n```"));
        return PayloadDescription {
            description,
            schema: json!({}),
            component: None,
        };
    };

    if product.validate {
        description.push_str(" Hookline validates every payload against this schema on ingest.");
    } else {
        description.push_str(
            " The schema documents the payload, but Hookline does not validate payloads against \
             it on ingest.",
        );
    }
    // OpenAPI 3.1 reads a root Schema Object's `$schema` as its dialect, so a
    // schema written for another draft keeps it and stays correct.
    let dialect = schema.get("$schema").and_then(Value::as_str);
    if let Some(dialect) = dialect.filter(|uri| !is_2020_12(uri)) {
        description.push_str(&format!(
            " The schema is written in the JSON Schema dialect `{dialect}`."
        ));
    }

    let name = component_name(&product.name);
    let pointer = format!("#/components/schemas/{name}");
    let id_keyword = id_keyword(dialect);
    // `#/...` references inside the schema point into the schema itself, so
    // they are rebased to the schema's place in this document.
    rebase_local_refs(&mut schema, &pointer, id_keyword);
    PayloadDescription {
        description,
        schema: json!({"$ref": pointer}),
        component: Some((name, schema)),
    }
}

/// Appends the product's schema text, as given, in a fenced block.
fn push_schema_text(description: &mut String, format: &str, product: &Product) {
    if let Some(text) = &product.schema {
        description.push_str(&format!("\n\n{format} schema:\n\n```\n{text}\n```"));
    }
}

fn is_2020_12(uri: &str) -> bool {
    uri.trim_end_matches('#') == DIALECT_2020_12
}

/// Returns the keyword that sets a schema's base URI: `id` up to draft 4,
/// `$id` since draft 6.
fn id_keyword(dialect: Option<&str>) -> &'static str {
    let old_draft = dialect.is_some_and(|uri| uri.contains("draft-04") || uri.contains("draft-03"));
    if old_draft {
        "id"
    } else {
        "$id"
    }
}

/// Returns `name` with every character outside `[A-Za-z0-9._-]` replaced by
/// `_`, as OpenAPI requires of component names.
fn component_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "payload".to_owned()
    } else {
        cleaned
    }
}

/// Rewrites every `$ref` of the form `#` or `#/pointer` in `schema` to
/// `{prefix}` or `{prefix}/pointer`.
///
/// A subschema with its own base URI (`$id`, or `id` before draft 6) is left
/// alone, because its references resolve against that URI and not against
/// the enclosing document. Plain-name fragments (`#name`) are left alone too,
/// because anchors are found wherever the schema sits. Keywords whose values
/// are instances (`enum`, `const`, `default`, `examples`) are not searched.
fn rebase_local_refs(schema: &mut Value, prefix: &str, id_keyword: &str) {
    match schema {
        Value::Object(map) => rebase_in_object(map, prefix, id_keyword),
        Value::Array(items) => {
            for item in items {
                rebase_local_refs(item, prefix, id_keyword);
            }
        }
        _ => {}
    }
}

fn rebase_in_object(map: &mut Map<String, Value>, prefix: &str, id_keyword: &str) {
    let own_base = map
        .get(id_keyword)
        .and_then(Value::as_str)
        .is_some_and(|id| !id.starts_with('#'));
    if own_base {
        return;
    }
    for (keyword, value) in map.iter_mut() {
        match keyword.as_str() {
            "$ref" => {
                if let Value::String(reference) = value {
                    if reference == "#" || reference.starts_with("#/") {
                        *reference = format!("{prefix}{}", &reference[1..]);
                    }
                }
            }
            "enum" | "const" | "default" | "examples" | "example" => {}
            // Their values are maps from names to subschemas, and a name may
            // equal a keyword such as `enum`.
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas"
            | "dependencies" => {
                if let Value::Object(subschemas) = value {
                    for subschema in subschemas.values_mut() {
                        rebase_local_refs(subschema, prefix, id_keyword);
                    }
                }
            }
            _ => rebase_local_refs(value, prefix, id_keyword),
        }
    }
}

/// Header Parameter Objects of a delivery. `content-type` is left out,
/// because OpenAPI ignores a header parameter of that name: the request body
/// states it.
fn header_parameters(product: &Product) -> Value {
    let example_id = WebhookId::derive(&product.name, EXAMPLE_IDEMPOTENCY_KEY);
    // A real signature of the example id and timestamp over an empty body,
    // keyed with 32 zero bytes, so the example has the exact shape.
    let example_signature =
        SigningSecret::from_raw_key(&[0; 32]).sign(example_id.as_str(), EXAMPLE_TIMESTAMP, b"");
    let mut parameters = vec![
        json!({
            "name": "webhook-id",
            "in": "header",
            "required": true,
            "description": "Unique id of the message: `msg_` and 32 hex digits, derived from \
                the product and the idempotency key. Every retry of a delivery carries the \
                same id, so it serves to drop duplicates.",
            "schema": {"type": "string", "pattern": "^msg_[0-9a-f]{32}$"},
            "example": example_id.as_str(),
        }),
        json!({
            "name": "webhook-timestamp",
            "in": "header",
            "required": true,
            "description": format!(
                "Time of this attempt in Unix seconds. It changes on every retry. Reject a \
                 request whose timestamp is more than {TIMESTAMP_TOLERANCE_SECS} seconds away \
                 from your clock, so a captured request cannot be replayed later."
            ),
            "schema": {"type": "integer", "minimum": 0},
            "example": EXAMPLE_TIMESTAMP,
        }),
        json!({
            "name": "webhook-signature",
            "in": "header",
            "required": true,
            "description": "Standard Webhooks signatures, space-separated: `v1,` and the \
                base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`, keyed with \
                the base64-decoded part of the application's `whsec_` secret. While a secret \
                is being rotated, the request carries one signature per active secret. Accept \
                the request when any `v1` signature matches, and ignore signatures of other \
                versions.",
            "schema": {
                "type": "string",
                "pattern": "^v1,[A-Za-z0-9+/]+={0,2}( v1,[A-Za-z0-9+/]+={0,2})*$",
            },
            "example": example_signature,
        }),
        json!({
            "name": "idempotency-key",
            "in": "header",
            "required": true,
            "description": "The producer's idempotency key of the event: the HTTP \
                `Idempotency-Key` of the ingest request, or the event's Kafka header, or \
                `topic/partition/offset` for a Kafka record without one. Use it to process \
                each event once.",
            "schema": {"type": "string", "minLength": 1},
            "example": EXAMPLE_IDEMPOTENCY_KEY,
        }),
    ];
    if product.content_type == ContentType::Avro {
        parameters.push(json!({
            "name": SCHEMA_ID_HEADER,
            "in": "header",
            "required": false,
            "description": "Schema-registry id of the Avro schema of the body, in decimal. It \
                is sent when the body starts with the schema-registry wire-format header \
                (byte 0 and a 4-byte big-endian id), which is always the case for a product \
                without its own schema.",
            "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
            "example": 42,
        }));
    }
    Value::Array(parameters)
}

fn responses() -> Value {
    json!({
        "2XX": {
            "description": "Any 2xx status acknowledges the delivery and ends its retries. \
                The response body is not interpreted. Delivery is at least once, so a rare \
                repeat can still arrive, with the same `webhook-id`.",
        },
        "410": {
            "description": "Gone: Hookline disables the application at once. Its deliveries \
                are kept, but not sent, until the application is enabled again.",
        },
        "default": {
            "description": "Any other status is a failed attempt, and so is a timeout or a \
                connection error. Redirects (3xx) are not followed. A failed attempt is \
                retried on the schedule in the operation's description. On a 429 or 503, a \
                `Retry-After` header in seconds is honoured when it is longer than the \
                scheduled wait.",
        },
    })
}

fn operation_description(product: &Product, retry: &RetryPolicy) -> String {
    format!(
        "Hookline sends a `POST` request to the application's HTTPS URL for every `{name}` \
         event.\n\n\
         ## Verifying a request\n\n\
         1. Take the bytes after `whsec_` in your signing secret and base64-decode them: \
         that is the HMAC key.\n\
         2. Reject the request when `webhook-timestamp` is more than \
         {TIMESTAMP_TOLERANCE_SECS} seconds away from your clock.\n\
         3. Compute HMAC-SHA256 over `{{webhook-id}}.{{webhook-timestamp}}.{{body}}`, with \
         the raw body bytes before any parsing, and base64-encode it.\n\
         4. Split `webhook-signature` at spaces. Accept the request when any entry `v1,<sig>` \
         has a `<sig>` equal to yours, comparing in constant time.\n\n\
         Any Standard Webhooks library performs these steps.\n\n\
         ## Responses and retries\n\n\
         Respond with a 2xx status once the event is stored. {retries}",
        name = product.name,
        retries = retry_text(retry),
    )
}

/// Describes the retry schedule in a sentence or two.
fn retry_text(retry: &RetryPolicy) -> String {
    if retry.max_retries == 0 {
        return "A failed attempt is not retried: the delivery goes to the dead-letter list at \
                once."
            .to_owned();
    }
    let waits: Vec<String> = (1..=retry.max_retries)
        .map(|n| format_duration(retry.wait(n)))
        .collect();
    format!(
        "The first attempt is immediate. After a failed attempt Hookline retries up to {} \
         times, waiting {} before the successive retries ({} from the first attempt to the \
         last). A delivery whose last retry fails goes to the dead-letter list, from which \
         the provider can send it again.",
        retry.max_retries,
        waits.join(", "),
        format_duration(retry.total_span()),
    )
}

/// Returns the retry schedule as numbers, with each wait in seconds.
fn retry_schedule(retry: &RetryPolicy) -> Value {
    let waits: Vec<Value> = (1..=retry.max_retries)
        .map(|n| seconds(retry.wait(n)))
        .collect();
    json!({
        "maxRetries": retry.max_retries,
        "retryWaitsSeconds": waits,
        "totalSeconds": seconds(retry.total_span()),
    })
}

/// Returns a duration in seconds: an integer when whole, else a fraction.
fn seconds(duration: Duration) -> Value {
    if duration.subsec_nanos() == 0 {
        json!(duration.as_secs())
    } else {
        json!(duration.as_secs_f64())
    }
}

/// Formats a duration as `61 s` when whole seconds, else as `250 ms` or `1.5 s`.
fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    const ORDER_SCHEMA: &str = include_str!("../../../fixtures/order-created.schema.json");

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

    fn operation(document: &Value) -> &Value {
        &document["webhooks"]["order-created"]["post"]
    }

    fn header<'a>(document: &'a Value, name: &str) -> Option<&'a Value> {
        operation(document)["parameters"]
            .as_array()
            .expect("parameters array")
            .iter()
            .find(|parameter| parameter["name"] == name)
    }

    #[test]
    fn order_created_document_has_top_level_fields() {
        let document = webhook_document(
            &product(ContentType::Json, Some(ORDER_SCHEMA)),
            &RetryPolicy::default(),
        );
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["title"], "order-created webhook");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(document["paths"], json!({}));
        assert!(operation(&document).is_object());
    }

    #[test]
    fn order_created_document_embeds_schema() {
        let document = webhook_document(
            &product(ContentType::Json, Some(ORDER_SCHEMA)),
            &RetryPolicy::default(),
        );
        let content = &operation(&document)["requestBody"]["content"];
        assert_eq!(
            content["application/json"]["schema"],
            json!({"$ref": "#/components/schemas/order-created"})
        );
        let fixture: Value = serde_json::from_str(ORDER_SCHEMA).unwrap();
        assert_eq!(document["components"]["schemas"]["order-created"], fixture);
        assert_eq!(operation(&document)["requestBody"]["required"], true);
    }

    #[test]
    fn order_created_document_lists_headers() {
        let document = webhook_document(
            &product(ContentType::Json, Some(ORDER_SCHEMA)),
            &RetryPolicy::default(),
        );
        for name in [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "idempotency-key",
        ] {
            let parameter = header(&document, name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(parameter["in"], "header", "{name}");
            assert_eq!(parameter["required"], true, "{name}");
        }
        assert!(header(&document, SCHEMA_ID_HEADER).is_none());

        let signature = header(&document, "webhook-signature").unwrap();
        let description = signature["description"].as_str().unwrap();
        assert!(description.contains("{webhook-id}.{webhook-timestamp}.{body}"));
        assert!(description.contains("space-separated"));
    }

    #[test]
    fn example_webhook_id_matches_pattern() {
        let document = webhook_document(&product(ContentType::Json, None), &RetryPolicy::default());
        let parameter = header(&document, "webhook-id").unwrap();
        let example = parameter["example"].as_str().unwrap();
        assert!(example.starts_with("msg_"));
        assert_eq!(example.len(), 4 + 32);
        assert!(example[4..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn description_explains_verification() {
        let document = webhook_document(
            &product(ContentType::Json, Some(ORDER_SCHEMA)),
            &RetryPolicy::default(),
        );
        let description = operation(&document)["description"].as_str().unwrap();
        assert!(description.contains("whsec_"));
        assert!(description.contains("HMAC-SHA256"));
        assert!(description.contains("300 seconds"));
        assert!(description.contains("constant time"));
    }

    #[test]
    fn responses_cover_success_gone_and_others() {
        let document = webhook_document(&product(ContentType::Json, None), &RetryPolicy::default());
        let responses = &operation(&document)["responses"];
        assert!(responses["2XX"]["description"].is_string());
        let gone = responses["410"]["description"].as_str().unwrap();
        assert!(gone.contains("disables"));
        let other = responses["default"]["description"].as_str().unwrap();
        assert!(other.contains("not followed"));
        assert!(other.contains("Retry-After"));
    }

    #[test]
    fn default_retry_schedule_is_listed() {
        let document = webhook_document(&product(ContentType::Json, None), &RetryPolicy::default());
        let schedule = &operation(&document)["x-hookline-retry-schedule"];
        assert_eq!(schedule["maxRetries"], 5);
        assert_eq!(
            schedule["retryWaitsSeconds"],
            json!([61, 76, 141, 316, 685])
        );
        assert_eq!(schedule["totalSeconds"], 1279);
        let description = operation(&document)["description"].as_str().unwrap();
        assert!(
            description.contains("61 s, 76 s, 141 s, 316 s, 685 s"),
            "{description}"
        );
        assert!(description.contains("1279 s"), "{description}");
    }

    #[test]
    fn custom_retry_schedule_follows_policy() {
        let policy = RetryPolicy {
            interval: Duration::from_millis(500),
            backoff_unit: Duration::from_millis(250),
            max_retries: 3,
        };
        let document = webhook_document(&product(ContentType::Json, None), &policy);
        let schedule = &operation(&document)["x-hookline-retry-schedule"];
        let expected: Vec<f64> = (1..=3).map(|n| policy.wait(n).as_secs_f64()).collect();
        assert_eq!(expected, [0.75, 4.5, 20.75]);
        assert_eq!(schedule["retryWaitsSeconds"], json!(expected));
        assert_eq!(schedule["maxRetries"], 3);
        let description = operation(&document)["description"].as_str().unwrap();
        assert!(
            description.contains("750 ms, 4.5 s, 20.75 s"),
            "{description}"
        );
    }

    #[test]
    fn zero_retries_says_dead_letter_at_once() {
        let policy = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        let document = webhook_document(&product(ContentType::Json, None), &policy);
        let schedule = &operation(&document)["x-hookline-retry-schedule"];
        assert_eq!(schedule["retryWaitsSeconds"], json!([]));
        let description = operation(&document)["description"].as_str().unwrap();
        assert!(description.contains("not retried"), "{description}");
    }

    #[test]
    fn json_without_schema_accepts_any_value() {
        let document = webhook_document(&product(ContentType::Json, None), &RetryPolicy::default());
        let content = &operation(&document)["requestBody"]["content"];
        assert_eq!(content["application/json"]["schema"], json!({}));
        assert!(document.get("components").is_none());
    }

    #[test]
    fn other_dialect_keeps_its_schema_keyword() {
        let draft7 = r##"{
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"id": {"type": "string"}},
            "type": "object",
            "properties": {"id": {"$ref": "#/definitions/id"}}
        }"##;
        let document = webhook_document(
            &product(ContentType::Json, Some(draft7)),
            &RetryPolicy::default(),
        );
        let schema = &document["components"]["schemas"]["order-created"];
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        let description = operation(&document)["requestBody"]["description"]
            .as_str()
            .unwrap();
        assert!(description.contains("draft-07"), "{description}");
    }

    #[test]
    fn local_refs_are_rebased() {
        let text = r##"{
            "$defs": {
                "money": {"type": "number"},
                "node": {"$id": "https://example.com/node", "$ref": "#/$defs/inner"}
            },
            "type": "object",
            "properties": {
                "total": {"$ref": "#/$defs/money"},
                "self": {"$ref": "#"},
                "anchor": {"$ref": "#money"},
                "external": {"$ref": "other.json#/x"},
                "enum": {"$ref": "#/$defs/money"}
            },
            "default": {"$ref": "#/data"}
        }"##;
        let document = webhook_document(
            &product(ContentType::Json, Some(text)),
            &RetryPolicy::default(),
        );
        let schema = &document["components"]["schemas"]["order-created"];
        let properties = &schema["properties"];
        let base = "#/components/schemas/order-created";
        assert_eq!(properties["total"]["$ref"], format!("{base}/$defs/money"));
        assert_eq!(properties["self"]["$ref"], base);
        assert_eq!(properties["anchor"]["$ref"], "#money");
        assert_eq!(properties["external"]["$ref"], "other.json#/x");
        assert_eq!(properties["enum"]["$ref"], format!("{base}/$defs/money"));
        assert_eq!(schema["$defs"]["node"]["$ref"], "#/$defs/inner");
        assert_eq!(schema["default"]["$ref"], "#/data");
    }

    #[test]
    fn schema_with_root_id_is_not_rebased() {
        let text =
            r##"{"$id": "https://example.com/order", "$ref": "#/$defs/a", "$defs": {"a": {}}}"##;
        let document = webhook_document(
            &product(ContentType::Json, Some(text)),
            &RetryPolicy::default(),
        );
        let schema = &document["components"]["schemas"]["order-created"];
        assert_eq!(schema["$ref"], "#/$defs/a");
    }

    #[test]
    fn unparsable_json_schema_is_shown_as_text() {
        let document = webhook_document(
            &product(ContentType::Json, Some("{not json")),
            &RetryPolicy::default(),
        );
        let body = &operation(&document)["requestBody"];
        assert_eq!(body["content"]["application/json"]["schema"], json!({}));
        assert!(body["description"].as_str().unwrap().contains("{not json"));
    }

    #[test]
    fn xml_product_uses_xml_media_type() {
        let document = webhook_document(&product(ContentType::Xml, None), &RetryPolicy::default());
        let content = &operation(&document)["requestBody"]["content"];
        assert_eq!(
            content["application/xml"]["schema"]["contentMediaType"],
            "application/xml"
        );
        assert!(content.get("application/json").is_none());
        assert!(header(&document, SCHEMA_ID_HEADER).is_none());
    }

    #[test]
    fn avro_product_shows_schema_and_schema_id_header() {
        let avro_schema =
            r#"{"type":"record","name":"Order","fields":[{"name":"orderId","type":"string"}]}"#;
        let document = webhook_document(
            &product(ContentType::Avro, Some(avro_schema)),
            &RetryPolicy::default(),
        );
        let body = &operation(&document)["requestBody"];
        let schema = &body["content"]["application/avro"]["schema"];
        assert_eq!(schema["contentMediaType"], "application/avro");
        assert_eq!(schema["x-avro-schema"]["name"], "Order");
        let description = body["description"].as_str().unwrap();
        assert!(description.contains(avro_schema), "{description}");

        let schema_id = header(&document, SCHEMA_ID_HEADER).expect("schema id header");
        assert_eq!(schema_id["required"], false);
    }

    #[test]
    fn avro_without_schema_describes_wire_format() {
        let document = webhook_document(&product(ContentType::Avro, None), &RetryPolicy::default());
        let description = operation(&document)["requestBody"]["description"]
            .as_str()
            .unwrap();
        assert!(description.contains("wire format"), "{description}");
        assert!(description.contains(SCHEMA_ID_HEADER), "{description}");
    }

    #[test]
    fn component_names_are_sanitized() {
        assert_eq!(component_name("order-created.v2_x"), "order-created.v2_x");
        assert_eq!(component_name("a b/c"), "a_b_c");
        assert_eq!(component_name(""), "payload");
    }
}
