//! Rejected records read back, listed per product and marked replayed, and
//! product schema settings.

mod common;

use bytes::Bytes;
use common::{fixture, product, PRODUCT};
use hookline_core::store::{RejectedRecord, RejectionFilter, Store};
use hookline_core::{ContentType, EventId};
use time::OffsetDateTime;

fn rejected(product: &str, offset: i64, key: Option<&str>) -> RejectedRecord {
    RejectedRecord {
        product: Some(product.to_owned()),
        reason: format!("payload at offset {offset} is not valid JSON"),
        topic: Some("orders".to_owned()),
        partition: Some(3),
        offset: Some(offset),
        idempotency_key: key.map(str::to_owned),
        payload: Some(Bytes::from(format!("{{bad {offset}"))),
        received_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    }
}

fn filter(limit: u32) -> RejectionFilter {
    RejectionFilter {
        limit,
        ..RejectionFilter::default()
    }
}

#[tokio::test]
async fn rejections_list_newest_first_per_product() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    store.create_product(&product("other")).await.unwrap();
    for offset in 1..=3 {
        store
            .record_rejected(&rejected(PRODUCT, offset, Some("k")))
            .await
            .unwrap();
    }
    store
        .record_rejected(&rejected("other", 9, None))
        .await
        .unwrap();

    let listed = store.rejections(PRODUCT, &filter(10)).await.unwrap();
    let offsets: Vec<Option<i64>> = listed.iter().map(|r| r.record.offset).collect();
    assert_eq!(offsets, [Some(3), Some(2), Some(1)]);
    let newest = &listed[0];
    assert_eq!(newest.record.product.as_deref(), Some(PRODUCT));
    assert_eq!(newest.record.topic.as_deref(), Some("orders"));
    assert_eq!(newest.record.partition, Some(3));
    assert_eq!(newest.record.idempotency_key.as_deref(), Some("k"));
    assert_eq!(newest.record.payload.as_deref(), Some(&b"{bad 3"[..]));
    assert_eq!(
        newest.record.reason,
        "payload at offset 3 is not valid JSON"
    );
    assert_eq!(newest.replayed_at, None);

    let page = store
        .rejections(
            PRODUCT,
            &RejectionFilter {
                before: Some(listed[0].id),
                limit: 1,
                ..RejectionFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].record.offset, Some(2));
}

#[tokio::test]
async fn replayed_rejection_leaves_the_default_list() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    store
        .record_rejected(&rejected(PRODUCT, 1, None))
        .await
        .unwrap();
    let id = store.rejections(PRODUCT, &filter(10)).await.unwrap()[0].id;
    let event = EventId::generate();

    assert!(store.mark_replayed(id, &event).await.unwrap());
    assert!(
        !store.mark_replayed(id, &event).await.unwrap(),
        "a record is replayed once"
    );
    assert!(!store.mark_replayed(id + 100, &event).await.unwrap());

    assert!(store
        .rejections(PRODUCT, &filter(10))
        .await
        .unwrap()
        .is_empty());
    let all = store
        .rejections(
            PRODUCT,
            &RejectionFilter {
                include_replayed: true,
                limit: 10,
                ..RejectionFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let stored = store.rejection(id).await.unwrap().unwrap();
    assert!(stored.replayed_at.is_some());
    assert_eq!(stored.replayed_event.as_ref(), Some(&event));
    assert!(store.rejection(id + 100).await.unwrap().is_none());
}

#[tokio::test]
async fn product_schema_is_stored_and_updated() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let mut avro = product("payments");
    avro.content_type = ContentType::Avro;
    avro.schema = Some(r#""long""#.to_owned());
    avro.validate = true;
    store.create_product(&avro).await.unwrap();

    let read = store.product("payments").await.unwrap().unwrap();
    assert_eq!(read.schema.as_deref(), Some(r#""long""#));
    assert!(read.validate);
    let plain = store.product(PRODUCT).await.unwrap().unwrap();
    assert_eq!(plain.schema, None);
    assert!(!plain.validate);

    avro.schema = None;
    avro.validate = false;
    assert!(store.update_product_schema(&avro).await.unwrap());
    let read = store.product("payments").await.unwrap().unwrap();
    assert_eq!(read.schema, None);
    assert!(!read.validate);

    avro.name = "missing".to_owned();
    assert!(!store.update_product_schema(&avro).await.unwrap());
}
