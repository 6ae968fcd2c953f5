//! The events a benchmark sends: JSON payloads of a set size, and the
//! names that tie each receipt back to its event and application.

use bytes::Bytes;

const KEY_PREFIX: &str = "event-";
const ENDPOINT_PREFIX: &str = "app-";
/// Name of the first product, and prefix of the others' names.
pub(crate) const PRODUCT: &str = "bench-events";

/// Builds `{"sequence":N,"padding":"xxx…"}` with exactly `size` bytes, or
/// the shortest such object when `size` is smaller than that.
pub(crate) fn json_payload(sequence: u64, size: usize) -> Bytes {
    let head = format!("{{\"sequence\":{sequence},\"padding\":\"");
    let tail = "\"}";
    let padding = size.saturating_sub(head.len() + tail.len());
    let mut text = String::with_capacity(head.len() + padding + tail.len());
    text.push_str(&head);
    text.extend(std::iter::repeat_n('x', padding));
    text.push_str(tail);
    Bytes::from(text)
}

/// Returns the Idempotency-Key of event `index`, unique within a run.
pub(crate) fn idempotency_key(index: u64) -> String {
    format!("{KEY_PREFIX}{index}")
}

/// Returns the event index of a key made by [`idempotency_key`].
pub(crate) fn event_index(key: &str) -> Option<u64> {
    key.strip_prefix(KEY_PREFIX)?.parse().ok()
}

/// Returns the name of product `index`, which is also its Kafka topic:
/// `bench-events` for the first and `bench-events-N` for the others.
pub(crate) fn product_name(index: u32) -> String {
    match index {
        0 => PRODUCT.to_owned(),
        _ => format!("{PRODUCT}-{index}"),
    }
}

/// Returns the product of event `index` when events take turns among
/// `products` products.
pub(crate) fn product_of_event(index: u64, products: u32) -> u32 {
    (index % u64::from(products.max(1))) as u32
}

/// Returns the receiver endpoint (and application name) of application `index`.
pub(crate) fn endpoint_name(index: u32) -> String {
    format!("{ENDPOINT_PREFIX}{index}")
}

/// Returns the application index of an endpoint made by [`endpoint_name`].
pub(crate) fn endpoint_index(endpoint: &str) -> Option<u32> {
    endpoint.strip_prefix(ENDPOINT_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_requested_size() {
        let payload = json_payload(17, 1024);
        assert_eq!(payload.len(), 1024);
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(value["sequence"], 17);
    }

    #[test]
    fn payload_smaller_than_minimum() {
        let payload = json_payload(3, 1);
        assert_eq!(&payload[..], br#"{"sequence":3,"padding":""}"#);
    }

    #[test]
    fn events_take_turns_among_products() {
        assert_eq!(product_name(0), "bench-events");
        assert_eq!(product_name(2), "bench-events-2");
        let products: Vec<u32> = (0..6).map(|event| product_of_event(event, 3)).collect();
        assert_eq!(products, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(product_of_event(7, 1), 0);
    }

    #[test]
    fn key_and_endpoint_round_trip() {
        assert_eq!(event_index(&idempotency_key(12345)), Some(12345));
        assert_eq!(event_index("other-1"), None);
        assert_eq!(endpoint_index(&endpoint_name(99)), Some(99));
        assert_eq!(endpoint_index("raw"), None);
    }
}
