//! Loading delivery tasks: a delivery joined with its event, where the
//! payload is stored once for all of the event's deliveries.

use crate::codec::parse_content_type;
use bytes::Bytes;
use hookline_core::queue::DeliveryTask;
use hookline_core::trace::TraceParent;
use hookline_core::{ApplicationId, DeliveryId, EventId, WebhookId};
use sqlx::postgres::PgRow;
use sqlx::Row;

/// Builds a statement that selects the columns [`task_from_row`] reads from
/// `deliveries AS d` joined with `events AS e`, followed by `$tail` (a
/// `WHERE` clause and ordering).
macro_rules! task_select {
    ($tail:literal) => {
        concat!(
            "SELECT d.id, d.event_id, d.application_id, e.product, ",
            "COALESCE(d.webhook_id, e.webhook_id) AS webhook_id, e.idempotency_key, ",
            "e.content_type, e.payload, e.traceparent ",
            "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id ",
            $tail
        )
    };
}
pub(super) use task_select;

/// Builds a task with no attempts made from a row selected with
/// [`task_select!`].
pub(super) fn task_from_row(row: &PgRow) -> Result<DeliveryTask, sqlx::Error> {
    let content_type: &str = row.try_get("content_type")?;
    let payload: Vec<u8> = row.try_get("payload")?;
    let traceparent: Option<&str> = row.try_get("traceparent")?;
    Ok(DeliveryTask {
        delivery_id: DeliveryId::from_stored(row.try_get("id")?),
        event_id: EventId::from_stored(row.try_get("event_id")?),
        application_id: ApplicationId::from_stored(row.try_get("application_id")?),
        product: row.try_get("product")?,
        webhook_id: WebhookId::from_stored(row.try_get("webhook_id")?),
        idempotency_key: row.try_get("idempotency_key")?,
        content_type: parse_content_type(content_type)?,
        payload: Bytes::from(payload),
        attempts_made: 0,
        // A value that no longer parses only loses the link to the trace.
        traceparent: traceparent.and_then(TraceParent::parse).map(Box::new),
    })
}
