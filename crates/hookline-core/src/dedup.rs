//! A shared, fast record of idempotency keys in front of the state store.
//!
//! The state store stays the exact authority: it rejects a second event with
//! a known key even when this record has lost it. The record lets replicas
//! drop duplicates without a database round trip, and it only learns a key
//! once every task of that key's event is enqueued, so a crash before that
//! point never makes a redelivered event look like a duplicate.

use crate::EventId;
use async_trait::async_trait;
use std::time::Duration;

/// A product and an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    pub product: String,
    pub key: String,
}

/// Failure to reach the shared record.
#[derive(Debug, thiserror::Error)]
#[error("idempotency key store failed: {message}")]
pub struct DedupError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Shared record of idempotency keys whose events are fully enqueued.
#[async_trait]
pub trait Deduplicator: Send + Sync + 'static {
    /// Looks keys up; each entry is the event first accepted with that key.
    async fn seen(&self, keys: &[KeyRef]) -> Result<Vec<Option<EventId>>, DedupError>;
    /// Remembers keys for `ttl` without overwriting an existing entry.
    async fn remember(
        &self,
        entries: &[(KeyRef, EventId)],
        ttl: Duration,
    ) -> Result<(), DedupError>;
}

/// No shared record: the state store alone deduplicates, as in the embedded mode.
pub struct StoreOnly;

#[async_trait]
impl Deduplicator for StoreOnly {
    async fn seen(&self, keys: &[KeyRef]) -> Result<Vec<Option<EventId>>, DedupError> {
        Ok(vec![None; keys.len()])
    }

    async fn remember(
        &self,
        _entries: &[(KeyRef, EventId)],
        _ttl: Duration,
    ) -> Result<(), DedupError> {
        Ok(())
    }
}
