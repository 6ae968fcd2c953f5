//! Schema version 4: why and when Hookline disabled an application, and
//! since when its endpoint has failed every attempt.

/// `disabled_reason` and `disabled_at` (Unix milliseconds) are set when
/// Hookline disables the application and cleared when it is enabled.
/// `failing_since` is the time of the first failed attempt after the last
/// success, and NULL while the endpoint succeeds.
pub(crate) const VERSION_4: &str = r#"
ALTER TABLE applications ADD COLUMN disabled_reason TEXT;
ALTER TABLE applications ADD COLUMN disabled_at INTEGER;
ALTER TABLE applications ADD COLUMN failing_since INTEGER;
"#;
