//! Portal records on SQLite: accounts, sessions, application owners, and
//! signing-secret rotation with the previous secret encrypted at rest.

mod common;

use common::{application, fixture, Fixture, PRODUCT};
use hookline_core::cipher::{SecretCipher, SecretKey};
use hookline_core::directory::{Directory, StoreDirectory};
use hookline_core::portal::{Account, PortalSession, PortalStore, Role};
use hookline_core::store::{Store, StoreError};
use hookline_core::SigningSecret;
use hookline_sqlite::{SqliteBackend, DATABASE_FILE, SECRET_KEY_FILE};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn account(id: &str, email: &str) -> Account {
    Account {
        id: id.to_owned(),
        email: email.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        role: Role::Consumer,
        created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    }
}

fn session(token_hash: &str, account_id: &str, expires_at: OffsetDateTime) -> PortalSession {
    PortalSession {
        token_hash: token_hash.to_owned(),
        account_id: account_id.to_owned(),
        csrf_token: format!("csrf-{token_hash}"),
        created_at: expires_at - time::Duration::hours(1),
        expires_at,
    }
}

/// Reads `previous_secret` as stored, bypassing the store.
async fn stored_previous_secret(fixture: &Fixture) -> Option<String> {
    let database = fixture.dir.path().join(DATABASE_FILE);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    let stored = sqlx::query_scalar("SELECT previous_secret FROM applications WHERE id = ?1")
        .bind(fixture.application.id.as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    stored
}

#[tokio::test]
async fn account_email_is_unique_ignoring_case() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    store
        .create_account(&account("acc_1", "Dev@Example.COM"))
        .await
        .unwrap();

    let error = store
        .create_account(&account("acc_2", "dev@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict { key, .. } if key == "dev@example.com"),
        "{error}"
    );

    let found = store
        .account_by_email("DEV@example.com")
        .await
        .unwrap()
        .expect("the account is found by any case of its email");
    assert_eq!(found.id, "acc_1");
    assert_eq!(found.email, "dev@example.com");
    assert_eq!(found.role, Role::Consumer);
    assert!(store.account("acc_2").await.unwrap().is_none());
}

#[tokio::test]
async fn password_hash_changes_only_existing_accounts() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    store
        .create_account(&account("acc_1", "a@example.com"))
        .await
        .unwrap();
    assert!(store.set_password_hash("acc_1", "$new").await.unwrap());
    assert!(!store
        .set_password_hash("acc_missing", "$new")
        .await
        .unwrap());
    let read = store.account("acc_1").await.unwrap().unwrap();
    assert_eq!(read.password_hash, "$new");
}

#[tokio::test]
async fn role_changes_only_existing_accounts() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    store
        .create_account(&account("acc_1", "a@example.com"))
        .await
        .unwrap();
    assert!(store.set_role("acc_1", Role::Provider).await.unwrap());
    let read = store.account("acc_1").await.unwrap().unwrap();
    assert_eq!(read.role, Role::Provider);
    assert!(store.set_role("acc_1", Role::Consumer).await.unwrap());
    let read = store
        .account_by_email("a@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.role, Role::Consumer);
    assert!(!store.set_role("acc_missing", Role::Provider).await.unwrap());
}

#[tokio::test]
async fn session_expires_and_is_deleted() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    store
        .create_account(&account("acc_1", "a@example.com"))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let expires_at = now + time::Duration::hours(1);
    store
        .create_session(&session("hash-live", "acc_1", expires_at))
        .await
        .unwrap();
    store
        .create_session(&session(
            "hash-old",
            "acc_1",
            now - time::Duration::minutes(1),
        ))
        .await
        .unwrap();

    let live = store.session("hash-live", now).await.unwrap().unwrap();
    assert_eq!(live.account_id, "acc_1");
    assert_eq!(live.csrf_token, "csrf-hash-live");
    assert_eq!(
        live.expires_at.unix_timestamp(),
        expires_at.unix_timestamp()
    );
    assert!(store.session("hash-old", now).await.unwrap().is_none());
    let after_expiry = expires_at + time::Duration::seconds(1);
    assert!(store
        .session("hash-live", after_expiry)
        .await
        .unwrap()
        .is_none());

    assert_eq!(store.delete_expired_sessions(now).await.unwrap(), 1);
    store.delete_session("hash-live").await.unwrap();
    assert!(store.session("hash-live", now).await.unwrap().is_none());
}

#[tokio::test]
async fn delete_sessions_of_ends_only_that_account() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    for (id, email) in [("acc_1", "a@example.com"), ("acc_2", "b@example.com")] {
        store.create_account(&account(id, email)).await.unwrap();
    }
    let now = OffsetDateTime::now_utc();
    let later = now + time::Duration::hours(1);
    for (hash, owner) in [("h1", "acc_1"), ("h2", "acc_1"), ("h3", "acc_2")] {
        store
            .create_session(&session(hash, owner, later))
            .await
            .unwrap();
    }

    store.delete_sessions_of("acc_1").await.unwrap();
    assert!(store.session("h1", now).await.unwrap().is_none());
    assert!(store.session("h2", now).await.unwrap().is_none());
    assert!(store.session("h3", now).await.unwrap().is_some());
}

