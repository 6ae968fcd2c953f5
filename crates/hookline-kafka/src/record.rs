//! Consumed records and the events and rejections made from them.

use crate::routes::Routes;
use bytes::Bytes;
use hookline_core::store::RejectedRecord;
use hookline_core::trace::{self, TraceParent};
use hookline_core::EventSource;
use hookline_creator::{Accepted, IncomingEvent, Rejected};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use time::OffsetDateTime;

/// A consumed record, copied out of librdkafka's buffer so that it outlives
/// the message and can be retried.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// The idempotency header's value. `Err` contains the reason it cannot be used.
    key: Result<Option<String>, String>,
    /// `None` for a tombstone.
    payload: Option<Bytes>,
    /// The record's `traceparent` header, read only while traces are exported.
    traceparent: Option<TraceParent>,
}

impl Record {
    /// Copies a message. When `key_header` occurs more than once, its last
    /// value is used, and a header with a null value counts as absent.
    pub(crate) fn from_message(message: &BorrowedMessage<'_>, key_header: &str) -> Self {
        let raw_key = message.headers().and_then(|headers| {
            headers
                .iter()
                .filter(|header| header.key == key_header)
                .last()
                .and_then(|header| header.value)
        });
        let key = match raw_key.map(std::str::from_utf8) {
            None => Ok(None),
            Some(Ok(key)) => Ok(Some(key.to_owned())),
            Some(Err(error)) => Err(format!(
                "header {key_header:?} is not valid UTF-8 ({error}); the idempotency key must be text"
            )),
        };
        let mut record = Self::new(
            message.topic().to_owned(),
            message.partition(),
            message.offset(),
            key,
            message.payload().map(Bytes::copy_from_slice),
        );
        if trace::export_enabled() {
            record.traceparent = traceparent_header(message);
        }
        record
    }

    pub(crate) fn new(
        topic: String,
        partition: i32,
        offset: i64,
        key: Result<Option<String>, String>,
        payload: Option<Bytes>,
    ) -> Self {
        Self {
            topic,
            partition,
            offset,
            key,
            payload,
            traceparent: None,
        }
    }

    /// Opens the span of consuming this record for `product`. It continues
    /// the producer's trace when the record has a valid `traceparent`.
    fn consume_span(&self, product: &str) -> tracing::Span {
        let span = tracing::info_span!(
            target: trace::TARGET,
            "kafka.consume",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %self.topic,
            messaging.destination.partition.id = self.partition,
            messaging.kafka.offset = self.offset,
            hookline.product = product,
        );
        if let Some(parent) = &self.traceparent {
            parent.adopt_into(&span);
        }
        span
    }

    /// The key that an event of this record gets: the header's value, or
    /// the record's position when the header is absent. `None` when the
    /// header is unusable.
    fn idempotency_key(&self) -> Option<String> {
        match &self.key {
            Ok(Some(key)) => Some(key.clone()),
            Ok(None) => Some(format!("{}/{}/{}", self.topic, self.partition, self.offset)),
            Err(_) => None,
        }
    }

    fn rejection(&self, product: &str, reason: String) -> RejectedRecord {
        RejectedRecord {
            product: Some(product.to_owned()),
            reason,
            topic: Some(self.topic.clone()),
            partition: Some(self.partition),
            offset: Some(self.offset),
            idempotency_key: self.idempotency_key(),
            payload: self.payload.clone(),
            received_at: OffsetDateTime::now_utc(),
        }
    }
}

/// The events and rejections made from one batch of records.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// One event per record and product of the record's topic.
    pub(crate) events: Vec<IncomingEvent>,
    /// For each event, the index of its record in the batch.
    event_records: Vec<usize>,
    /// Records that cannot become events, one per product, each with the
    /// index of its record. Sorted by that index once the batch is complete.
    rejections: Vec<(usize, RejectedRecord)>,
    /// Records of a topic that no product reads any more.
    pub(crate) unrouted: usize,
}

impl Batch {
    /// Turns records into events, or into rejections when the record has no
    /// value or an unusable idempotency header.
    pub(crate) fn plan(records: &[Record], routes: &Routes) -> Self {
        let mut batch = Self::default();
        for (index, record) in records.iter().enumerate() {
            let products = routes.products(&record.topic);
            if products.is_empty() {
                batch.unrouted += 1;
                continue;
            }
            for product in products {
                match event_of(record, product) {
                    Ok(event) => {
                        batch.events.push(event);
                        batch.event_records.push(index);
                    }
                    Err(reason) => {
                        let rejection = record.rejection(product, reason);
                        batch.rejections.push((index, rejection));
                    }
                }
            }
        }
        batch
    }

    /// Adds the events the creator rejected to the rejections. `results`
    /// must be the creator's result for `self.events`, in the same order.
    pub(crate) fn add_rejected(
        &mut self,
        records: &[Record],
        results: &[Result<Accepted, Rejected>],
    ) {
        for ((event, record_index), result) in
            self.events.iter().zip(&self.event_records).zip(results)
        {
            if let Err(rejected) = result {
                let record = &records[*record_index];
                let rejection = record.rejection(&event.product, rejected.to_string());
                self.rejections.push((*record_index, rejection));
            }
        }
        // A stable sort keeps the product order within one record.
        self.rejections
            .sort_by_key(|(record_index, _)| *record_index);
    }

    /// Returns the rejections in record order.
    pub(crate) fn rejections(&self) -> impl ExactSizeIterator<Item = &RejectedRecord> {
        self.rejections.iter().map(|(_, rejection)| rejection)
    }
}

