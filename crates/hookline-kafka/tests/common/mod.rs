//! Test harness: librdkafka's mock cluster, an SQLite backend in a temporary
//! directory, a creator on top of it and a running `KafkaSource`.

#![allow(unreachable_pub)]

use async_trait::async_trait;
use hookline_core::directory::StoreDirectory;
use hookline_core::queue::{DeliveryQueue, DeliveryTask};
use hookline_core::store::{
    AttemptOutcome, DeadLetter, DeliveryFilter, InsertOutcome, NewEvent, RejectedRecord,
    RejectionFilter, Store, StoreError, StoredRejection,
};
use hookline_core::usage::{HourlyUsage, OverLimitWindow, UsageBatch, UsageQuery};
use hookline_core::{
    Application, ApplicationId, ApplicationState, ContentType, DeliveryId, DeliveryRecord, EventId,
    Plan, Product, SigningSecret,
};
use hookline_creator::{Creator, CreatorSettings};
use hookline_kafka::{KafkaError, KafkaSettings, KafkaSource};
use hookline_sqlite::SqliteBackend;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::Row;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for the source to reach an expected state. The
/// mock cluster needs about 3 s for the first group join.
pub const WAIT_LIMIT: Duration = Duration::from_secs(40);

/// Timeout of the blocking metadata and offset requests to the mock cluster.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub const GROUP: &str = "hookline-creator";

/// A record to produce. A `payload` of `None` produces a tombstone.
pub struct TestRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub payload: Option<&'a [u8]>,
}

impl<'a> TestRecord<'a> {
    pub fn new(topic: &'a str, payload: &'a str) -> Self {
        Self {
            topic,
            partition: 0,
            headers: Vec::new(),
            payload: Some(payload.as_bytes()),
        }
    }

    pub fn tombstone(topic: &'a str) -> Self {
        Self {
            topic,
            partition: 0,
            headers: Vec::new(),
            payload: None,
        }
    }

    pub fn key(mut self, key: &'a str) -> Self {
        self.headers.push(("idempotentKey", key.as_bytes()));
        self
    }

    pub fn header(mut self, name: &'a str, value: &'a [u8]) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = partition;
        self
    }
}

/// A store that fails `insert_events` while `failing` is set, and counts
/// the calls, to act out a backend outage.
pub struct FlakyStore {
    inner: Arc<dyn Store>,
    pub failing: AtomicBool,
    pub insert_calls: AtomicUsize,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
            insert_calls: AtomicUsize::new(0),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("simulated outage")]
struct SimulatedOutage;

#[async_trait]
impl Store for FlakyStore {
    async fn create_product(&self, product: &Product) -> Result<(), StoreError> {
        self.inner.create_product(product).await
    }
    async fn product(&self, name: &str) -> Result<Option<Product>, StoreError> {
        self.inner.product(name).await
    }
    async fn products(&self) -> Result<Vec<Product>, StoreError> {
        self.inner.products().await
    }
    async fn update_product_schema(&self, product: &Product) -> Result<bool, StoreError> {
        self.inner.update_product_schema(product).await
    }
    async fn create_application(&self, application: &Application) -> Result<(), StoreError> {
        self.inner.create_application(application).await
    }
    async fn application(&self, id: &ApplicationId) -> Result<Option<Application>, StoreError> {
        self.inner.application(id).await
    }
    async fn applications(&self, product: Option<&str>) -> Result<Vec<Application>, StoreError> {
        self.inner.applications(product).await
    }
    async fn upsert_application(&self, application: &Application) -> Result<(), StoreError> {
        self.inner.upsert_application(application).await
    }
    async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        self.insert_calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::backend(
                "database is unreachable",
                SimulatedOutage,
            ));
        }
        self.inner.insert_events(batch).await
    }
    async fn mark_enqueued(&self, events: &[EventId]) -> Result<(), StoreError> {
        self.inner.mark_enqueued(events).await
    }
    async fn unenqueued_tasks(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<DeliveryTask>, StoreError> {
        self.inner.unenqueued_tasks(before, limit).await
    }
    async fn event_tasks(&self, event: &EventId) -> Result<Vec<DeliveryTask>, StoreError> {
        self.inner.event_tasks(event).await
    }
    async fn expire_idempotency_keys(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.expire_idempotency_keys(before).await
    }
    async fn record_rejected(&self, record: &RejectedRecord) -> Result<(), StoreError> {
        self.inner.record_rejected(record).await
    }
    async fn rejections(
        &self,
        product: &str,
        filter: &RejectionFilter,
    ) -> Result<Vec<StoredRejection>, StoreError> {
        self.inner.rejections(product, filter).await
    }
    async fn rejection(&self, id: i64) -> Result<Option<StoredRejection>, StoreError> {
        self.inner.rejection(id).await
    }
    async fn mark_replayed(&self, id: i64, event: &EventId) -> Result<bool, StoreError> {
        self.inner.mark_replayed(id, event).await
    }
    async fn record_finished(
        &self,
        outcomes: &[AttemptOutcome],
        usage: &UsageBatch,
    ) -> Result<(), StoreError> {
        self.inner.record_finished(outcomes, usage).await
    }
    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.inner.delivery(id).await
    }
    async fn deliveries(
        &self,
        application: &ApplicationId,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.deliveries(application, filter).await
    }
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.dead_letters(limit).await
    }
    async fn revive(&self, id: &DeliveryId) -> Result<Option<DeliveryTask>, StoreError> {
        self.inner.revive(id).await
    }
    async fn create_plan(&self, plan: &Plan) -> Result<(), StoreError> {
        self.inner.create_plan(plan).await
    }
    async fn plan(&self, name: &str) -> Result<Option<Plan>, StoreError> {
        self.inner.plan(name).await
    }
    async fn plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.inner.plans().await
    }
    async fn update_plan(&self, plan: &Plan) -> Result<bool, StoreError> {
        self.inner.update_plan(plan).await
    }
    async fn set_application_plan(
        &self,
        application: &ApplicationId,
        plan: &str,
    ) -> Result<bool, StoreError> {
        self.inner.set_application_plan(application, plan).await
    }
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.inner.record_usage(batch).await
    }
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<HourlyUsage>, StoreError> {
        self.inner.usage(query).await
    }
    async fn over_limit_windows(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<OverLimitWindow>, StoreError> {
        self.inner.over_limit_windows(from, to).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// One rejected record as stored in SQLite.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    pub product: Option<String>,
    pub reason: String,
    pub topic: Option<String>,
    pub partition: Option<i64>,
    pub offset: Option<i64>,
    pub payload: Option<Vec<u8>>,
}

/// A source running on its own task.
pub struct RunningSource {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), KafkaError>>,
}

