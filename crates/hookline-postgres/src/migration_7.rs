//! Schema version 7: deliveries that replay an earlier delivery.

/// A replay is a new delivery of the same event to the same application.
/// `webhook_id` is the replay's own `webhook-id`, which replaces the event's
/// (NULL for every delivery that is not a replay). `replay_of` is the id of
/// the replayed delivery. It has no foreign key, so that a replay does not
/// keep its original from being deleted.
pub(crate) const VERSION_7: &str = r#"
ALTER TABLE deliveries ADD COLUMN webhook_id text;
ALTER TABLE deliveries ADD COLUMN replay_of text;
"#;
