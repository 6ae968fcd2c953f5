//! Schema version 9: the trace context of each event.

/// `traceparent` is the W3C Trace Context value of the span that accepted
/// the event, so that every delivery attempt joins its trace, in whichever
/// process it runs. It is NULL when trace export was off.
pub(crate) const VERSION_9: &str = r#"
ALTER TABLE events ADD COLUMN traceparent text;
"#;
