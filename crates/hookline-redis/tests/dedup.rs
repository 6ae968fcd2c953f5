//! `RedisDeduplicator` against a real Redis.

mod common;

use hookline_core::dedup::{Deduplicator, KeyRef};
use hookline_core::EventId;
use hookline_redis::RedisDeduplicator;
use std::time::Duration;

const RETENTION: Duration = Duration::from_secs(60);

fn key(product: &str, key: &str) -> KeyRef {
    KeyRef {
        product: product.to_owned(),
        key: key.to_owned(),
    }
}

#[tokio::test]
async fn seen_reports_known_keys_in_batch() {
    let prefix = common::random_prefix();
    let deduplicator = RedisDeduplicator::new(common::connect(&prefix).await);
    let first = (key("orders", "k-1"), EventId::generate());
    let third = (key("orders", "k-3"), EventId::generate());
    deduplicator
        .remember(&[first.clone(), third.clone()], RETENTION)
        .await
        .expect("remember");

    let batch = [
        first.0.clone(),
        key("orders", "k-2"),
        third.0.clone(),
        key("invoices", "k-1"),
    ];
    let seen = deduplicator.seen(&batch).await.expect("seen");

    assert_eq!(seen.len(), batch.len());
    assert_eq!(seen[0], Some(first.1));
    assert_eq!(seen[1], None);
    assert_eq!(seen[2], Some(third.1));
    assert_eq!(seen[3], None, "same key under another product");
    common::delete_keys(&prefix).await;
}

#[tokio::test]
async fn empty_batches_need_no_command() {
    let prefix = common::random_prefix();
    let deduplicator = RedisDeduplicator::new(common::connect(&prefix).await);

    let seen = deduplicator.seen(&[]).await.expect("seen");
    deduplicator
        .remember(&[], RETENTION)
        .await
        .expect("remember");

    assert!(seen.is_empty());
    common::delete_keys(&prefix).await;
}

#[tokio::test]
async fn remember_keeps_existing_entry() {
    let prefix = common::random_prefix();
    let deduplicator = RedisDeduplicator::new(common::connect(&prefix).await);
    let original = EventId::generate();
    let later = EventId::generate();
    deduplicator
        .remember(&[(key("orders", "k"), original.clone())], RETENTION)
        .await
        .expect("first remember");

    deduplicator
        .remember(
            &[
                (key("orders", "k"), later.clone()),
                (key("orders", "fresh"), later.clone()),
            ],
            RETENTION,
        )
        .await
        .expect("second remember");

    let seen = deduplicator
        .seen(&[key("orders", "k"), key("orders", "fresh")])
        .await
        .expect("seen");
    assert_eq!(seen[0], Some(original), "existing entry was overwritten");
    assert_eq!(seen[1], Some(later), "new entry in the same batch");
    common::delete_keys(&prefix).await;
}

#[tokio::test]
async fn entries_expire_after_ttl() {
    let prefix = common::random_prefix();
    let deduplicator = RedisDeduplicator::new(common::connect(&prefix).await);
    let event_id = EventId::generate();
    deduplicator
        .remember(
            &[(key("orders", "short"), event_id.clone())],
            Duration::from_secs(1),
        )
        .await
        .expect("remember");

    let before = deduplicator
        .seen(&[key("orders", "short")])
        .await
        .expect("seen");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = deduplicator
        .seen(&[key("orders", "short")])
        .await
        .expect("seen");

    assert_eq!(before, vec![Some(event_id)]);
    assert_eq!(after, vec![None], "entry still present after its 1 s TTL");
    common::delete_keys(&prefix).await;
}

#[tokio::test]
async fn zero_ttl_is_rejected() {
    let prefix = common::random_prefix();
    let deduplicator = RedisDeduplicator::new(common::connect(&prefix).await);

    let result = deduplicator
        .remember(&[(key("orders", "k"), EventId::generate())], Duration::ZERO)
        .await;

    let error = result.expect_err("zero retention must fail");
    assert!(
        error.message.contains("greater than zero"),
        "{}",
        error.message
    );
    common::delete_keys(&prefix).await;
}

#[tokio::test]
async fn separators_and_unicode_do_not_collide() {
    let prefix = common::random_prefix();
    let deduplicator = RedisDeduplicator::new(common::connect(&prefix).await);
    let pairs = [
        key("a:b", "c"),
        key("a", "b:c"),
        key("a", ":b:c"),
        key("a:", "b:c"),
        key("a\0", "b"),
        key("a", "\0b"),
        key("", "a:b"),
        key("a:b", ""),
        key("commandes-é", "clé-🔑"),
        key("commandes-é", "clé-🔐"),
        key("注文", "キー:1"),
        key("注文:キー", "1"),
    ];
    let entries: Vec<(KeyRef, EventId)> = pairs
        .iter()
        .map(|pair| (pair.clone(), EventId::generate()))
        .collect();
    deduplicator
        .remember(&entries, RETENTION)
        .await
        .expect("remember");

    let seen = deduplicator.seen(&pairs).await.expect("seen");

    for ((pair, event_id), found) in entries.iter().zip(&seen) {
        assert_eq!(found.as_ref(), Some(event_id), "entry of {pair:?}");
    }
    common::delete_keys(&prefix).await;
}

#[tokio::test]
async fn keys_are_prefixed_digests() {
    let prefix = common::random_prefix();
    let deduplicator = RedisDeduplicator::new(common::connect(&prefix).await);
    deduplicator
        .remember(&[(key("orders", "k"), EventId::generate())], RETENTION)
        .await
        .expect("remember");

    let other_prefix = common::random_prefix();
    let other = RedisDeduplicator::new(common::connect(&other_prefix).await);
    let seen_elsewhere = other.seen(&[key("orders", "k")]).await.expect("seen");

    assert_eq!(
        seen_elsewhere,
        vec![None],
        "another prefix must not see the key"
    );
    let stored = common::keys_under(&prefix).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let digest = stored[0]
        .strip_prefix(&format!("{prefix}idem:"))
        .expect("key starts with <prefix>idem:");
    assert_eq!(digest.len(), 64, "{digest}");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
    common::delete_keys(&prefix).await;
    common::delete_keys(&other_prefix).await;
}
