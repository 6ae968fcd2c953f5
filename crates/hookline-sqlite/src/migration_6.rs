//! Schema version 6: the mark of an application that was enabled again.

/// `resumed_at` (Unix milliseconds) is set when an application moves from
/// disabled to active and cleared when the dispatcher takes the mark to
/// enqueue the application's kept deliveries again. The partial index keeps
/// the dispatcher's poll for marked applications cheap.
pub(crate) const VERSION_6: &str = r#"
ALTER TABLE applications ADD COLUMN resumed_at INTEGER;
CREATE INDEX applications_resumed ON applications (resumed_at) WHERE resumed_at IS NOT NULL;
"#;
