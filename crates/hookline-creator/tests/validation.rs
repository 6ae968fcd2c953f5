//! Schema validation through the creator, on SQLite, with a fake schema
//! registry served on 127.0.0.1.

use apache_avro::types::Value;
use apache_avro::Schema;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use hookline_core::content::PayloadError;
use hookline_core::directory::StoreDirectory;
use hookline_core::store::Store;
use hookline_core::{ContentType, EventSource, Product};
use hookline_creator::{
    Accepted, Creator, CreatorError, CreatorSettings, IncomingEvent, Rejected, SchemaRegistry,
};
use hookline_sqlite::SqliteBackend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

const ORDER_SCHEMA: &str =
    r#"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}"#;
const ORDER_SCHEMA_ID: u32 = 7;
const BROKEN_SCHEMA_ID: u32 = 500;

/// A registry that serves [`ORDER_SCHEMA`] under [`ORDER_SCHEMA_ID`],
/// responds 500 for [`BROKEN_SCHEMA_ID`] and 404 otherwise, and counts requests.
async fn fake_registry() -> (String, Arc<AtomicUsize>) {
    async fn schema(
        State(requests): State<Arc<AtomicUsize>>,
        Path(id): Path<u32>,
    ) -> Result<Json<serde_json::Value>, StatusCode> {
        requests.fetch_add(1, Ordering::SeqCst);
        match id {
            ORDER_SCHEMA_ID => Ok(Json(serde_json::json!({ "schema": ORDER_SCHEMA }))),
            BROKEN_SCHEMA_ID => Err(StatusCode::INTERNAL_SERVER_ERROR),
            _ => Err(StatusCode::NOT_FOUND),
        }
    }
    let requests = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/schemas/ids/{id}", get(schema))
        .with_state(requests.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}"), requests)
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    creator: Creator,
}

async fn harness(registry: Option<&str>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path()).await.unwrap();
    let store: Arc<dyn Store> = backend.store();
    let directory = Arc::new(StoreDirectory::new(store.clone(), Duration::ZERO));
    let settings = CreatorSettings {
        product_cache_ttl: Duration::ZERO,
        ..CreatorSettings::default()
    };
    let mut creator = Creator::new(store.clone(), backend.queue(), directory, settings);
    if let Some(url) = registry {
        creator = creator.with_schema_registry(SchemaRegistry::new(url).unwrap());
    }
    Harness {
        _dir: dir,
        store,
        creator,
    }
}

fn product(name: &str, content_type: ContentType, schema: Option<&str>) -> Product {
    Product {
        name: name.to_owned(),
        topic: name.to_owned(),
        content_type,
        schema: schema.map(str::to_owned),
        validate: true,
        created_at: OffsetDateTime::now_utc(),
    }
}

fn event(product: &str, payload: Vec<u8>) -> IncomingEvent {
    IncomingEvent {
        product: product.to_owned(),
        idempotency_key: None,
        content_type: None,
        payload: Bytes::from(payload),
        source: EventSource::Http,
        span: tracing::Span::none(),
    }
}

fn order_datum(id: &str) -> Vec<u8> {
    let schema = Schema::parse_str(ORDER_SCHEMA).unwrap();
    let value = Value::Record(vec![("id".into(), Value::String(id.into()))]);
    apache_avro::to_avro_datum(&schema, value).unwrap()
}

fn wire_format(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut payload = vec![0];
    payload.extend_from_slice(&schema_id.to_be_bytes());
    payload.extend_from_slice(datum);
    payload
}

fn is_created(result: &Result<Accepted, Rejected>) -> bool {
    matches!(result, Ok(Accepted::Created { .. }))
}

#[tokio::test]
async fn json_schema_rejects_violations() {
    let harness = harness(None).await;
    let schema = include_str!("../../../fixtures/order-created.schema.json");
    let orders = product("orders", ContentType::Json, Some(schema));
    harness.store.create_product(&orders).await.unwrap();
    let valid = include_str!("../../../fixtures/order-created.event.json");
    let invalid = valid.replace("\"orderId\"", "\"order\"");

    let results = harness
        .creator
        .accept(vec![
            event("orders", valid.as_bytes().to_vec()),
            event("orders", invalid.into_bytes()),
        ])
        .await
        .unwrap();
    assert!(is_created(&results[0]), "{:?}", results[0]);
    let Err(Rejected::InvalidPayload(PayloadError::SchemaViolation(reason))) = &results[1] else {
        panic!("expected a schema violation, got {:?}", results[1]);
    };
    assert!(reason.contains("orderId"), "{reason}");
}

