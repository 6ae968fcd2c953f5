//! A migration that a database lacks is applied even when the database
//! already has a later one.

mod common;

use common::{fixture, product};
use hookline_core::store::Store;
use hookline_sqlite::{SqliteBackend, DATABASE_FILE};

/// Removes schema version 3 from the database, leaving the later versions.
const UNDO_VERSION_3: &str = r#"
DROP INDEX rejected_records_by_product;
ALTER TABLE rejected_records DROP COLUMN replayed_event_id;
ALTER TABLE rejected_records DROP COLUMN replayed_at;
ALTER TABLE rejected_records DROP COLUMN idempotency_key;
ALTER TABLE products DROP COLUMN validate_payload;
ALTER TABLE products DROP COLUMN payload_schema;
DELETE FROM schema_version WHERE version = 3;
"#;

#[tokio::test]
async fn missing_version_below_latest_is_applied() {
    let fixture = fixture().await;
    fixture.backend.close().await;
    let database = fixture.dir.path().join(DATABASE_FILE);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    sqlx::raw_sql(UNDO_VERSION_3).execute(&pool).await.unwrap();
    let latest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(latest > 3, "a later version stays applied");
    pool.close().await;

    let reopened = SqliteBackend::open(fixture.dir.path()).await.unwrap();
    let mut with_schema = product("with-schema");
    with_schema.schema = Some(r#"{"type": "object"}"#.to_owned());
    with_schema.validate = true;
    reopened.store().create_product(&with_schema).await.unwrap();
    let read = reopened
        .store()
        .product("with-schema")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.schema, with_schema.schema);
    assert!(read.validate);
}
