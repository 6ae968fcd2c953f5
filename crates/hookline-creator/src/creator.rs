use crate::registry::{RegistryError, SchemaRegistry};
use crate::validation::Validator;
use bytes::Bytes;
use hookline_core::content::PayloadError;
use hookline_core::dedup::{DedupError, Deduplicator, KeyRef, StoreOnly};
use hookline_core::directory::{Directory, DirectoryError};
use hookline_core::formats;
use hookline_core::queue::{DeliveryQueue, QueueError};
use hookline_core::shared_database::SharedDatabase;
use hookline_core::store::{InsertOutcome, NewEvent, RejectedRecord, Store, StoreError};
use hookline_core::trace::{self, TraceParent};
use hookline_core::{ContentType, DeliveryId, Event, EventId, EventSource, Product, WebhookId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;

/// An event as a source received it, before any check.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    pub product: String,
    /// The producer's key; `None` makes the event unique (no deduplication).
    pub idempotency_key: Option<String>,
    /// The content type the producer declared, if any.
    pub content_type: Option<String>,
    pub payload: Bytes,
    pub source: EventSource,
    /// Span of the source's work on this event (the Kafka record or the
    /// ingest request), parent of the event's span. [`tracing::Span::none`]
    /// when traces are not exported.
    pub span: tracing::Span,
}

/// An event that is stored and whose tasks are all enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Created {
        event_id: EventId,
        deliveries: usize,
    },
    Duplicate {
        event_id: EventId,
    },
}

/// An event that can never be accepted as it is: the caller's input is wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("product {0:?} does not exist; create it with POST /api/v1/products first")]
    UnknownProduct(String),
    #[error("content type {given:?} does not match product {product:?}, which takes {expected}")]
    ContentTypeMismatch {
        product: String,
        given: String,
        expected: ContentType,
    },
    #[error(
        "payload is {size} bytes, more than the limit of {max} bytes (ingest.max_payload_size)"
    )]
    TooLarge { size: usize, max: usize },
    #[error("idempotency key is {0} bytes; keys may be at most 256 bytes")]
    KeyTooLong(usize),
    #[error(transparent)]
    InvalidPayload(#[from] PayloadError),
    #[error(
        "the schema of product {product:?} does not compile ({message}); fix it with \
         PATCH /api/v1/products/{product}"
    )]
    InvalidSchema { product: String, message: String },
    #[error(
        "Avro payload names schema id {schema_id}, but schema_registry.url is not set, so \
         product {product:?} cannot decode it; set the URL or give the product a schema"
    )]
    NoSchemaRegistry { product: String, schema_id: u32 },
}

/// A backend failed; nothing was acknowledged, so the source retries.
#[derive(Debug, thiserror::Error)]
pub enum CreatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The shared idempotency key store is unreachable and the creator is
    /// configured to wait for it rather than rely on the state store alone.
    #[error(transparent)]
    Dedup(#[from] DedupError),
    /// The schema registry is unreachable or failed; the event is retried.
    #[error(transparent)]
    SchemaRegistry(#[from] RegistryError),
}

/// Creator behaviour while the shared idempotency key store is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupFailure {
    /// Accept nothing until it is back; sources retry (the default).
    #[default]
    FailClosed,
    /// Carry on with the state store's exact check alone.
    StoreOnly,
}

/// Limits applied to incoming events.
#[derive(Debug, Clone)]
pub struct CreatorSettings {
    /// Largest accepted payload in bytes.
    pub max_payload_size: usize,
    /// How long a product definition is cached.
    pub product_cache_ttl: Duration,
    /// How long the shared record keeps an idempotency key.
    pub dedup_retention: Duration,
    pub dedup_failure: DedupFailure,
}

impl Default for CreatorSettings {
    fn default() -> Self {
        Self {
            max_payload_size: 1024 * 1024,
            product_cache_ttl: Duration::from_secs(5),
            dedup_retention: Duration::from_secs(7 * 24 * 3600),
            dedup_failure: DedupFailure::FailClosed,
        }
    }
}

const MAX_KEY_BYTES: usize = 256;

