//! Configuration reload of a running `hookline serve`: a changed retry
//! interval in the `--config` file applies to the next retries, and SIGHUP
//! reloads without a change.

mod common;

use common::{order_event, Backend, World};
use hookline_receiver::Behaviour;
use std::time::Duration;

fn retry_config(interval: &str) -> String {
    format!("[retry]\ninterval = \"{interval}\"\nbackoff_unit = \"1ms\"\nmax_retries = 20\n")
}

/// Polls the server log until it contains `needle`.
async fn wait_for_log(server: &common::Server, needle: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if server.log_text().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn changed_retry_interval_applies_to_next_retries(backend: Backend) {
    let world = World::with_backend(backend).await;
    let config_file = world.dir.path().join("hookline.toml");
    std::fs::write(&config_file, retry_config("3s")).unwrap();
    let config_path = config_file.to_str().unwrap().to_owned();
    let server = world
        .serve(&[("HOOKLINE_CONFIG", config_path.as_str())])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "down")
        .await;
    world
        .receiver
        .script("down", Behaviour::AlwaysFail { status: 500 });

    let (status, _) = server
        .ingest("order-created", Some("reload-1"), &order_event("RL1"))
        .await;
    assert_eq!(status, 202);
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.total >= 1, Duration::from_secs(10))
            .await
    );
    // The first retry is already scheduled 3 s out with the old interval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&config_file, retry_config("100ms")).unwrap();
    assert!(
        wait_for_log(&server, "retry.interval: 3s -> 100ms").await,
        "the reload is logged with the change; log:\n{}",
        server.log_text()
    );

    assert!(
        world
            .receiver
            .wait_for(|stats| stats.total >= 5, Duration::from_secs(15))
            .await,
        "retries continue; log:\n{}",
        server.log_text()
    );
    let received = world.receiver.deliveries("down");
    let gaps: Vec<Duration> = received
        .windows(2)
        .map(|pair| {
            pair[1]
                .received_instant
                .duration_since(pair[0].received_instant)
        })
        .collect();
    assert!(
        gaps[0] >= Duration::from_millis(2900),
        "the retry scheduled before the change keeps its 3 s wait: {gaps:?}"
    );
    for (index, gap) in gaps.iter().enumerate().skip(1).take(3) {
        assert!(
            *gap < Duration::from_millis(1500),
            "retry {} waited {gap:?}, not the new 100 ms interval: {gaps:?}",
            index + 1
        );
    }
}

async fn hangup_reloads_configuration(backend: Backend) {
    let world = World::with_backend(backend).await;
    let config_file = world.dir.path().join("hookline.toml");
    std::fs::write(&config_file, retry_config("1s")).unwrap();
    let config_path = config_file.to_str().unwrap().to_owned();
    let server = world
        .serve(&[("HOOKLINE_CONFIG", config_path.as_str())])
        .await;

    server.hang_up();
    assert!(
        wait_for_log(&server, "Configuration reloaded; nothing changed").await,
        "log:\n{}",
        server.log_text()
    );

    std::fs::write(&config_file, "[retry]\ninterval = \"not a duration\"\n").unwrap();
    server.hang_up();
    assert!(
        wait_for_log(&server, "the running configuration stays in force").await,
        "an invalid file is reported and ignored; log:\n{}",
        server.log_text()
    );
    let (status, _) = server
        .request(reqwest::Method::GET, "/api/v1/products", None)
        .await;
    assert_eq!(status, 200, "the server keeps running");
}

both_backends!(changed_retry_interval_applies_to_next_retries);
both_backends!(hangup_reloads_configuration);
