//! `AmqpQueue` against a real RabbitMQ broker. Each test declares queues
//! under a name of its own and deletes them at the end.

mod common;

use common::*;
use hookline_core::queue::{DeliveryQueue, QueueMessage, Settlement};
use hookline_core::RetryPolicy;
use hookline_rabbitmq::{reason_header, AmqpQueue, REASON_HEADER};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use std::time::Duration;
use time::OffsetDateTime;

const RECEIVE_LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn round_trip_keeps_payload_bytes() {
    init_tracing();
    let name = unique_queue_name();
    let _cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let queue = connect(&name).await;

    let payload: Vec<u8> = (0..=255u8).chain([0, 0xff, b'{']).collect();
    let sent = task(&payload);
    queue.enqueue(vec![sent.clone()]).await.unwrap();

    let leased = receive_until(&queue, 1, RECEIVE_LIMIT).await;
    assert_eq!(leased.len(), 1, "one delivery expected");
    assert_eq!(leased[0].task, sent, "task fields survive the round trip");
    assert_eq!(leased[0].task.payload.as_ref(), payload.as_slice());

    let lease = leased.into_iter().next().unwrap();
    queue.settle(vec![Settlement::Ack { lease }]).await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!(depth.ready, 0, "acknowledged message is gone");
    assert_eq!(depth.leased, 0, "no lease left");

    let again = queue
        .receive(10, Duration::from_secs(30), Duration::from_millis(500))
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "acknowledged message came back: {again:?}"
    );
    queue.close().await;
}

#[tokio::test]
async fn unacked_delivery_returns_after_close() {
    init_tracing();
    let name = unique_queue_name();
    let _cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let first = connect(&name).await;
    let sent = task(b"unacked");
    first.enqueue(vec![sent.clone()]).await.unwrap();
    let leased = receive_until(&first, 1, RECEIVE_LIMIT).await;
    assert_eq!(leased.len(), 1, "first consumer receives the message");
    first.close().await;

    let second = connect(&name).await;
    let redelivered = receive_until(&second, 1, RECEIVE_LIMIT).await;
    assert_eq!(redelivered.len(), 1, "second consumer receives it again");
    assert_eq!(redelivered[0].task.delivery_id, sent.delivery_id);
    second.close().await;
}

/// Settles one lease as a retry due after `delay` and returns how long after
/// `due_at` the task came back, with the task.
async fn retry_and_wait(
    queue: &AmqpQueue,
    delay: Duration,
) -> (Duration, hookline_core::queue::DeliveryTask) {
    let lease = receive_until(queue, 1, RECEIVE_LIMIT).await.pop().unwrap();
    let due_at = OffsetDateTime::now_utc() + delay;
    let settlement = Settlement::Retry {
        lease,
        due_at,
        attempts_made: 1,
    };
    queue.settle(vec![settlement]).await.unwrap();
    let back = receive_until(queue, 1, RECEIVE_LIMIT).await.pop();
    let arrived = OffsetDateTime::now_utc();
    let back = back.expect("retried task comes back");
    assert!(arrived >= due_at, "came back {} early", due_at - arrived);
    let late = Duration::try_from(arrived - due_at).unwrap();
    (late, back.task)
}

#[tokio::test]
async fn retry_returns_after_step_delay() {
    init_tracing();
    let name = unique_queue_name();
    let _cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let queue = connect(&name).await;
    let sent = task(b"retry me");
    queue.enqueue(vec![sent.clone()]).await.unwrap();

    let step = fast_retry().wait(1);
    let (late, back) = retry_and_wait(&queue, step).await;
    assert_eq!(back.delivery_id, sent.delivery_id);
    assert_eq!(back.attempts_made, 1, "retry stores the attempt count");
    assert!(late < Duration::from_secs(2), "came back {late:?} late");
    queue.close().await;
}

