//! Loading delivery tasks: a delivery joined with its event, which stores the
//! payload once for all of the event's deliveries.

use crate::codec::parse_content_type;
use bytes::Bytes;
use hookline_core::queue::DeliveryTask;
use hookline_core::trace::TraceParent;
use hookline_core::{ApplicationId, DeliveryId, EventId, WebhookId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// Builds a statement that selects the columns [`task_from_row`] reads, with
/// `$tail` (more joins, a `WHERE` clause and ordering) after the join. With
/// `attempts_made` first, it also selects `q.attempts_made`, which `$tail`
/// must join as the `queue` table aliased `q`.
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
    (attempts_made, $tail:literal) => {
        concat!(
            "SELECT d.id, d.event_id, d.application_id, e.product, ",
            "COALESCE(d.webhook_id, e.webhook_id) AS webhook_id, e.idempotency_key, ",
            "e.content_type, e.payload, e.traceparent, q.attempts_made ",
            "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id ",
            $tail
        )
    };
}
pub(crate) use task_select;

/// Builds a task from a row selected with [`task_select!`].
pub(crate) fn task_from_row(
    row: &SqliteRow,
    attempts_made: u32,
) -> Result<DeliveryTask, sqlx::Error> {
    let content_type: &str = row.try_get(6)?;
    let payload: Vec<u8> = row.try_get(7)?;
    let traceparent: Option<&str> = row.try_get("traceparent")?;
    Ok(DeliveryTask {
        delivery_id: DeliveryId::from_stored(row.try_get(0)?),
        event_id: EventId::from_stored(row.try_get(1)?),
        application_id: ApplicationId::from_stored(row.try_get(2)?),
        product: row.try_get(3)?,
        webhook_id: WebhookId::from_stored(row.try_get(4)?),
        idempotency_key: row.try_get(5)?,
        content_type: parse_content_type(content_type)?,
        payload: Bytes::from(payload),
        attempts_made,
        // A value that no longer parses only loses the link to the trace.
        traceparent: traceparent.and_then(TraceParent::parse).map(Box::new),
    })
}
