//! Prefixed, typed identifiers (`evt_…`, `dlv_…`, `app_…`, `msg_…`).
//!
//! Random ids use UUIDv7, so they sort by creation time, which keeps the
//! SQLite and PostgreSQL indexes append-only. Their random bits come from a
//! thread-local generator that the operating system seeds (uuid's
//! `fast-rng` feature), so an id costs no system call. Without it, ingest
//! made two `getrandom` calls per event.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Creates a new random, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Parses an id, rejecting strings without the expected prefix.
            pub fn parse(value: &str) -> Option<Self> {
                let rest = value.strip_prefix($prefix)?;
                let valid = !rest.is_empty()
                    && rest.len() <= 64
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                valid.then(|| Self(value.to_owned()))
            }

            /// Wraps a value read back from storage, where it was validated on the way in.
            pub fn from_stored(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// Identifier of one accepted event.
    EventId,
    "evt_"
);
prefixed_id!(
    /// Identifier of one delivery: one event sent to one application.
    DeliveryId,
    "dlv_"
);
prefixed_id!(
    /// Identifier of a subscribed application (a webhook consumer).
    ApplicationId,
    "app_"
);
prefixed_id!(
    /// The `webhook-id` header value, stable for one product and idempotency key.
    WebhookId,
    "msg_"
);

impl WebhookId {
    /// Derives the id from product and idempotency key, so that a duplicate
    /// that slips past deduplication still carries the same `webhook-id`.
    pub fn derive(product: &str, idempotency_key: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(product.as_bytes());
        hasher.update([0u8]);
        hasher.update(idempotency_key.as_bytes());
        let digest = hasher.finalize();
        Self(format!("msg_{}", hex::encode(&digest[..16])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_id_is_deterministic() {
        let first = WebhookId::derive("order-created", "key-1");
        assert_eq!(first, WebhookId::derive("order-created", "key-1"));
        assert_ne!(first, WebhookId::derive("order-created", "key-2"));
        assert_ne!(first, WebhookId::derive("order-shipped", "key-1"));
        assert_eq!(first.as_str().len(), 4 + 32);
    }

    #[test]
    fn product_and_key_boundary_is_unambiguous() {
        assert_ne!(WebhookId::derive("ab", "c"), WebhookId::derive("a", "bc"));
    }

    #[test]
    fn parse_checks_prefix() {
        let id = ApplicationId::generate();
        assert_eq!(ApplicationId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(DeliveryId::parse(id.as_str()), None);
        assert_eq!(ApplicationId::parse("app_"), None);
        assert_eq!(ApplicationId::parse("app_a b"), None);
    }
}