#[tokio::test]
async fn changed_schema_is_recompiled() {
    let harness = harness(None).await;
    let mut orders = product("orders", ContentType::Json, Some(r#"{"type": "array"}"#));
    harness.store.create_product(&orders).await.unwrap();
    let first = harness
        .creator
        .accept(vec![event("orders", b"{}".to_vec())])
        .await
        .unwrap();
    assert!(first[0].is_err(), "an object is not an array");

    orders.schema = Some(r#"{"type": "object"}"#.to_owned());
    harness.store.update_product_schema(&orders).await.unwrap();
    let second = harness
        .creator
        .accept(vec![event("orders", b"{}".to_vec())])
        .await
        .unwrap();
    assert!(is_created(&second[0]), "{:?}", second[0]);
}

#[tokio::test]
async fn registry_schema_is_fetched_once() {
    let (url, requests) = fake_registry().await;
    let harness = harness(Some(&url)).await;
    let orders = product("orders", ContentType::Avro, None);
    harness.store.create_product(&orders).await.unwrap();

    let results = harness
        .creator
        .accept(vec![
            event("orders", wire_format(ORDER_SCHEMA_ID, &order_datum("A-1"))),
            event("orders", wire_format(ORDER_SCHEMA_ID, &order_datum("A-2"))),
            event("orders", wire_format(ORDER_SCHEMA_ID, &[0x80])),
            event("orders", wire_format(99, &order_datum("A-3"))),
            event("orders", order_datum("A-4")),
        ])
        .await
        .unwrap();
    assert!(is_created(&results[0]), "{:?}", results[0]);
    assert!(is_created(&results[1]), "{:?}", results[1]);
    assert!(
        matches!(
            results[2],
            Err(Rejected::InvalidPayload(PayloadError::InvalidAvro(_)))
        ),
        "{:?}",
        results[2]
    );
    assert_eq!(
        results[3],
        Err(Rejected::InvalidPayload(PayloadError::UnknownSchemaId(99)))
    );
    assert!(
        results[3].as_ref().unwrap_err().to_string().contains("99"),
        "the reason names the id"
    );
    assert_eq!(
        results[4],
        Err(Rejected::InvalidPayload(PayloadError::MissingSchemaId))
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "one request for id 7, whatever the number of records, and one for id 99"
    );
}

#[tokio::test]
async fn registry_failure_is_retryable() {
    let (url, _requests) = fake_registry().await;
    let harness = harness(Some(&url)).await;
    let orders = product("orders", ContentType::Avro, None);
    harness.store.create_product(&orders).await.unwrap();

    let payload = wire_format(BROKEN_SCHEMA_ID, &order_datum("A-1"));
    let result = harness.creator.accept(vec![event("orders", payload)]).await;
    let Err(CreatorError::SchemaRegistry(error)) = result else {
        panic!("a registry error must fail the batch, got {result:?}");
    };
    assert!(error.to_string().contains("500"), "{error}");
}

#[tokio::test]
async fn avro_without_registry_or_schema_is_rejected() {
    let harness = harness(None).await;
    let orders = product("orders", ContentType::Avro, None);
    harness.store.create_product(&orders).await.unwrap();
    let payments = product("payments", ContentType::Avro, Some(ORDER_SCHEMA));
    harness.store.create_product(&payments).await.unwrap();

    let results = harness
        .creator
        .accept(vec![
            event("orders", wire_format(ORDER_SCHEMA_ID, &order_datum("A-1"))),
            event("payments", order_datum("P-1")),
            event("payments", b"\x02".to_vec()),
        ])
        .await
        .unwrap();
    assert!(
        matches!(
            &results[0],
            Err(Rejected::NoSchemaRegistry { schema_id: 7, .. })
        ),
        "{:?}",
        results[0]
    );
    assert!(
        is_created(&results[1]),
        "raw Avro with the product's schema"
    );
    assert!(results[2].is_err(), "a truncated raw datum");
}
