//! Fixtures shared by the integration tests: a migrated backend in a fresh
//! schema of the test database, with one product and one application.
//!
//! The database is `HOOKLINE_TEST_POSTGRES_URL`, or [`DEFAULT_URL`] when it
//! is unset. Each fixture uses its own schema `hl_test_<random>` and drops
//! it when the fixture is dropped, also when the test fails.

// Each test binary uses a different part of these fixtures.
#![allow(dead_code)]

use bytes::Bytes;
use hookline_core::cipher::SecretCipher;
use hookline_core::queue::DeliveryTask;
use hookline_core::store::{InsertOutcome, NewEvent, Store};
use hookline_core::{
    Application, ApplicationId, ApplicationState, ContentType, DeliveryId, Event, EventId,
    EventSource, Product, SigningSecret, WebhookId,
};
use hookline_postgres::PgBackend;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use time::OffsetDateTime;

pub(crate) const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub(crate) const PRODUCT: &str = "order-created";

/// Connections per backend in the tests.
pub(crate) const TEST_CONNECTIONS: u32 = 4;

pub(crate) fn database_url() -> String {
    std::env::var("HOOKLINE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A schema that is dropped with everything in it when this value is dropped.
pub(crate) struct TestSchema {
    pub(crate) name: String,
}

impl TestSchema {
    /// Picks a new random name. The schema itself is created by the first
    /// backend that connects to it.
    pub(crate) fn new() -> Self {
        Self {
            name: format!("hl_test_{:016x}", rand::random::<u64>()),
        }
    }

    /// Connects a backend to this schema without migrating it.
    pub(crate) async fn connect(&self) -> PgBackend {
        PgBackend::connect(&database_url(), Some(&self.name), TEST_CONNECTIONS)
            .await
            .expect("connect to the test database")
            .with_secret_keys(test_keys())
    }

    /// Connects a backend to this schema and migrates it.
    pub(crate) async fn backend(&self) -> PgBackend {
        let backend = self.connect().await;
        backend.migrate().await.expect("migrate the test schema");
        backend
    }

    /// Opens a plain pool on this schema, for checks that read or change
    /// tables directly.
    pub(crate) async fn raw_pool(&self) -> PgPool {
        let options = PgConnectOptions::from_str(&database_url())
            .expect("valid test database URL")
            .options([("search_path", self.name.as_str())]);
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestSchema {
    /// Drops the schema from a thread with its own runtime, because `Drop`
    /// cannot await on the test's runtime.
    fn drop(&mut self) {
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime
                .block_on(drop_schema(&name))
                .map_err(|error| error.to_string())
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("failed to drop test schema {}: {error}", self.name),
            Err(_) => eprintln!("failed to drop test schema {}: thread panicked", self.name),
        }
    }
}

/// Ends the connections that hold locks in the schema, such as a pool
/// connection whose dropped transaction is not rolled back yet because its
/// runtime is blocked in [`TestSchema::drop`], then drops the schema.
async fn drop_schema(name: &str) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect(&database_url()).await?;
    sqlx::query(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks AS l \
         JOIN pg_class AS c ON c.oid = l.relation \
         JOIN pg_namespace AS n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut connection)
    .await?;
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut connection)
        .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
        .execute(&mut connection)
        .await?;
    connection.close().await
}

pub(crate) struct Fixture {
    pub(crate) backend: PgBackend,
    pub(crate) application: Application,
    /// Declared last so that the schema is dropped after the backend.
    pub(crate) schema: TestSchema,
}

/// Connects a backend to a new schema with [`PRODUCT`] and one active
/// application subscribed to it.
pub(crate) async fn fixture() -> Fixture {
    let schema = TestSchema::new();
    let backend = schema.backend().await;
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
        backend,
        application,
        schema,
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

/// Builds an event of `product` with one new delivery to each of
/// `subscribers`. The arrival time is whole microseconds, the precision of
/// `timestamptz`, so it reads back unchanged.
pub(crate) fn new_event(
    product: &str,
    key: &str,
    payload: &[u8],
    subscribers: &[&ApplicationId],
) -> NewEvent {
    let now = OffsetDateTime::now_utc();
    let received_at = now - time::Duration::nanoseconds(i64::from(now.nanosecond() % 1_000));
    let event = Event {
        id: EventId::generate(),
        product: product.to_owned(),
        idempotency_key: key.to_owned(),
        webhook_id: WebhookId::derive(product, key),
        content_type: ContentType::Json,
        payload: Bytes::copy_from_slice(payload),
        source: EventSource::Http,
        received_at,
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

/// Inserts one event for the fixture's application, marks it enqueued as
/// the creator does once the queue has its task, and returns the task.
pub(crate) async fn insert_enqueued(fixture: &Fixture, key: &str, payload: &[u8]) -> DeliveryTask {
    let new_event = new_event(PRODUCT, key, payload, &[&fixture.application.id]);
    let store = fixture.backend.store();
    let outcomes = store
        .insert_events(std::slice::from_ref(&new_event))
        .await
        .expect("insert event");
    assert_eq!(outcomes, vec![InsertOutcome::Inserted]);
    store
        .mark_enqueued(std::slice::from_ref(&new_event.event.id))
        .await
        .expect("mark enqueued");
    tasks_of(&new_event).remove(0)
}

/// The fixed secret key of the tests, so every connection to a test schema
/// decrypts what another one wrote.
pub(crate) fn test_keys() -> SecretCipher {
    SecretCipher::parse(&["test:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_owned()])
        .expect("valid test key")
}
