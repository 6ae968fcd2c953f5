//! Kafka source of the creator.
//!
//! [`KafkaSource`] consumes the topic of every product in one consumer group
//! and feeds the records to [`hookline_creator::Creator`] in batches. Each
//! record becomes one event per product that reads its topic. The
//! idempotency key is the value of a configurable record header, or
//! `"{topic}/{partition}/{offset}"` when the header is absent, so a record
//! consumed twice is deduplicated either way.
//!
//! Offsets are committed by the source, never automatically: only after the
//! creator accepted every record at or below the offset. Records that can
//! never become events (tombstones, an idempotency header that is not UTF-8,
//! payloads the creator rejects) are stored as rejected records and
//! committed. A backend outage stops consumption and retries the same batch.

mod context;
mod error;
mod lag;
mod record;
mod routes;
mod settings;
mod source;

pub use error::KafkaError;
pub use settings::KafkaSettings;
pub use source::KafkaSource;
