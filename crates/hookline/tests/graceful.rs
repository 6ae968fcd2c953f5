//! SIGTERM during a burst: the dispatcher finishes or returns its in-flight
//! work, exits 0, and leaves no unacknowledged or lost message.

mod common;

use common::{order_event, Backend, World};
use hookline_receiver::Behaviour;
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

/// Unacknowledged messages of the queues whose names start with `prefix`.
fn unacked(prefix: &str) -> u64 {
    let output = Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_unacknowledged",
        ])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_burst_loses_nothing() {
    let world = World::with_backend(Backend::Distributed).await;
    let env = [
        ("HOOKLINE_SHUTDOWN__GRACE", "5s"),
        ("HOOKLINE_DELIVERY__PER_ENDPOINT_CONCURRENCY", "4"),
    ];
    let api = world.start("api", &env).await;
    api.create_product("order-created", "order-created-event")
        .await;
    api.create_application(&world.receiver, "order-created", "burst")
        .await;
    world
        .receiver
        .script("burst", Behaviour::Delay(Duration::from_millis(200)));
    let dispatcher = world.start("dispatcher", &env).await;

    let mut keys = HashSet::new();
    for n in 0..300 {
        let key = format!("burst-{n}");
        let (status, body) = api
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
        assert_eq!(status, 202, "{body}");
        keys.insert(key);
    }
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.total >= 20, Duration::from_secs(20))
            .await
    );

    let first_log_path = dispatcher.log.clone();
    let status = dispatcher.terminate();
    let first_log = std::fs::read_to_string(first_log_path).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(0),
        "the dispatcher exits 0 after SIGTERM"
    );
    let prefix = world
        .queue_name()
        .expect("distributed world has a queue name");
    // The broker settles a closed connection's messages asynchronously, and
    // on a loaded machine that can take a moment after the process exits.
    let mut left_unacked = unacked(&prefix);
    for _ in 0..50 {
        if left_unacked == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        left_unacked = unacked(&prefix);
    }
    assert_eq!(
        left_unacked, 0,
        "no message stays unacknowledged after the dispatcher stopped"
    );
    let delivered_at_stop = world.receiver.stats().succeeded;
    assert!(
        (delivered_at_stop as usize) < keys.len(),
        "the stop came after the burst; the test proves nothing"
    );

    world.receiver.script("burst", Behaviour::Succeed);
    let second = world.start("dispatcher", &env).await;
    let receiver = world.receiver.clone();
    let complete = world
        .receiver
        .wait_for(
            |_| {
                let received: HashSet<String> = receiver
                    .deliveries("burst")
                    .iter()
                    .filter(|webhook| webhook.succeeded())
                    .filter_map(|webhook| webhook.idempotency_key.clone())
                    .collect();
                keys.is_subset(&received)
            },
            Duration::from_secs(60),
        )
        .await;
    let received: HashSet<String> = world
        .receiver
        .deliveries("burst")
        .iter()
        .filter(|webhook| webhook.succeeded())
        .filter_map(|webhook| webhook.idempotency_key.clone())
        .collect();
    let missing = keys.difference(&received).count();
    assert!(
        complete,
        "{missing} accepted events did not arrive after the restart; first dispatcher log:\n{first_log}\nsecond:\n{}",
        second.log_text()
    );
}
