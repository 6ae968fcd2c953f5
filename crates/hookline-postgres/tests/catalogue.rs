//! Products and applications stored in a real PostgreSQL database.

mod common;

use common::{application, database_url, fixture, product, TestSchema, PRODUCT};
use hookline_core::store::{Store, StoreError};
use hookline_core::{ApplicationId, ApplicationState, AvroFormat, ContentType};
use hookline_postgres::PgBackend;

#[tokio::test]
async fn product_round_trips() {
    let fixture = fixture().await;
    let store = fixture.backend.store();

    let mut shipped = product("order-shipped");
    shipped.content_type = ContentType::Xml;
    store.create_product(&shipped).await.unwrap();

    let read = store
        .product("order-shipped")
        .await
        .unwrap()
        .expect("product exists");
    assert_eq!(read.name, "order-shipped");
    assert_eq!(read.topic, "order-shipped-topic");
    assert_eq!(read.content_type, ContentType::Xml);
    assert_eq!(read.created_at, shipped.created_at);

    let names: Vec<String> = store
        .products()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["order-created", "order-shipped"]);
    assert!(store.product("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn duplicate_product_name_conflicts() {
    let fixture = fixture().await;
    let store = fixture.backend.store();

    let error = store.create_product(&product(PRODUCT)).await.unwrap_err();
    match error {
        StoreError::Conflict { entity, key } => {
            assert_eq!(entity, "product");
            assert_eq!(key, PRODUCT);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn application_round_trips() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let expected = &fixture.application;

    let read = store
        .application(&expected.id)
        .await
        .unwrap()
        .expect("application exists");
    assert_eq!(read.id, expected.id);
    assert_eq!(read.name, "shop-backend");
    assert_eq!(read.product, PRODUCT);
    assert_eq!(read.plan, "free");
    assert_eq!(read.webhook_url, expected.webhook_url);
    assert_eq!(read.secret.expose(), expected.secret.expose());
    assert_eq!(read.state, ApplicationState::Active);
    assert_eq!(read.created_at, expected.created_at);

    assert!(store
        .application(&ApplicationId::generate())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn applications_lists_all_states_by_product() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    store
        .create_product(&product("order-shipped"))
        .await
        .unwrap();

    let mut disabled = application(PRODUCT, "old-backend");
    disabled.state = ApplicationState::Disabled;
    disabled.created_at += time::Duration::seconds(1);
    store.create_application(&disabled).await.unwrap();
    let other = application("order-shipped", "warehouse");
    store.create_application(&other).await.unwrap();

    let of_product = store.applications(Some(PRODUCT)).await.unwrap();
    let ids: Vec<&ApplicationId> = of_product.iter().map(|a| &a.id).collect();
    assert_eq!(ids, vec![&fixture.application.id, &disabled.id]);
    assert_eq!(of_product[1].state, ApplicationState::Disabled);

    let all = store.applications(None).await.unwrap();
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn duplicate_application_id_conflicts() {
    let fixture = fixture().await;
    let store = fixture.backend.store();

    let error = store
        .create_application(&fixture.application)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict { entity: "application", key } if key == fixture.application.id.as_str()),
        "expected a conflict, got {error:?}"
    );
}

#[tokio::test]
async fn application_of_unknown_product_fails() {
    let fixture = fixture().await;
    let store = fixture.backend.store();

    let error = store
        .create_application(&application("no-such-product", "x"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no-such-product"),
        "message: {error}"
    );
    assert!(store
        .applications(Some("no-such-product"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn ping_succeeds_on_open_backend() {
    let fixture = fixture().await;
    fixture.backend.store().ping().await.unwrap();
}

#[tokio::test]
async fn connect_rejects_schema_needing_quotes() {
    let error = match PgBackend::connect(&database_url(), Some("Bad-Schema"), 1).await {
        Ok(_) => panic!("connected with an invalid schema name"),
        Err(error) => error,
    };
    let source = std::error::Error::source(&error).expect("error has a source");
    assert!(
        source
            .to_string()
            .contains("invalid schema name \"Bad-Schema\""),
        "source: {source}"
    );
}

#[tokio::test]
async fn connect_creates_missing_schema() {
    let schema = TestSchema::new();
    let backend = schema.backend().await;
    backend.store().ping().await.unwrap();

    let pool = schema.raw_pool().await;
    let found: Option<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = $1")
            .bind(&schema.name)
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert_eq!(found.as_deref(), Some(schema.name.as_str()));
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'deliveries'",
    )
    .bind(&schema.name)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 1, "migration created its tables in the schema");
    pool.close().await;
    backend.close().await;
}

#[tokio::test]
async fn avro_format_defaults_to_binary_and_changes() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let existing = fixture.application.id.clone();
    let converted = application(PRODUCT, "json-consumer");
    store
        .create_application_with_avro_format(&converted, AvroFormat::Json)
        .await
        .unwrap();
    let missing = ApplicationId::generate();

    let ids = [existing.clone(), converted.id.clone(), missing.clone()];
    let formats = store.avro_formats(&ids).await.unwrap();
    assert_eq!(formats.get(&existing), Some(&AvroFormat::Binary));
    assert_eq!(formats.get(&converted.id), Some(&AvroFormat::Json));
    assert_eq!(formats.get(&missing), None);

    assert!(store
        .set_avro_format(&existing, AvroFormat::Json)
        .await
        .unwrap());
    assert!(!store
        .set_avro_format(&missing, AvroFormat::Json)
        .await
        .unwrap());
    let formats = store
        .avro_formats(std::slice::from_ref(&existing))
        .await
        .unwrap();
    assert_eq!(formats.get(&existing), Some(&AvroFormat::Json));
    assert!(store.avro_formats(&[]).await.unwrap().is_empty());
}
