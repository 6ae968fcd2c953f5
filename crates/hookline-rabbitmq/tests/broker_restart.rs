//! Reconnecting across a broker restart (`rabbitmqctl stop_app` and
//! `start_app`). This file contains a single test, so its binary runs alone:
//! `cargo test` runs test binaries one after another. It needs `rabbitmqctl`
//! on the PATH with the rights to stop the broker (root here).

mod common;

use common::*;
use hookline_core::queue::{DeliveryQueue, Settlement};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

/// Time the broker gets to come back and the queue to reconnect.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

fn rabbitmqctl(command: &str) {
    let status = Command::new("rabbitmqctl")
        .arg(command)
        .status()
        .unwrap_or_else(|error| panic!("failed to run rabbitmqctl {command}: {error}"));
    assert!(
        status.success(),
        "rabbitmqctl {command} exited with {status}"
    );
}

/// Stops the broker application and starts it again when dropped, so that a
/// failing test does not leave the broker stopped.
struct StoppedBroker {
    started: bool,
}

impl StoppedBroker {
    async fn stop() -> Self {
        tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
            .await
            .unwrap();
        Self { started: false }
    }

    async fn start(mut self) {
        tokio::task::spawn_blocking(|| rabbitmqctl("start_app"))
            .await
            .unwrap();
        self.started = true;
    }
}

impl Drop for StoppedBroker {
    fn drop(&mut self) {
        if !self.started {
            rabbitmqctl("start_app");
        }
    }
}

/// Restarts the broker application.
async fn restart_app() {
    tokio::task::spawn_blocking(|| {
        rabbitmqctl("stop_app");
        rabbitmqctl("start_app");
    })
    .await
    .unwrap();
}

/// Declares and deletes a new queue with its schedule, and returns the error
/// if the declaration failed.
async fn probe_declaration() -> Result<(), String> {
    let name = unique_queue_name();
    let _cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let queue = hookline_rabbitmq::AmqpQueue::connect(settings(&name))
        .await
        .map_err(|error| error.to_string())?;
    queue.close().await;
    Ok(())
}

/// Leaves the broker able to declare queues for the tests that run after
/// this one. RabbitMQ 3.10.8 was seen here to lose its dead-letter
/// supervisor (`rabbit_fifo_dlx_sup`, "reached_max_restart_intensity") when
/// queues were deleted while the restart recovered them. Every later quorum
/// queue with at-least-once dead-lettering then failed with `INTERNAL_ERROR`
/// until the broker application restarted, so this restarts it again when a
/// probe declaration fails.
async fn ensure_queues_can_be_declared() {
    for _ in 0..3 {
        match probe_declaration().await {
            Ok(()) => return,
            Err(error) => {
                eprintln!("Declaring a queue after the restart failed, so the broker application restarts again: {error}");
                restart_app().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    probe_declaration()
        .await
        .expect("a queue can be declared after three more broker restarts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_reconnects_and_redelivers() {
    init_tracing();
    let name = unique_queue_name();
    let cleanup = Cleanup::new(schedule_queues(&name, &fast_retry()));
    let queue = connect(&name).await;

    let before = task(b"unacked at restart");
    queue.enqueue(vec![before.clone()]).await.unwrap();
    let stale = receive_until(&queue, 1, Duration::from_secs(10)).await;
    assert_eq!(stale.len(), 1, "received before the restart");

    let broker = StoppedBroker::stop().await;
    let while_stopped = queue.enqueue(vec![task(b"while stopped")]).await;
    assert!(
        while_stopped.is_err(),
        "enqueue fails while the broker is stopped"
    );
    broker.start().await;

    let after = task(b"after restart");
    let deadline = Instant::now() + RECOVERY_LIMIT;
    while let Err(error) = queue.enqueue(vec![after.clone()]).await {
        assert!(
            Instant::now() < deadline,
            "enqueue never recovered: {error}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let received = receive_until(&queue, 2, RECOVERY_LIMIT).await;
    let mut ids: Vec<_> = received
        .iter()
        .map(|leased| leased.task.delivery_id.clone())
        .collect();
    ids.sort();
    let mut expected = vec![before.delivery_id.clone(), after.delivery_id.clone()];
    expected.sort();
    assert_eq!(
        ids, expected,
        "the unacked and the new message are delivered"
    );

    // The lease from before the restart names a tag of the closed channel;
    // settling it is skipped instead of acknowledging another delivery.
    let stale_ack = Settlement::Ack {
        lease: stale.into_iter().next().unwrap(),
    };
    queue.settle(vec![stale_ack]).await.unwrap();
    assert_eq!(
        queue.depth().await.unwrap().leased,
        2,
        "current leases untouched"
    );

    let acks = received
        .into_iter()
        .map(|lease| Settlement::Ack { lease })
        .collect();
    queue.settle(acks).await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!(depth.ready, 0, "{depth:?}");
    assert_eq!(depth.leased, 0, "{depth:?}");
    queue.close().await;

    drop(cleanup);
    ensure_queues_can_be_declared().await;
}
