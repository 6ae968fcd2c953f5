//! Schema version 3: payload schemas of products, and the idempotency key
//! and replay state of rejected records.

/// `payload_schema` is JSON Schema or Avro schema text. A rejected record
/// is marked replayed at most once: `replayed_at` and `replayed_event_id`
/// are set by the replay that made an event of it.
pub(crate) const VERSION_3: &str = r#"
ALTER TABLE products ADD COLUMN payload_schema text;
ALTER TABLE products ADD COLUMN validate_payload boolean NOT NULL DEFAULT false;

ALTER TABLE rejected_records ADD COLUMN idempotency_key text;
ALTER TABLE rejected_records ADD COLUMN replayed_at timestamptz;
ALTER TABLE rejected_records ADD COLUMN replayed_event_id text;
CREATE INDEX rejected_records_by_product ON rejected_records (product, id);
"#;
