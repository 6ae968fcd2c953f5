//! Schema version 8: how each application receives Avro payloads.

/// `avro_format` is `binary` for the producer's bytes and `json` for the
/// payload converted to JSON at send time. Existing applications keep
/// receiving the bytes as they are.
pub(crate) const VERSION_8: &str = r#"
ALTER TABLE applications ADD COLUMN avro_format TEXT NOT NULL DEFAULT 'binary'
    CHECK (avro_format IN ('binary', 'json'));
"#;
