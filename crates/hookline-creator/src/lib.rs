//! The creator turns incoming events into durable delivery tasks.
//!
//! For each event it checks the payload against its product, drops
//! duplicates by idempotency key, fans out one delivery per subscribed
//! application, stores event and deliveries, and enqueues the tasks. A
//! source (HTTP ingest, Kafka) acknowledges an event only after
//! [`Creator::accept`] returned it as accepted, so a crash at any point loses
//! nothing: the source redelivers, and deduplication finds the stored event
//! and finishes its enqueueing.
//!
//! [`Creator`] also implements
//! [`hookline_core::formats::avro_json::AvroJsonConverter`], so that a
//! dispatcher converts Avro payloads to JSON with the schemas the creator
//! validates with.

mod batcher;
mod creator;
mod json_conversion;
mod registry;
mod validation;

pub use batcher::{IngestBatcher, IngestError};
pub use creator::{
    check_incoming, Accepted, Creator, CreatorError, CreatorSettings, DedupFailure, IncomingEvent,
    Rejected,
};
pub use registry::{RegistryError, SchemaRegistry};
