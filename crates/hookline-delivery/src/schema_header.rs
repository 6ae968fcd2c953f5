//! The `webhook-schema-id` header of Avro deliveries.

use hookline_core::formats::avro;
use hookline_core::queue::DeliveryTask;
use hookline_core::ContentType;

/// Header that carries the schema-registry id of an Avro payload.
pub const SCHEMA_ID_HEADER: &str = "webhook-schema-id";

/// Returns the schema id of an Avro payload in the schema-registry wire
/// format. The payload itself is sent unchanged, wire-format header included.
/// A payload converted to JSON has the content type JSON, so it gets none.
///
/// NOTE: the id is read from the payload, so a raw Avro datum (of a product
/// with its own schema) that starts with a zero byte and has at least 5
/// bytes also gets the header.
pub(crate) fn schema_id(task: &DeliveryTask) -> Option<u32> {
    if task.content_type != ContentType::Avro {
        return None;
    }
    avro::split_wire_format(&task.payload).map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hookline_core::{ApplicationId, DeliveryId, EventId, WebhookId};

    fn task(content_type: ContentType, payload: &'static [u8]) -> DeliveryTask {
        DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            application_id: ApplicationId::generate(),
            product: "orders".into(),
            webhook_id: WebhookId::derive("orders", "k1"),
            idempotency_key: "k1".into(),
            content_type,
            payload: Bytes::from_static(payload),
            attempts_made: 0,
            traceparent: None,
        }
    }

    #[test]
    fn schema_id_comes_from_wire_format_avro() {
        assert_eq!(
            schema_id(&task(ContentType::Avro, &[0, 0, 0, 1, 2, 6])),
            Some(258)
        );
        assert_eq!(schema_id(&task(ContentType::Avro, &[6, 65, 66, 67])), None);
        assert_eq!(schema_id(&task(ContentType::Json, &[0, 0, 0, 1, 2])), None);
    }
}
