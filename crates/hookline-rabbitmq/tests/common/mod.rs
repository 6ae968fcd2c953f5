//! Test harness for the RabbitMQ queue: the broker URL, a queue name unique
//! to each test, tasks, a raw lapin channel and cleanup of declared queues.
//!
//! Tests need a broker at `amqp://guest:guest@127.0.0.1:5672/%2f`, or at the
//! URL in `HOOKLINE_TEST_AMQP_URL`.

#![allow(unreachable_pub, dead_code)]

use bytes::Bytes;
use hookline_core::queue::{DeliveryQueue, DeliveryTask, Leased};
use hookline_core::{ApplicationId, ContentType, DeliveryId, EventId, RetryPolicy, WebhookId};
use hookline_rabbitmq::{AmqpQueue, AmqpSettings};
use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::{Channel, Connection, ConnectionProperties};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub fn amqp_url() -> String {
    std::env::var("HOOKLINE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("hookline_rabbitmq=debug")
        .with_test_writer()
        .try_init();
}

/// A main queue name no other test uses.
pub fn unique_queue_name() -> String {
    format!("hltest-{:016x}.webhookQueue", rand::random::<u64>())
}

/// Returns a retry schedule with waits of 210 ms, 360 ms and 1010 ms.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        interval: Duration::from_millis(200),
        backoff_unit: Duration::from_millis(10),
        max_retries: 3,
    }
}

pub fn settings(queue_name: &str) -> AmqpSettings {
    AmqpSettings {
        url: amqp_url(),
        queue_name: queue_name.to_owned(),
        prefetch: 16,
        retry: fast_retry(),
        confirm_timeout: Duration::from_secs(5),
        reconnect_max_backoff: Duration::from_secs(1),
        consume: true,
    }
}

pub async fn connect(queue_name: &str) -> Arc<AmqpQueue> {
    AmqpQueue::connect(settings(queue_name))
        .await
        .expect("connect to the test broker")
}

pub fn task(payload: &[u8]) -> DeliveryTask {
    DeliveryTask {
        delivery_id: DeliveryId::generate(),
        event_id: EventId::generate(),
        application_id: ApplicationId::generate(),
        product: "order-created".into(),
        webhook_id: WebhookId::derive("order-created", "key-1"),
        idempotency_key: "key-1".into(),
        content_type: ContentType::Json,
        payload: Bytes::copy_from_slice(payload),
        attempts_made: 0,
        traceparent: None,
    }
}

pub fn delay_queue(queue_name: &str, delay_ms: u64) -> String {
    format!("{queue_name}.delay.{delay_ms}ms")
}

pub fn dead_letter_queue(queue_name: &str) -> String {
    format!("{queue_name}.dlq")
}

/// Names of the main queue, the dead-letter queue and the delay queues of
/// `retry`, computed from the schedule with whole-millisecond waits.
pub fn schedule_queues(queue_name: &str, retry: &RetryPolicy) -> Vec<String> {
    let mut names = vec![queue_name.to_owned(), dead_letter_queue(queue_name)];
    for retry_number in 1..=retry.max_retries {
        let delay_ms = u64::try_from(retry.wait(retry_number).as_millis()).unwrap();
        names.push(delay_queue(queue_name, delay_ms));
    }
    names
}

/// Receives until `count` leases arrived or `limit` passed.
pub async fn receive_until(queue: &AmqpQueue, count: usize, limit: Duration) -> Vec<Leased> {
    let deadline = Instant::now() + limit;
    let mut leased = Vec::new();
    while leased.len() < count && Instant::now() < deadline {
        let batch = queue
            .receive(
                count - leased.len(),
                Duration::from_secs(30),
                Duration::from_millis(100),
            )
            .await
            .expect("receive");
        leased.extend(batch);
    }
    leased
}

pub async fn raw_channel() -> (Connection, Channel) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("raw connection to the test broker");
    let channel = connection.create_channel().await.expect("raw channel");
    (connection, channel)
}

/// Takes one message from `queue` with `basic.get`, acknowledged at once.
pub async fn get_one(channel: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
}

/// Checks whether a queue exists with a passive declaration on a channel of
/// its own, since a failed one closes the channel.
pub async fn queue_exists(connection: &Connection, queue: &str) -> bool {
    let channel = connection.create_channel().await.expect("raw channel");
    let options = lapin::options::QueueDeclareOptions::durable().passive();
    channel
        .queue_declare(queue.into(), options, lapin::types::FieldTable::default())
        .await
        .is_ok()
}

/// Deletes the listed queues when dropped, also when the test panics.
pub struct Cleanup {
    names: Vec<String>,
}

impl Cleanup {
    pub fn new(names: Vec<String>) -> Self {
        Self { names }
    }

    pub fn add(&mut self, name: String) {
        self.names.push(name);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.names);
        // A runtime of its own, because Drop cannot await and the test's
        // runtime may be shutting down.
        let deleting = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(delete_queues(names));
        });
        let _ = deleting.join();
    }
}

async fn delete_queues(names: Vec<String>) {
    let Ok(connection) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await
    else {
        eprintln!("cleanup: cannot connect to the test broker; queues left: {names:?}");
        return;
    };
    for name in names {
        let Ok(channel) = connection.create_channel().await else {
            continue;
        };
        if let Err(error) = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            eprintln!("cleanup: deleting queue {name} failed: {error}");
            continue;
        }
        // lapin fails to close a connection while one of its channels is
        // still closing, so each channel is closed and awaited first.
        let _ = channel.close(200, "OK".into()).await;
    }
    if let Err(error) = connection.close(200, "OK".into()).await {
        eprintln!("cleanup: closing the connection failed: {error}");
    }
}