impl RunningSource {
    /// Cancels the source and waits until it committed and left the group.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(WAIT_LIMIT, self.task)
            .await
            .expect("source stops within the wait limit")
            .expect("source task does not panic");
        if let Err(error) = result {
            panic!("source ended with an error: {error:?}");
        }
    }
}

pub struct Harness {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub producer: FutureProducer,
    pub store: Arc<dyn Store>,
    pub flaky: Arc<FlakyStore>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub creator: Arc<Creator>,
    pub data_dir: TempDir,
}

impl Harness {
    pub async fn new() -> Self {
        init_tracing();
        let cluster = MockCluster::new(1).expect("mock cluster starts");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("linger.ms", "0")
            .create()
            .expect("producer is created");

        let data_dir = tempfile::tempdir().expect("temporary directory");
        let backend = SqliteBackend::open(data_dir.path())
            .await
            .expect("SQLite backend opens");
        let sqlite: Arc<dyn Store> = backend.store();
        let flaky = Arc::new(FlakyStore::new(sqlite));
        let store: Arc<dyn Store> = flaky.clone();
        let queue: Arc<dyn DeliveryQueue> = backend.queue();
        // A TTL of zero turns the directory's cache off, so applications
        // created during a test are seen at once.
        let directory = Arc::new(StoreDirectory::new(store.clone(), Duration::ZERO));
        let settings = CreatorSettings {
            product_cache_ttl: Duration::ZERO,
            ..CreatorSettings::default()
        };
        let creator = Arc::new(Creator::new(
            store.clone(),
            queue.clone(),
            directory,
            settings,
        ));

        Self {
            cluster,
            producer,
            store,
            flaky,
            queue,
            creator,
            data_dir,
        }
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.cluster
            .create_topic(topic, partitions, 1)
            .expect("mock cluster creates the topic");
    }

    pub async fn create_product(&self, name: &str, topic: &str) {
        let product = Product {
            name: name.to_owned(),
            topic: topic.to_owned(),
            content_type: ContentType::Json,
            schema: None,
            validate: false,
            created_at: OffsetDateTime::now_utc(),
        };
        self.store
            .create_product(&product)
            .await
            .expect("product is stored");
    }

    /// Creates an active application subscribed to `product`.
    pub async fn subscribe(&self, name: &str, product: &str) -> ApplicationId {
        let application = Application {
            id: ApplicationId::generate(),
            name: name.to_owned(),
            product: product.to_owned(),
            plan: "free".to_owned(),
            webhook_url: "https://hooks.example.com/receive".to_owned(),
            secret: SigningSecret::generate(),
            state: ApplicationState::Active,
            created_at: OffsetDateTime::now_utc(),
        };
        self.store
            .create_application(&application)
            .await
            .expect("application is stored");
        application.id
    }

