//! Schema creation and migrations, run again and from several backends at
//! once.

mod common;

use common::{fixture, product, TestSchema};
use futures::future::join_all;
use hookline_core::store::Store;
use sqlx::PgPool;

async fn versions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn migrate_again_changes_nothing() {
    let fixture = fixture().await;
    fixture.backend.migrate().await.unwrap();
    fixture.backend.migrate().await.unwrap();

    let pool = fixture.schema.raw_pool().await;
    assert_eq!(versions(&pool).await, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let stored = fixture.backend.store().products().await.unwrap();
    assert_eq!(stored.len(), 1, "data survives a second migration");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_and_migrations_apply_once() {
    let schema = TestSchema::new();
    // Four backends create the missing schema and migrate it at the same time.
    let backends = join_all((0..4).map(|_| schema.connect())).await;
    let results = join_all(backends.iter().map(|backend| backend.migrate())).await;
    for (index, result) in results.into_iter().enumerate() {
        assert!(result.is_ok(), "migration {index} failed: {result:?}");
    }

    let pool = schema.raw_pool().await;
    assert_eq!(versions(&pool).await, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    backends[0]
        .store()
        .create_product(&product("order-created"))
        .await
        .unwrap();
    assert_eq!(backends[3].store().products().await.unwrap().len(), 1);
    pool.close().await;
    for backend in backends {
        backend.close().await;
    }
}

#[tokio::test]
async fn newer_schema_version_is_rejected() {
    let fixture = fixture().await;
    let pool = fixture.schema.raw_pool().await;
    sqlx::query("INSERT INTO schema_migrations (version) VALUES (99)")
        .execute(&pool)
        .await
        .unwrap();

    let error = fixture.backend.migrate().await.unwrap_err();
    let source = std::error::Error::source(&error).expect("error has a source");
    assert!(
        source.to_string().contains("version 99 is newer"),
        "source: {source}"
    );
    assert!(source.to_string().contains("upgrade Hookline"));
    pool.close().await;
}