/// Checks an incoming event against its product before anything is stored:
/// the payload size, the idempotency key's length, the declared content type
/// and the payload's well-formedness. Schemas are checked after this.
pub fn check_incoming(
    product: &Product,
    incoming: &IncomingEvent,
    max_payload_size: usize,
) -> Result<(), Rejected> {
    let size = incoming.payload.len();
    if size > max_payload_size {
        return Err(Rejected::TooLarge {
            size,
            max: max_payload_size,
        });
    }
    if let Some(key) = &incoming.idempotency_key {
        if key.len() > MAX_KEY_BYTES {
            return Err(Rejected::KeyTooLong(key.len()));
        }
    }
    if let Some(given) = &incoming.content_type {
        if ContentType::parse(given) != Some(product.content_type) {
            return Err(Rejected::ContentTypeMismatch {
                product: product.name.clone(),
                given: given.clone(),
                expected: product.content_type,
            });
        }
    }
    product.content_type.check_payload(&incoming.payload)?;
    Ok(())
}

/// Deduplicates, fans out and enqueues events.
pub struct Creator {
    store: Arc<dyn Store>,
    queue: Arc<dyn DeliveryQueue>,
    directory: Arc<dyn Directory>,
    dedup: Arc<dyn Deduplicator>,
    /// Inserts and enqueues in one transaction when the store and the
    /// queue share a database.
    shared: Option<Arc<dyn SharedDatabase>>,
    settings: CreatorSettings,
    /// Products by name with the time they were read; never held across an await.
    products: RwLock<HashMap<String, (Product, std::time::Instant)>>,
    validator: Validator,
}

