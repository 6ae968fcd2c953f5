//! Signing secrets at rest: encrypted in the table, readable with the right
//! key only, and re-encrypted when a newer key is added.

mod common;

use common::{application, fixture, TestSchema, PRODUCT};
use hookline_core::cipher::{SecretCipher, SecretKey};
use hookline_core::store::Store;
use hookline_postgres::PgBackend;

async fn stored_secrets(schema: &TestSchema) -> Vec<String> {
    let pool = schema.raw_pool().await;
    let secrets = sqlx::query_scalar("SELECT secret FROM applications ORDER BY created_at, id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    secrets
}

async fn connect(schema: &TestSchema, keys: SecretCipher) -> PgBackend {
    PgBackend::connect(&common::database_url(), Some(&schema.name), 2)
        .await
        .unwrap()
        .with_secret_keys(keys)
}

/// Joins the error and its sources into one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn secret_column_holds_no_plaintext() {
    let fixture = fixture().await;
    let plaintext = fixture.application.secret.expose().to_owned();
    let stored = stored_secrets(&fixture.schema).await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("enc1:test:"), "{}", stored[0]);
    assert!(!stored[0].contains(&plaintext));

    let read = fixture
        .backend
        .store()
        .application(&fixture.application.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.secret, fixture.application.secret);
}

#[tokio::test]
async fn wrong_key_fails_verification() {
    let fixture = fixture().await;
    let wrong = SecretCipher::new(vec![SecretKey::generate("test").unwrap()]).unwrap();
    let backend = connect(&fixture.schema, wrong).await;
    let error = backend.store().verify_secret_key().await.unwrap_err();
    let text = chain(&error);
    assert!(text.contains("cannot decrypt"), "{text}");
    assert!(text.contains("\"test\""), "{text}");

    let read = backend.store().application(&fixture.application.id).await;
    assert!(read.is_err(), "a wrong key must not read a secret");
    backend.close().await;
}

#[tokio::test]
async fn store_without_keys_rejects_secrets() {
    let fixture = fixture().await;
    let backend = PgBackend::connect(&common::database_url(), Some(&fixture.schema.name), 2)
        .await
        .unwrap();
    let error = backend
        .store()
        .create_application(&application(PRODUCT, "no-keys"))
        .await
        .unwrap_err();
    assert!(chain(&error).contains("secrets.keys"), "{}", chain(&error));
    backend.close().await;
}

#[tokio::test]
async fn newer_key_reencrypts_every_secret() {
    let fixture = fixture().await;
    let second = application(PRODUCT, "second");
    fixture
        .backend
        .store()
        .create_application(&second)
        .await
        .unwrap();
    let new = SecretKey::generate("k2").unwrap();
    let old = SecretKey::parse("test:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
    let rotated = SecretCipher::new(vec![new.clone(), old]).unwrap();
    let backend = connect(&fixture.schema, rotated).await;

    assert_eq!(backend.store().reencrypt_secrets().await.unwrap(), 2);
    assert_eq!(backend.store().reencrypt_secrets().await.unwrap(), 0);
    for stored in stored_secrets(&fixture.schema).await {
        assert!(stored.starts_with("enc1:k2:"), "{stored}");
    }
    backend.close().await;

    let only_new = connect(&fixture.schema, SecretCipher::new(vec![new]).unwrap()).await;
    only_new.store().verify_secret_key().await.unwrap();
    let read = only_new
        .store()
        .application(&second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.secret, second.secret);
    only_new.close().await;
}
