use bytes::Bytes;
use hookline_core::content::PayloadError;
use hookline_core::directory::{Directory, DirectoryError};
use hookline_core::queue::{DeliveryQueue, QueueError};
use hookline_core::store::{InsertOutcome, NewEvent, RejectedRecord, Store, StoreError};
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
}

/// Limits applied to incoming events.
#[derive(Debug, Clone)]
pub struct CreatorSettings {
    /// Largest accepted payload in bytes.
    pub max_payload_size: usize,
    /// How long a product definition is cached.
    pub product_cache_ttl: Duration,
}

impl Default for CreatorSettings {
    fn default() -> Self {
        Self {
            max_payload_size: 1024 * 1024,
            product_cache_ttl: Duration::from_secs(5),
        }
    }
}

const MAX_KEY_BYTES: usize = 256;

/// Deduplicates, fans out and enqueues events.
pub struct Creator {
    store: Arc<dyn Store>,
    queue: Arc<dyn DeliveryQueue>,
    directory: Arc<dyn Directory>,
    settings: CreatorSettings,
    /// Products by name with the time they were read; never held across an await.
    products: RwLock<HashMap<String, (Product, std::time::Instant)>>,
}

impl Creator {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn DeliveryQueue>,
        directory: Arc<dyn Directory>,
        settings: CreatorSettings,
    ) -> Self {
        Self {
            store,
            queue,
            directory,
            settings,
            products: RwLock::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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

        for (index, incoming) in batch.into_iter().enumerate() {
            match self.prepare(incoming).await? {
                Ok(new_event) => {
                    new_events.push(new_event);
                    positions.push(index);
                }
                Err(rejected) => results[index] = Some(Err(rejected)),
            }
        }

        let outcomes = self.store.insert_events(&new_events).await?;
        let accepted = self.enqueue_new(&new_events, &outcomes).await?;
        for (position, accepted) in positions.into_iter().zip(accepted) {
            results[position] = Some(Ok(accepted));
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every index is filled"))
            .collect())
    }

    /// Enqueues the tasks of inserted events, and those of earlier duplicates
    /// whose enqueueing a crash interrupted; then marks them enqueued.
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
                    tasks.extend(tasks_of(new_event));
                    to_mark.push(new_event.event.id.clone());
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

    /// Checks one incoming event and fans it out. The outer `Result` is a
    /// backend failure, the inner one the event's own fault.
    async fn prepare(
        &self,
        incoming: IncomingEvent,
    ) -> Result<Result<NewEvent, Rejected>, CreatorError> {
        let Some(product) = self.product(&incoming.product).await? else {
            return Ok(Err(Rejected::UnknownProduct(incoming.product)));
        };
        if let Err(rejected) = self.check(&product, &incoming) {
            return Ok(Err(rejected));
        }

        let subscribers = self.directory.subscribers(&product.name).await?;
        let id = EventId::generate();
        let key = incoming.idempotency_key.unwrap_or_else(|| id.to_string());
        let event = Event {
            webhook_id: WebhookId::derive(&product.name, &key),
            id,
            product: product.name,
            idempotency_key: key,
            content_type: product.content_type,
            payload: incoming.payload,
            source: incoming.source,
            received_at: OffsetDateTime::now_utc(),
        };
        let deliveries = subscribers
            .iter()
            .map(|application| (DeliveryId::generate(), application.clone()))
            .collect();
        Ok(Ok(NewEvent { event, deliveries }))
    }

    fn check(&self, product: &Product, incoming: &IncomingEvent) -> Result<(), Rejected> {
        let size = incoming.payload.len();
        if size > self.settings.max_payload_size {
            return Err(Rejected::TooLarge {
                size,
                max: self.settings.max_payload_size,
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

fn tasks_of(new_event: &NewEvent) -> impl Iterator<Item = hookline_core::queue::DeliveryTask> + '_ {
    let event = &new_event.event;
    new_event
        .deliveries
        .iter()
        .map(
            move |(delivery_id, application_id)| hookline_core::queue::DeliveryTask {
                delivery_id: delivery_id.clone(),
                event_id: event.id.clone(),
                application_id: application_id.clone(),
                product: event.product.clone(),
                webhook_id: event.webhook_id.clone(),
                idempotency_key: event.idempotency_key.clone(),
                content_type: event.content_type,
                payload: event.payload.clone(),
                attempts_made: 0,
            },
        )
}
