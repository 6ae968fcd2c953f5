//! Schema version 3: payload schemas of products, and the idempotency key
//! and replay state of rejected records.

/// `payload_schema` is JSON Schema or Avro schema text, and
/// `validate_payload` is 0 or 1. A rejected record is marked replayed at
/// most once: `replayed_at` (Unix milliseconds) and `replayed_event_id` are
/// set by the replay that made an event of it.
pub(crate) const VERSION_3: &str = r#"
ALTER TABLE products ADD COLUMN payload_schema TEXT;
ALTER TABLE products ADD COLUMN validate_payload INTEGER NOT NULL DEFAULT 0;

ALTER TABLE rejected_records ADD COLUMN idempotency_key TEXT;
ALTER TABLE rejected_records ADD COLUMN replayed_at INTEGER;
ALTER TABLE rejected_records ADD COLUMN replayed_event_id TEXT;
CREATE INDEX rejected_records_by_product ON rejected_records (product, id);
"#;
