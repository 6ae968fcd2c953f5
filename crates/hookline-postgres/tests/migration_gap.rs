//! A migration that a database lacks is applied even when the database
//! already has a later one.

mod common;

use common::{fixture, product};
use hookline_core::store::Store;

/// Removes schema version 3 from the database, leaving the later versions.
const UNDO_VERSION_3: &str = r#"
DROP INDEX rejected_records_by_product;
ALTER TABLE rejected_records DROP COLUMN replayed_event_id;
ALTER TABLE rejected_records DROP COLUMN replayed_at;
ALTER TABLE rejected_records DROP COLUMN idempotency_key;
ALTER TABLE products DROP COLUMN validate_payload;
ALTER TABLE products DROP COLUMN payload_schema;
DELETE FROM schema_migrations WHERE version = 3;
"#;

#[tokio::test]
async fn missing_version_below_latest_is_applied() {
    let fixture = fixture().await;
    let pool = fixture.schema.raw_pool().await;
    sqlx::raw_sql(UNDO_VERSION_3).execute(&pool).await.unwrap();
    let latest: i64 = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(latest > 3, "a later version stays applied");

    fixture.backend.migrate().await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = 3")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, [3]);
    pool.close().await;

    let store = fixture.backend.store();
    let mut with_schema = product("with-schema");
    with_schema.schema = Some(r#"{"type": "object"}"#.to_owned());
    with_schema.validate = true;
    store.create_product(&with_schema).await.unwrap();
    let read = store.product("with-schema").await.unwrap().unwrap();
    assert_eq!(read.schema, with_schema.schema);
    assert!(read.validate);
}