#[tokio::test]
async fn postponement_uses_rounded_delay_queue() {
    init_tracing();
    let name = unique_queue_name();
    let mut cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    cleanup.add(delay_queue(&name, 2_000));
    let queue = connect(&name).await;
    queue.enqueue(vec![task(b"busy endpoint")]).await.unwrap();

    // 1500 ms matches no step (210, 360, 1010 ms), so it rounds up to 2 s.
    let (late, _) = retry_and_wait(&queue, Duration::from_millis(1_500)).await;
    assert!(
        late >= Duration::from_millis(400),
        "rounded up: {late:?} late"
    );
    assert!(late < Duration::from_secs(3), "came back {late:?} late");

    let (connection, _) = raw_channel().await;
    assert!(queue_exists(&connection, &delay_queue(&name, 2_000)).await);
    queue.close().await;
}

#[tokio::test]
async fn dead_letter_keeps_reason_header() {
    init_tracing();
    let name = unique_queue_name();
    let _cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let queue = connect(&name).await;
    let sent = task(b"dead");
    queue.enqueue(vec![sent.clone()]).await.unwrap();
    let lease = receive_until(&queue, 1, RECEIVE_LIMIT).await.pop().unwrap();
    let reason = "endpoint answered HTTP 410".to_owned();
    let settlement = Settlement::DeadLetter { lease, reason };
    queue.settle(vec![settlement]).await.unwrap();

    let (_connection, channel) = raw_channel().await;
    let message = get_one(&channel, &dead_letter_queue(&name))
        .await
        .expect("dead letter in the dlq");
    let properties = &message.delivery.properties;
    assert_eq!(
        reason_header(properties).as_deref(),
        Some("endpoint answered HTTP 410"),
        "{REASON_HEADER} header"
    );
    assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
    let content_type = properties
        .content_type()
        .as_ref()
        .map(|value| value.as_str());
    assert_eq!(content_type, Some("application/json"));
    let message_id = properties.message_id().as_ref().map(|value| value.as_str());
    assert_eq!(message_id, Some(sent.delivery_id.as_str()));
    let body: QueueMessage = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(body, QueueMessage::V1(sent));

    let depth = queue.depth().await.unwrap();
    assert_eq!(depth.ready, 0, "original was acknowledged");
    queue.close().await;
}

#[tokio::test]
async fn changed_schedule_declares_new_delay_queues() {
    init_tracing();
    let name = unique_queue_name();
    let slower = RetryPolicy {
        interval: Duration::from_millis(500),
        ..fast_retry()
    };
    let mut names = schedule_queues(&name, &fast_retry());
    names.extend(schedule_queues(&name, &slower));
    let _cleanup = Cleanup::new(names);

    let first = connect(&name).await;
    first.close().await;
    let mut settings = settings(&name);
    settings.retry = slower;
    let second = AmqpQueue::connect(settings)
        .await
        .expect("a changed schedule declares new delay queues");

    let (connection, _) = raw_channel().await;
    for delay_ms in [210, 360, 1_010, 510, 660, 1_310] {
        let delay = delay_queue(&name, delay_ms);
        assert!(queue_exists(&connection, &delay).await, "{delay} exists");
    }
    second.close().await;
}

#[tokio::test]
async fn depth_counts_each_state() {
    init_tracing();
    let name = unique_queue_name();
    let mut cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    cleanup.add(delay_queue(&name, 60_000));
    let queue = connect(&name).await;
    let tasks = vec![task(b"1"), task(b"2"), task(b"3"), task(b"4")];
    queue.enqueue(tasks).await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!(
        depth.ready + depth.leased,
        4,
        "all four are queued: {depth:?}"
    );

    let mut leased = receive_until(&queue, 4, RECEIVE_LIMIT).await;
    assert_eq!(leased.len(), 4);
    let retried = leased.pop().unwrap();
    let dead = leased.pop().unwrap();
    let settlements = vec![
        Settlement::Retry {
            lease: retried,
            due_at: OffsetDateTime::now_utc() + Duration::from_secs(60),
            attempts_made: 1,
        },
        Settlement::DeadLetter {
            lease: dead,
            reason: "gone".into(),
        },
    ];
    queue.settle(settlements).await.unwrap();

    let depth = queue.depth().await.unwrap();
    assert_eq!(depth.ready, 0, "the rest are leased: {depth:?}");
    assert_eq!(depth.leased, 2, "two leases held: {depth:?}");
    assert_eq!(depth.scheduled, 1, "one retry waits: {depth:?}");
    assert_eq!(depth.dead, 1, "one dead letter: {depth:?}");
    queue.close().await;
}

