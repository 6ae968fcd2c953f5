//! Signing secrets at rest: encrypted in the database file, readable with
//! the right key only, and re-encrypted when a newer key is added.

mod common;

use common::{application, fixture, PRODUCT};
use hookline_core::cipher::{SecretCipher, SecretKey};
use hookline_core::store::Store;
use hookline_sqlite::{SqliteBackend, DATABASE_FILE, SECRET_KEY_FILE};

async fn stored_secrets(dir: &std::path::Path) -> Vec<String> {
    let database = dir.join(DATABASE_FILE);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    let secrets = sqlx::query_scalar("SELECT secret FROM applications")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    secrets
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

fn keys(entries: &[&SecretKey]) -> SecretCipher {
    SecretCipher::new(entries.iter().map(|key| (*key).clone()).collect()).unwrap()
}

#[tokio::test]
async fn database_file_holds_no_plaintext_secret() {
    let fixture = fixture().await;
    let plaintext = fixture.application.secret.expose().to_owned();
    let stored = stored_secrets(fixture.dir.path()).await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("enc1:local:"), "{}", stored[0]);
    assert!(!stored[0].contains(&plaintext));
    let bytes = std::fs::read(fixture.dir.path().join(DATABASE_FILE)).unwrap();
    let needle = plaintext.as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|window| window == needle),
        "the database file contains the plaintext secret"
    );

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
async fn wrong_key_fails_at_open() {
    let fixture = fixture().await;
    fixture.backend.close().await;
    let wrong = SecretKey::generate("local").unwrap();
    let result = SqliteBackend::open_with_keys(fixture.dir.path(), Some(keys(&[&wrong]))).await;
    let error = result.err().expect("a wrong key must not open the store");
    let text = chain(&error);
    assert!(text.contains("cannot decrypt"), "{text}");
    assert!(text.contains("\"local\""), "{text}");

    let unknown = SecretKey::generate("k9").unwrap();
    let result = SqliteBackend::open_with_keys(fixture.dir.path(), Some(keys(&[&unknown]))).await;
    let error = result
        .err()
        .expect("a missing key id must not open the store");
    let text = chain(&error);
    assert!(text.contains("not in secrets.keys"), "{text}");
}

#[tokio::test]
async fn newer_key_reencrypts_at_open() {
    let fixture = fixture().await;
    fixture.backend.close().await;
    let file = std::fs::read_to_string(fixture.dir.path().join(SECRET_KEY_FILE)).unwrap();
    let old = SecretKey::parse(&file).unwrap();
    let new = SecretKey::generate("k2").unwrap();

    let backend = SqliteBackend::open_with_keys(fixture.dir.path(), Some(keys(&[&new, &old])))
        .await
        .unwrap();
    let stored = stored_secrets(fixture.dir.path()).await;
    assert!(stored[0].starts_with("enc1:k2:"), "{}", stored[0]);
    let second = application(PRODUCT, "second");
    backend.store().create_application(&second).await.unwrap();
    backend.close().await;

    let reopened = SqliteBackend::open_with_keys(fixture.dir.path(), Some(keys(&[&new])))
        .await
        .unwrap();
    let store = reopened.store();
    let read = store
        .application(&fixture.application.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.secret, fixture.application.secret);
    let read = store.application(&second.id).await.unwrap().unwrap();
    assert_eq!(read.secret, second.secret);
}