/// Returns the parsed value of the last `traceparent` header, or `None` when
/// it is missing or invalid. W3C Trace Context requires an invalid value to
/// be ignored, so the record then starts a new trace.
fn traceparent_header(message: &BorrowedMessage<'_>) -> Option<TraceParent> {
    let headers = message.headers()?;
    let value = headers
        .iter()
        .filter(|header| header.key == trace::TRACEPARENT_HEADER)
        .last()?
        .value?;
    TraceParent::parse(std::str::from_utf8(value).ok()?)
}

fn event_of(record: &Record, product: &str) -> Result<IncomingEvent, String> {
    let Some(payload) = &record.payload else {
        return Err("record has a null value (tombstone); an event needs a payload".to_owned());
    };
    let key = match &record.key {
        Err(reason) => return Err(reason.clone()),
        Ok(_) => record
            .idempotency_key()
            .expect("a usable header gives a key"),
    };
    Ok(IncomingEvent {
        product: product.to_owned(),
        idempotency_key: Some(key),
        // The product's content type applies.
        content_type: None,
        payload: payload.clone(),
        source: EventSource::Kafka {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        },
        span: record.consume_span(product),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::{ContentType, EventId, Product};

    fn routes() -> Routes {
        let product = |name: &str| Product {
            name: name.to_owned(),
            topic: "orders".to_owned(),
            content_type: ContentType::Json,
            schema: None,
            validate: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        Routes::from_products(&[product("order-created"), product("order-audit")])
    }

    fn record(offset: i64, key: Result<Option<String>, String>, payload: Option<&str>) -> Record {
        Record::new(
            "orders".to_owned(),
            2,
            offset,
            key,
            payload.map(|text| Bytes::copy_from_slice(text.as_bytes())),
        )
    }

    #[test]
    fn record_fans_out_per_product() {
        let records = [record(7, Ok(Some("k-1".to_owned())), Some("{}"))];
        let batch = Batch::plan(&records, &routes());
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.events[0].product, "order-audit");
        assert_eq!(batch.events[1].product, "order-created");
        for event in &batch.events {
            assert_eq!(event.idempotency_key.as_deref(), Some("k-1"));
            assert_eq!(event.content_type, None);
            assert_eq!(event.payload.as_ref(), b"{}");
            assert_eq!(
                event.source,
                EventSource::Kafka {
                    topic: "orders".to_owned(),
                    partition: 2,
                    offset: 7
                }
            );
        }
        assert_eq!(batch.rejections().len(), 0);
    }

    #[test]
    fn missing_header_uses_record_position() {
        let records = [record(41, Ok(None), Some("{}"))];
        let batch = Batch::plan(&records, &routes());
        assert_eq!(
            batch.events[0].idempotency_key.as_deref(),
            Some("orders/2/41")
        );
    }

    #[test]
    fn tombstone_and_bad_key_are_rejected() {
        let records = [
            record(1, Ok(None), None),
            record(2, Err("header is not valid UTF-8".to_owned()), Some("{}")),
        ];
        let batch = Batch::plan(&records, &routes());
        assert!(batch.events.is_empty());
        let rejections: Vec<&RejectedRecord> = batch.rejections().collect();
        assert_eq!(rejections.len(), 4);
        let tombstone = rejections[0];
        assert_eq!(tombstone.offset, Some(1));
        assert_eq!(tombstone.payload, None);
        assert!(tombstone.reason.contains("tombstone"));
        let bad_key = rejections[2];
        assert_eq!(bad_key.offset, Some(2));
        assert_eq!(bad_key.topic.as_deref(), Some("orders"));
        assert_eq!(bad_key.partition, Some(2));
        assert_eq!(bad_key.product.as_deref(), Some("order-audit"));
        assert_eq!(bad_key.payload.as_deref(), Some(&b"{}"[..]));
        assert_eq!(bad_key.idempotency_key, None);
        assert_eq!(tombstone.idempotency_key.as_deref(), Some("orders/2/1"));
        assert!(bad_key.reason.contains("UTF-8"));
    }

    #[test]
    fn unrouted_records_are_counted() {
        let mut other = record(1, Ok(None), Some("{}"));
        other.topic = "payments".to_owned();
        let batch = Batch::plan(&[other], &routes());
        assert!(batch.events.is_empty());
        assert_eq!(batch.rejections().len(), 0);
        assert_eq!(batch.unrouted, 1);
    }

    #[test]
    fn rejections_follow_record_order() {
        let records = [
            record(5, Ok(None), Some("{}")),
            record(6, Ok(None), Some("{not json")),
            record(7, Ok(None), None),
        ];
        let mut batch = Batch::plan(&records, &routes());
        assert_eq!(batch.events.len(), 4);
        let accepted = Ok(Accepted::Duplicate {
            event_id: EventId::generate(),
        });
        let rejected = Err(Rejected::KeyTooLong(300));
        let results = [accepted.clone(), accepted, rejected.clone(), rejected];
        batch.add_rejected(&records, &results);

        let rejections: Vec<&RejectedRecord> = batch.rejections().collect();
        let positions: Vec<(Option<i64>, Option<&str>)> = rejections
            .iter()
            .map(|rejection| (rejection.offset, rejection.product.as_deref()))
            .collect();
        assert_eq!(
            positions,
            [
                (Some(6), Some("order-audit")),
                (Some(6), Some("order-created")),
                (Some(7), Some("order-audit")),
                (Some(7), Some("order-created")),
            ]
        );
        assert_eq!(rejections[0].reason, Rejected::KeyTooLong(300).to_string());
        assert_eq!(rejections[1].reason, Rejected::KeyTooLong(300).to_string());
        assert!(rejections[2].reason.contains("tombstone"));
    }
}
