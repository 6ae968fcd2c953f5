//! Applications written by an external directory (`upsert_application`).

mod common;

use common::{application, fixture, PRODUCT};
use hookline_core::store::Store;
use hookline_core::{ApplicationState, SigningSecret};

#[tokio::test]
async fn upsert_inserts_then_updates_keeping_secret() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let mut external = application(PRODUCT, "acme");
    store.upsert_application(&external).await.unwrap();
    let inserted = store.application(&external.id).await.unwrap().unwrap();
    assert_eq!(inserted.secret, external.secret);

    external.name = "Acme renamed".into();
    external.plan = "paid".into();
    external.webhook_url = "https://acme.example.com/v2".into();
    external.state = ApplicationState::Disabled;
    external.secret = SigningSecret::generate();
    store.upsert_application(&external).await.unwrap();
    store.upsert_application(&external).await.unwrap();

    let updated = store.application(&external.id).await.unwrap().unwrap();
    assert_eq!(updated.name, "Acme renamed");
    assert_eq!(updated.plan, "paid");
    assert_eq!(updated.webhook_url, "https://acme.example.com/v2");
    assert_eq!(updated.state, ApplicationState::Disabled);
    assert_eq!(updated.secret, inserted.secret, "the first secret is kept");
    assert_eq!(updated.created_at, inserted.created_at);
}

#[tokio::test]
async fn upsert_of_unknown_product_fails() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let orphan = application("no-such-product", "orphan");
    let error = store.upsert_application(&orphan).await.unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
}
