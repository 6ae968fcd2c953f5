//! Fixtures shared by the integration tests: a backend on a fresh temporary
//! directory, with one product and one application.

// Each test binary uses a different part of these fixtures.
#![allow(dead_code)]

use bytes::Bytes;
use hookline_core::queue::{DeliveryQueue, DeliveryTask};
use hookline_core::store::{InsertOutcome, NewEvent, Store};
use hookline_core::{
    Application, ApplicationId, ApplicationState, ContentType, DeliveryId, Event, EventId,
    EventSource, Product, SigningSecret, WebhookId,
};
use hookline_sqlite::SqliteBackend;
use tempfile::TempDir;
use time::OffsetDateTime;

pub(crate) const PRODUCT: &str = "order-created";

pub(crate) struct Fixture {
    /// Kept so the directory outlives the backend.
    pub(crate) dir: TempDir,
    pub(crate) backend: SqliteBackend,
    pub(crate) application: Application,
}

/// Opens a backend in a new temporary directory with [`PRODUCT`] and one
/// active application subscribed to it.
pub(crate) async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let backend = SqliteBackend::open(dir.path()).await.expect("open backend");
    let store = backend.store();
    store
        .create_product(&product(PRODUCT))
        .await
        .expect("create product");
    let application = application(PRODUCT, "shop-backend");
    store
        .create_application(&application)
        .await
        .expect("create application");
    Fixture {
        dir,
        backend,
        application,
    }
}

pub(crate) fn product(name: &str) -> Product {
    Product {
        name: name.to_owned(),
        topic: format!("{name}-topic"),
        content_type: ContentType::Json,
        schema: None,
        validate: false,
        created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time"),
    }
}

pub(crate) fn application(product: &str, name: &str) -> Application {
    Application {
        id: ApplicationId::generate(),
        name: name.to_owned(),
        product: product.to_owned(),
        plan: "free".to_owned(),
        webhook_url: format!("https://{name}.example.com/webhooks"),
        secret: SigningSecret::generate(),
        state: ApplicationState::Active,
        created_at: OffsetDateTime::from_unix_timestamp(1_700_000_100).expect("valid time"),
    }
}

/// Builds an event of `product` with one new delivery to each of `subscribers`.
pub(crate) fn new_event(
    product: &str,
    key: &str,
    payload: &[u8],
    subscribers: &[&ApplicationId],
) -> NewEvent {
    let event = Event {
        id: EventId::generate(),
        product: product.to_owned(),
        idempotency_key: key.to_owned(),
        webhook_id: WebhookId::derive(product, key),
        content_type: ContentType::Json,
        payload: Bytes::copy_from_slice(payload),
        source: EventSource::Http,
        received_at: OffsetDateTime::now_utc(),
        traceparent: None,
    };
    let deliveries = subscribers
        .iter()
        .map(|application| (DeliveryId::generate(), (*application).clone()))
        .collect();
    NewEvent { event, deliveries }
}

/// Builds the tasks of an event as the creator does.
pub(crate) fn tasks_of(new_event: &NewEvent) -> Vec<DeliveryTask> {
    new_event.tasks().collect()
}

/// Inserts one event for the fixture's application, enqueues its task, marks
/// the event enqueued and returns the task.
pub(crate) async fn insert_and_enqueue(
    fixture: &Fixture,
    key: &str,
    payload: &[u8],
) -> DeliveryTask {
    let new_event = new_event(PRODUCT, key, payload, &[&fixture.application.id]);
    let outcomes = fixture
        .backend
        .store()
        .insert_events(std::slice::from_ref(&new_event))
        .await
        .expect("insert event");
    assert_eq!(outcomes, vec![InsertOutcome::Inserted]);
    let task = tasks_of(&new_event).remove(0);
    fixture
        .backend
        .queue()
        .enqueue(vec![task.clone()])
        .await
        .expect("enqueue task");
    fixture
        .backend
        .store()
        .mark_enqueued(std::slice::from_ref(&new_event.event.id))
        .await
        .expect("mark enqueued");
    task
}