    /// Returns the settings of a source on this cluster, which reads the
    /// product list every 200 ms.
    pub fn settings(&self) -> KafkaSettings {
        // The mock coordinator of librdkafka 2.12 (rdkafka_mock_cgrp.c) waits
        // the session timeout minus 1 s for members to rejoin after any
        // change to the group, even when every member has rejoined. A short
        // session timeout keeps a re-subscription or a restart within seconds.
        let client = BTreeMap::from([("session.timeout.ms".to_owned(), "6000".to_owned())]);
        KafkaSettings {
            brokers: self.cluster.bootstrap_servers(),
            refresh_interval: Duration::from_millis(200),
            client,
            ..KafkaSettings::default()
        }
    }

    pub fn start(&self) -> RunningSource {
        self.start_with(self.settings())
    }

    pub fn start_with(&self, settings: KafkaSettings) -> RunningSource {
        let source = KafkaSource::new(settings, self.creator.clone()).expect("source is created");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source.run(shutdown.clone()));
        RunningSource { shutdown, task }
    }

    /// Produces all records, then waits for every delivery report, and
    /// returns the offset of each record.
    pub async fn produce(&self, records: &[TestRecord<'_>]) -> Vec<i64> {
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(*value),
                });
            }
            let mut message = FutureRecord::<(), [u8]>::to(record.topic)
                .partition(record.partition)
                .headers(headers);
            if let Some(payload) = record.payload {
                message = message.payload(payload);
            }
            let delivery = self
                .producer
                .send_result(message)
                .map_err(|(error, _)| error)
                .expect("record is queued for sending");
            pending.push(delivery);
        }
        let mut offsets = Vec::with_capacity(pending.len());
        for delivery in pending {
            let delivered = delivery
                .await
                .expect("producer reports the delivery")
                .map_err(|(error, _)| error)
                .expect("mock cluster stores the record");
            offsets.push(delivered.offset);
        }
        offsets
    }

    /// Returns the offset after the last record of a partition (its high watermark).
    pub fn end_offset(&self, topic: &str, partition: i32) -> i64 {
        let (_low, high) = tokio::task::block_in_place(|| {
            self.producer
                .client()
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        })
        .expect("watermarks are read");
        high
    }

    /// Reads the group's committed offset of a partition with a consumer that
    /// does not join the group. Returns `None` when nothing was committed.
    pub fn committed_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            .set("group.id", GROUP)
            .create()
            .expect("offset reader is created");
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        let committed =
            tokio::task::block_in_place(|| consumer.committed_offsets(list, REQUEST_TIMEOUT))
                .expect("committed offsets are read");
        let element = committed
            .find_partition(topic, partition)
            .expect("requested partition is in the result");
        match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    }

    pub async fn deliveries(&self, application: &ApplicationId) -> Vec<DeliveryRecord> {
        let filter = DeliveryFilter {
            limit: 1000,
            ..DeliveryFilter::default()
        };
        self.store
            .deliveries(application, &filter)
            .await
            .expect("deliveries are listed")
    }

    /// Takes every due task from the queue (leased for a minute).
    pub async fn take_tasks(&self) -> Vec<DeliveryTask> {
        let leased = self
            .queue
            .receive(1000, Duration::from_secs(60), Duration::ZERO)
            .await
            .expect("queue is read");
        leased.into_iter().map(|leased| leased.task).collect()
    }

    /// Rejected records in insertion order, read from the SQLite file
    /// because the store has no query for them.
    pub async fn rejected_records(&self) -> Vec<RejectedRow> {
        let path = self.data_dir.path().join(hookline_sqlite::DATABASE_FILE);
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("database opens for reading");
        let rows = sqlx::query(
            "SELECT product, reason, kafka_topic, kafka_partition, kafka_offset, payload \
             FROM rejected_records ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .expect("rejected records are read");
        pool.close().await;
        rows.into_iter()
            .map(|row| RejectedRow {
                product: row.get("product"),
                reason: row.get("reason"),
                topic: row.get("kafka_topic"),
                partition: row.get("kafka_partition"),
                offset: row.get("kafka_offset"),
                payload: row.get("payload"),
            })
            .collect()
    }
}

/// Polls `check` every 100 ms until it returns true. Panics after
/// [`WAIT_LIMIT`] with `condition` in the message.
pub async fn wait_for<F, Fut>(condition: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {WAIT_LIMIT:?} waiting for {condition}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends logs to the test output. `RUST_LOG` selects them, `warn` by default.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
