//! The shared record of idempotency keys: one Redis string per key, whose
//! value is the id of the event first accepted with that key.

use crate::client::{RedisClient, RedisError};
use async_trait::async_trait;
use hookline_core::dedup::{DedupError, Deduplicator, KeyRef};
use hookline_core::EventId;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// [`Deduplicator`] backed by Redis, shared by all replicas that use the
/// same server and key prefix.
pub struct RedisDeduplicator {
    client: RedisClient,
}

impl RedisDeduplicator {
    pub fn new(client: RedisClient) -> Self {
        Self { client }
    }

    /// Builds the Redis key `<prefix>idem:<hex SHA-256>` of one idempotency
    /// key. The digest covers the product's byte length (8 bytes,
    /// big-endian), the product and the key, so a `:` or any other character
    /// in either part cannot make two pairs share an entry.
    fn entry_key(&self, key: &KeyRef) -> String {
        let mut digest = Sha256::new();
        digest.update((key.product.len() as u64).to_be_bytes());
        digest.update(key.product.as_bytes());
        digest.update(key.key.as_bytes());
        self.client
            .prefixed(&format!("idem:{}", hex::encode(digest.finalize())))
    }
}

fn dedup_failure(error: RedisError) -> DedupError {
    DedupError {
        message: error.to_string(),
        source: Some(Box::new(error)),
    }
}

/// Converts a stored value into an event id. A value that is not an event id
/// (written by something else) counts as unknown, because the state store
/// still rejects a duplicate that this record misses.
fn stored_event_id(entry_key: &str, value: Option<String>) -> Option<EventId> {
    let value = value?;
    let event_id = EventId::parse(&value);
    if event_id.is_none() {
        tracing::warn!(
            key = entry_key,
            "Ignoring idempotency entry whose value is not an event id"
        );
    }
    event_id
}

/// Converts `ttl` into whole milliseconds for `SET … PX`, rounding up.
fn ttl_millis(ttl: Duration) -> Result<u64, RedisError> {
    if ttl.is_zero() {
        return Err(RedisError::InvalidSettings(
            "idempotency key retention must be greater than zero".to_owned(),
        ));
    }
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).map_err(|_| {
        RedisError::InvalidSettings(format!("idempotency key retention {ttl:?} is too long"))
    })
}

#[async_trait]
impl Deduplicator for RedisDeduplicator {
    /// Reads the whole batch with one `MGET`.
    async fn seen(&self, keys: &[KeyRef]) -> Result<Vec<Option<EventId>>, DedupError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let entry_keys: Vec<String> = keys.iter().map(|key| self.entry_key(key)).collect();
        let mut mget = redis::cmd("MGET");
        mget.arg(&entry_keys);
        let mut connection = self.client.connection();
        let request = mget.query_async::<Vec<Option<String>>>(&mut connection);
        let values = self
            .client
            .bounded("MGET", request)
            .await
            .map_err(dedup_failure)?;
        if values.len() != entry_keys.len() {
            return Err(dedup_failure(RedisError::UnexpectedReply {
                command: "MGET",
                detail: format!("{} values for {} keys", values.len(), entry_keys.len()),
            }));
        }
        let event_ids = entry_keys
            .iter()
            .zip(values)
            .map(|(entry_key, value)| stored_event_id(entry_key, value))
            .collect();
        Ok(event_ids)
    }

    /// Writes the batch with one pipeline of `SET key event_id NX PX ttl`,
    /// so an existing entry keeps its event id and its expiry. The pipeline
    /// is not a transaction, so a failed call may still write some entries.
    async fn remember(
        &self,
        entries: &[(KeyRef, EventId)],
        ttl: Duration,
    ) -> Result<(), DedupError> {
        if entries.is_empty() {
            return Ok(());
        }
        let ttl_ms = ttl_millis(ttl).map_err(dedup_failure)?;
        let mut pipeline = redis::pipe();
        for (key, event_id) in entries {
            pipeline
                .cmd("SET")
                .arg(self.entry_key(key))
                .arg(event_id.as_str())
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
        }
        let mut connection = self.client.connection();
        let request = pipeline.exec_async(&mut connection);
        self.client
            .bounded("SET", request)
            .await
            .map_err(dedup_failure)
    }
}
