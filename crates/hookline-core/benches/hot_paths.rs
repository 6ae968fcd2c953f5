//! Micro-benchmarks of the per-delivery work done in core: signing a body,
//! checking a webhook URL, deriving the webhook id and encoding a queue message.
//!
//! Run with `cargo bench -p hookline-core`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hookline_core::queue::{DeliveryTask, QueueMessage};
use hookline_core::signing::{signature_header, SigningSecret};
use hookline_core::webhook_url::AddressPolicy;
use hookline_core::{ApplicationId, ContentType, DeliveryId, EventId, WebhookId};
use std::hint::black_box;

fn payload(size: usize) -> Bytes {
    let mut body = br#"{"orderId":"1001XYZ","pad":""#.to_vec();
    body.resize(size - 2, b'x');
    body.extend_from_slice(br#""}"#);
    Bytes::from(body)
}

fn signing(c: &mut Criterion) {
    let secret = SigningSecret::generate();
    let mut group = c.benchmark_group("sign");
    for size in [1024, 16 * 1024] {
        let body = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("standard_webhooks_{size}B"), |b| {
            b.iter(|| {
                signature_header(
                    std::slice::from_ref(&secret),
                    "msg_0123456789abcdef",
                    1_700_000_000,
                    black_box(&body),
                )
            })
        });
    }
    group.finish();
}

fn url_check(c: &mut Criterion) {
    let policy = AddressPolicy::default();
    c.bench_function("check_url", |b| {
        b.iter(|| policy.check_url(black_box("https://hooks.example.com/orders?x=1")))
    });
}

fn ids(c: &mut Criterion) {
    c.bench_function("webhook_id_derive", |b| {
        b.iter(|| WebhookId::derive(black_box("order-created"), black_box("order-1001")))
    });
    c.bench_function("event_id_generate", |b| b.iter(EventId::generate));
}

fn queue_message(c: &mut Criterion) {
    let task = DeliveryTask {
        delivery_id: DeliveryId::generate(),
        event_id: EventId::generate(),
        application_id: ApplicationId::generate(),
        product: "order-created".into(),
        webhook_id: WebhookId::derive("order-created", "order-1001"),
        idempotency_key: "order-1001".into(),
        content_type: ContentType::Json,
        payload: payload(1024),
        attempts_made: 0,
        traceparent: None,
    };
    let message = QueueMessage::V1(task);
    c.bench_function("queue_message_to_json_1KiB", |b| {
        b.iter(|| serde_json::to_vec(black_box(&message)))
    });
}

criterion_group!(benches, signing, url_check, ids, queue_message);
criterion_main!(benches);