impl Creator {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn DeliveryQueue>,
        directory: Arc<dyn Directory>,
        settings: CreatorSettings,
    ) -> Self {
        // A string or bytes value of an Avro datum is never longer than the
        // payload, so no single allocation while decoding needs more.
        formats::avro::limit_allocations(settings.max_payload_size);
        Self {
            store,
            queue,
            directory,
            dedup: Arc::new(StoreOnly),
            shared: None,
            settings,
            products: RwLock::new(HashMap::new()),
            validator: Validator::default(),
        }
    }

    /// Looks up the schemas of Avro payloads in the schema-registry wire
    /// format in `registry`.
    pub fn with_schema_registry(mut self, registry: SchemaRegistry) -> Self {
        self.validator.set_registry(registry);
        self
    }

    /// Puts a shared idempotency key store in front of the state store.
    pub fn with_deduplicator(mut self, dedup: Arc<dyn Deduplicator>) -> Self {
        self.dedup = dedup;
        self
    }

    /// Inserts events and enqueues their tasks in one transaction of
    /// `shared`, which must hold this creator's store and queue.
    pub fn with_shared_database(mut self, shared: Arc<dyn SharedDatabase>) -> Self {
        self.shared = Some(shared);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Accepts a batch of events. Each entry of the result matches the input
    /// at the same index. `Err` means nothing in the batch may be acknowledged.
    pub async fn accept(
        &self,
        batch: Vec<IncomingEvent>,
    ) -> Result<Vec<Result<Accepted, Rejected>>, CreatorError> {
        let mut results: Vec<Option<Result<Accepted, Rejected>>> = vec![None; batch.len()];
        let mut new_events = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        // Each event's span stays open until its tasks are enqueued.
        let mut event_spans = Vec::with_capacity(batch.len());

        for (index, incoming) in batch.into_iter().enumerate() {
            match self.prepare(incoming).await? {
                Ok((new_event, span)) => {
                    new_events.push(new_event);
                    positions.push(index);
                    event_spans.push(span);
                }
                Err(rejected) => results[index] = Some(Err(rejected)),
            }
        }

        let (new_events, positions) = self.drop_known(new_events, positions, &mut results).await?;
        let outcomes = match &self.shared {
            Some(shared) => shared.insert_and_enqueue(&new_events).await?,
            None => self.store.insert_events(&new_events).await?,
        };
        let accepted = self.enqueue_new(&new_events, &outcomes).await?;
        self.remember(&new_events, &accepted).await;
        for (position, accepted) in positions.into_iter().zip(accepted) {
            results[position] = Some(Ok(accepted));
        }
        drop(event_spans);
        count_results(&results);
        Ok(results
            .into_iter()
            .map(|r| r.expect("every index is filled"))
            .collect())
    }

    /// Marks events whose key the shared record contains as duplicates and
    /// returns the others with their positions.
    async fn drop_known(
        &self,
        new_events: Vec<NewEvent>,
        positions: Vec<usize>,
        results: &mut [Option<Result<Accepted, Rejected>>],
    ) -> Result<(Vec<NewEvent>, Vec<usize>), CreatorError> {
        if new_events.is_empty() {
            return Ok((new_events, positions));
        }
        let keys: Vec<KeyRef> = new_events.iter().map(key_of).collect();
        let seen = match self.dedup.seen(&keys).await {
            Ok(seen) => seen,
            Err(error) if self.settings.dedup_failure == DedupFailure::StoreOnly => {
                metrics::counter!("hookline_dedup_unavailable_total").increment(1);
                tracing::warn!(%error, "Idempotency key store unavailable; relying on the state store");
                vec![None; keys.len()]
            }
            Err(error) => {
                metrics::counter!("hookline_dedup_unavailable_total").increment(1);
                tracing::warn!(%error, "Idempotency key store unavailable; not accepting events until it is back");
                return Err(error.into());
            }
        };
        let mut kept = Vec::with_capacity(new_events.len());
        let mut kept_positions = Vec::with_capacity(positions.len());
        for ((new_event, position), existing) in new_events.into_iter().zip(positions).zip(seen) {
            match existing {
                Some(event_id) => results[position] = Some(Ok(Accepted::Duplicate { event_id })),
                None => {
                    kept.push(new_event);
                    kept_positions.push(position);
                }
            }
        }
        Ok((kept, kept_positions))
    }

    /// Records the keys of fully enqueued events in the shared record. A
    /// failure only costs a state store lookup for a later duplicate.
    async fn remember(&self, new_events: &[NewEvent], accepted: &[Accepted]) {
        let entries: Vec<(KeyRef, EventId)> = new_events
            .iter()
            .zip(accepted)
            .map(|(new_event, accepted)| match accepted {
                Accepted::Created { event_id, .. } | Accepted::Duplicate { event_id } => {
                    (key_of(new_event), event_id.clone())
                }
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        if let Err(error) = self
            .dedup
            .remember(&entries, self.settings.dedup_retention)
            .await
        {
            tracing::warn!(%error, keys = entries.len(), "Remembering idempotency keys failed");
        }
    }

    /// Enqueues the tasks of inserted events and of earlier duplicates whose
    /// enqueueing a crash interrupted, then marks them enqueued. A shared
    /// database has already enqueued and marked the inserted events.
    async fn enqueue_new(
        &self,
        new_events: &[NewEvent],
        outcomes: &[InsertOutcome],
    ) -> Result<Vec<Accepted>, CreatorError> {
        let inserted: HashSet<&EventId> = new_events
            .iter()
            .zip(outcomes)
            .filter(|(_, outcome)| **outcome == InsertOutcome::Inserted)
            .map(|(new_event, _)| &new_event.event.id)
            .collect();

        let mut tasks = Vec::new();
        let mut to_mark = Vec::new();
        let mut accepted = Vec::with_capacity(new_events.len());
        for (new_event, outcome) in new_events.iter().zip(outcomes) {
            match outcome {
                InsertOutcome::Inserted => {
                    if self.shared.is_none() {
                        tasks.extend(new_event.tasks());
                        to_mark.push(new_event.event.id.clone());
                    }
                    accepted.push(Accepted::Created {
                        event_id: new_event.event.id.clone(),
                        deliveries: new_event.deliveries.len(),
                    });
                }
                InsertOutcome::Duplicate { existing, enqueued } => {
                    if !enqueued && !inserted.contains(existing) && !to_mark.contains(existing) {
                        tracing::info!(event_id = %existing, "Resuming enqueue of a stored event");
                        tasks.extend(self.store.event_tasks(existing).await?);
                        to_mark.push(existing.clone());
                    }
                    accepted.push(Accepted::Duplicate {
                        event_id: existing.clone(),
                    });
                }
            }
        }

        if !tasks.is_empty() {
            self.queue.enqueue(tasks).await?;
        }
        if !to_mark.is_empty() {
            self.store.mark_enqueued(&to_mark).await?;
        }
        Ok(accepted)
    }

    /// Checks one incoming event and fans it out, and opens the event's
    /// span. The outer `Result` is a backend failure, the inner one the
    /// event's own fault.
    async fn prepare(
        &self,
        incoming: IncomingEvent,
    ) -> Result<Result<(NewEvent, tracing::Span), Rejected>, CreatorError> {
        let Some(product) = self.product(&incoming.product).await? else {
            return Ok(Err(Rejected::UnknownProduct(incoming.product)));
        };
        if let Err(rejected) = self.check(&product, &incoming) {
            return Ok(Err(rejected));
        }
        if let Err(rejected) = self.validator.check(&product, &incoming.payload).await? {
            return Ok(Err(rejected));
        }

        let subscribers = self.directory.subscribers(&product.name).await?;
        let id = EventId::generate();
        let key = incoming.idempotency_key.unwrap_or_else(|| id.to_string());
        let webhook_id = WebhookId::derive(&product.name, &key);
        let span = event_span(&incoming.span, &product.name, &id, &webhook_id);
        span.record("hookline.deliveries", subscribers.len());
        let event = Event {
            webhook_id,
            id,
            product: product.name,
            idempotency_key: key,
            content_type: product.content_type,
            payload: incoming.payload,
            source: incoming.source,
            received_at: OffsetDateTime::now_utc(),
            traceparent: TraceParent::of_span(&span),
        };
        let deliveries = subscribers
            .iter()
            .map(|application| (DeliveryId::generate(), application.clone()))
            .collect();
        Ok(Ok((NewEvent { event, deliveries }, span)))
    }

    fn check(&self, product: &Product, incoming: &IncomingEvent) -> Result<(), Rejected> {
        check_incoming(product, incoming, self.settings.max_payload_size)
    }

    /// Looks a product up through a short-lived cache.
    pub async fn product(&self, name: &str) -> Result<Option<Product>, StoreError> {
        let ttl = self.settings.product_cache_ttl;
        if let Some((product, read_at)) = self.products.read().expect("cache lock").get(name) {
            if read_at.elapsed() < ttl {
                return Ok(Some(product.clone()));
            }
        }
        let product = self.store.product(name).await?;
        if let Some(product) = &product {
            let entry = (product.clone(), std::time::Instant::now());
            self.products
                .write()
                .expect("cache lock")
                .insert(name.to_owned(), entry);
        }
        Ok(product)
    }

    /// Keeps a record that could not become an event, with its reason.
    pub async fn reject(&self, record: RejectedRecord) -> Result<(), StoreError> {
        tracing::warn!(
            product = record.product.as_deref().unwrap_or("-"),
            topic = record.topic.as_deref().unwrap_or("-"),
            partition = record.partition,
            offset = record.offset,
            reason = %record.reason,
            "Rejected record"
        );
        self.store.record_rejected(&record).await
    }

    /// Enqueues the tasks of events stored before `before` whose enqueueing
    /// was never confirmed. Returns how many tasks were enqueued again.
    pub async fn recover(&self, before: OffsetDateTime) -> Result<usize, CreatorError> {
        let mut total = 0;
        loop {
            let tasks = self.store.unenqueued_tasks(before, 1000).await?;
            if tasks.is_empty() {
                return Ok(total);
            }
            let mut events: Vec<EventId> = tasks.iter().map(|task| task.event_id.clone()).collect();
            events.dedup();
            total += tasks.len();
            self.queue.enqueue(tasks).await?;
            self.store.mark_enqueued(&events).await?;
        }
    }
}

fn count_results(results: &[Option<Result<Accepted, Rejected>>]) {
    for result in results.iter().flatten() {
        let outcome = match result {
            Ok(Accepted::Created { .. }) => "created",
            Ok(Accepted::Duplicate { .. }) => "duplicate",
            Err(_) => "rejected",
        };
        metrics::counter!("hookline_events_total", "outcome" => outcome).increment(1);
    }
}

fn key_of(new_event: &NewEvent) -> KeyRef {
    KeyRef {
        product: new_event.event.product.clone(),
        key: new_event.event.idempotency_key.clone(),
    }
}

/// Opens the span of one accepted event as a child of its source's span.
/// The span ends as soon as it is dropped, but its context is stored with
/// the event, so the delivery attempts become its children.
fn event_span(
    parent: &tracing::Span,
    product: &str,
    event_id: &EventId,
    webhook_id: &WebhookId,
) -> tracing::Span {
    tracing::info_span!(
        target: trace::TARGET,
        parent: parent,
        "hookline.event",
        hookline.product = product,
        hookline.event_id = %event_id,
        hookline.webhook_id = %webhook_id,
        hookline.deliveries = tracing::field::Empty,
    )
}