#[tokio::test]
async fn owned_applications_newest_first() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    for (id, email) in [("acc_1", "a@example.com"), ("acc_2", "b@example.com")] {
        store.create_account(&account(id, email)).await.unwrap();
    }
    let mut newer = application(PRODUCT, "newer");
    newer.created_at = fixture.application.created_at + time::Duration::hours(1);
    store.create_application(&newer).await.unwrap();
    let other = application(PRODUCT, "other");
    store.create_application(&other).await.unwrap();

    store
        .set_application_owner(&fixture.application.id, "acc_1")
        .await
        .unwrap();
    store
        .set_application_owner(&newer.id, "acc_1")
        .await
        .unwrap();
    store
        .set_application_owner(&other.id, "acc_2")
        .await
        .unwrap();

    let owned = store.owned_applications("acc_1").await.unwrap();
    assert_eq!(
        owned,
        vec![newer.id.clone(), fixture.application.id.clone()]
    );
    assert_eq!(
        store.application_owner(&other.id).await.unwrap().as_deref(),
        Some("acc_2")
    );

    // Setting the owner again moves the application.
    store
        .set_application_owner(&other.id, "acc_1")
        .await
        .unwrap();
    assert_eq!(store.owned_applications("acc_1").await.unwrap().len(), 3);
    assert!(store.owned_applications("acc_2").await.unwrap().is_empty());
    assert!(store
        .owned_applications("acc_none")
        .await
        .unwrap()
        .is_empty());

    let error = store
        .set_application_owner(&other.id, "acc_missing")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test]
async fn rotation_keeps_previous_until_expiry() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let id = &fixture.application.id;
    let now = OffsetDateTime::now_utc();
    assert!(store.previous_secret(id, now).await.unwrap().is_none());

    let new_secret = SigningSecret::generate();
    let expires_at = now + time::Duration::hours(24);
    assert!(store
        .rotate_secret(id, &new_secret, expires_at)
        .await
        .unwrap());

    let current = store.application(id).await.unwrap().unwrap();
    assert_eq!(current.secret, new_secret);
    let previous = store.previous_secret(id, now).await.unwrap().unwrap();
    assert_eq!(previous.secret, fixture.application.secret);
    assert_eq!(
        previous.expires_at.unix_timestamp(),
        expires_at.unix_timestamp()
    );
    let after_expiry = expires_at + time::Duration::seconds(1);
    assert!(store
        .previous_secret(id, after_expiry)
        .await
        .unwrap()
        .is_none());

    // A second rotation keeps only the secret it replaces.
    let third = SigningSecret::generate();
    assert!(store.rotate_secret(id, &third, expires_at).await.unwrap());
    let previous = store.previous_secret(id, now).await.unwrap().unwrap();
    assert_eq!(previous.secret, new_secret);

    let missing = hookline_core::ApplicationId::generate();
    assert!(!store
        .rotate_secret(&missing, &third, expires_at)
        .await
        .unwrap());
}

#[tokio::test]
async fn previous_secret_is_encrypted_at_rest() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let old = fixture.application.secret.expose().to_owned();
    let expires_at = OffsetDateTime::now_utc() + time::Duration::hours(1);
    store
        .rotate_secret(
            &fixture.application.id,
            &SigningSecret::generate(),
            expires_at,
        )
        .await
        .unwrap();

    let stored = stored_previous_secret(&fixture)
        .await
        .expect("the rotation stores the previous secret");
    assert_ne!(stored, old);
    assert!(!stored.contains(&old), "{stored}");
    assert!(stored.starts_with("enc1:local:"), "{stored}");
}

#[tokio::test]
async fn newer_key_reencrypts_previous_secret() {
    let fixture = fixture().await;
    let expires_at = OffsetDateTime::now_utc() + time::Duration::hours(1);
    fixture
        .backend
        .store()
        .rotate_secret(
            &fixture.application.id,
            &SigningSecret::generate(),
            expires_at,
        )
        .await
        .unwrap();
    fixture.backend.close().await;

    let file = std::fs::read_to_string(fixture.dir.path().join(SECRET_KEY_FILE)).unwrap();
    let old_key = SecretKey::parse(&file).unwrap();
    let new_key = SecretKey::generate("k2").unwrap();
    let both = SecretCipher::new(vec![new_key.clone(), old_key]).unwrap();
    let backend = SqliteBackend::open_with_keys(fixture.dir.path(), Some(both))
        .await
        .unwrap();
    backend.close().await;
    let stored = stored_previous_secret(&fixture).await.unwrap();
    assert!(stored.starts_with("enc1:k2:"), "{stored}");

    let only_new = SecretCipher::new(vec![new_key]).unwrap();
    let reopened = SqliteBackend::open_with_keys(fixture.dir.path(), Some(only_new))
        .await
        .unwrap();
    let previous = reopened
        .store()
        .previous_secret(&fixture.application.id, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previous.secret, fixture.application.secret);
}

#[tokio::test]
async fn directory_signs_with_both_secrets_during_overlap() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let directory = StoreDirectory::new(store.clone(), Duration::from_secs(60))
        .with_portal(store.clone() as Arc<dyn PortalStore>);
    let id = &fixture.application.id;
    let before = directory.endpoint(id).await.unwrap().unwrap();
    assert_eq!(before.secrets, vec![fixture.application.secret.clone()]);

    let new_secret = SigningSecret::generate();
    let expires_at = OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    store
        .rotate_secret(id, &new_secret, expires_at)
        .await
        .unwrap();
    directory.invalidate();
    let during = directory.endpoint(id).await.unwrap().unwrap();
    assert_eq!(
        during.secrets,
        vec![new_secret.clone(), fixture.application.secret.clone()],
        "newest first"
    );

    // The cache TTL is a minute, but the entry must not outlive the
    // previous secret.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let after = directory.endpoint(id).await.unwrap().unwrap();
    assert_eq!(after.secrets, vec![new_secret]);
}