#[tokio::test]
async fn undecodable_body_goes_to_dlq() {
    init_tracing();
    let name = unique_queue_name();
    let _cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let queue = connect(&name).await;

    let (_connection, channel) = raw_channel().await;
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id("from-a-newer-release".into());
    let body = br#"{"version":"99","delivery_id":"dlv_x"}"#;
    channel
        .basic_publish(
            "".into(),
            name.as_str().into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let valid = task(b"valid");
    queue.enqueue(vec![valid.clone()]).await.unwrap();

    let leased = receive_until(&queue, 2, Duration::from_secs(3)).await;
    assert_eq!(leased.len(), 1, "only the valid message is leased");
    assert_eq!(leased[0].task.delivery_id, valid.delivery_id);

    let message = get_one(&channel, &dead_letter_queue(&name))
        .await
        .expect("undecodable message in the dlq");
    assert_eq!(message.delivery.data, body, "original body kept");
    let reason = reason_header(&message.delivery.properties).unwrap_or_default();
    assert!(reason.starts_with("undecodable queue message"), "{reason}");
    queue.close().await;
}

#[tokio::test]
async fn repeated_settlement_is_skipped() {
    init_tracing();
    let name = unique_queue_name();
    let _cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let queue = connect(&name).await;
    queue.enqueue(vec![task(b"once")]).await.unwrap();
    let lease = receive_until(&queue, 1, RECEIVE_LIMIT).await.pop().unwrap();

    let ack = Settlement::Ack { lease };
    queue.settle(vec![ack.clone()]).await.unwrap();
    queue.settle(vec![ack]).await.unwrap();

    // A second basic.ack of the same tag would close the channel and requeue
    // everything; the channel must still work.
    let next = task(b"after");
    queue.enqueue(vec![next.clone()]).await.unwrap();
    let leased = receive_until(&queue, 1, RECEIVE_LIMIT).await;
    assert_eq!(leased.len(), 1, "the channel still delivers");
    assert_eq!(leased[0].task.delivery_id, next.delivery_id);
    queue.close().await;
}

#[tokio::test]
async fn unroutable_dead_letter_fails_and_keeps_lease() {
    init_tracing();
    let name = unique_queue_name();
    let _cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let queue = connect(&name).await;
    let sent = task(b"no dlq");
    queue.enqueue(vec![sent.clone()]).await.unwrap();
    let lease = receive_until(&queue, 1, RECEIVE_LIMIT).await.pop().unwrap();

    let dlq = dead_letter_queue(&name);
    let (_connection, channel) = raw_channel().await;
    channel
        .queue_delete(dlq.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let settlement = Settlement::DeadLetter {
        lease,
        reason: "gone".into(),
    };
    let error = queue.settle(vec![settlement.clone()]).await.unwrap_err();
    assert!(
        error.message.contains(&dlq),
        "error names the queue: {error}"
    );

    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            dlq.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await
        .unwrap();
    // Settling again works only if the failed attempt kept the lease.
    queue.settle(vec![settlement]).await.unwrap();
    let message = get_one(&channel, &dlq).await.expect("dead letter arrives");
    let message_id = message.delivery.properties.message_id().clone();
    assert_eq!(
        message_id.map(String::from),
        Some(sent.delivery_id.to_string())
    );
    queue.close().await;
}
