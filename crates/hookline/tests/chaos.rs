//! Chaos run of the distributed mode: two creators and three dispatchers as
//! processes, events through Kafka to three HTTPS receivers, while creators
//! and dispatchers are killed with SIGKILL and restarted, and RabbitMQ and
//! Redis are restarted once each. Every (event, application) pair must
//! arrive at least once.

mod common;

use common::{Backend, Server, World};
use hookline_receiver::Receiver;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

const TOPIC: &str = "order-created-event";
const EVENTS: usize = 3000;
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn restart_rabbitmq() {
    let stop = Command::new("rabbitmqctl")
        .arg("stop_app")
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        stop.status.success(),
        "rabbitmqctl stop_app: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    std::thread::sleep(Duration::from_secs(2));
    let start = Command::new("rabbitmqctl")
        .arg("start_app")
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        start.status.success(),
        "rabbitmqctl start_app: {}",
        String::from_utf8_lossy(&start.stderr)
    );
}

/// Declares a new set of the dispatcher's queues, through the same
/// `AmqpQueue::connect` that a dispatcher uses, deletes them, and returns
/// the broker's error if the declaration failed.
async fn probe_declaration() -> Result<(), String> {
    let name = format!("hookline-chaos-probe-{}", std::process::id());
    let settings = hookline_rabbitmq::AmqpSettings {
        url: std::env::var("HOOKLINE_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        queue_name: name.clone(),
        consume: false,
        ..Default::default()
    };
    let connected = hookline_rabbitmq::AmqpQueue::connect(settings).await;
    if let Ok(queue) = &connected {
        queue.close().await;
    }
    tokio::task::spawn_blocking(move || common::delete_queues(&name))
        .await
        .unwrap();
    connected.map(|_| ()).map_err(|error| error.to_string())
}

/// Leaves RabbitMQ able to declare queues for the tests that run after this
/// one. RabbitMQ 3.10.8 was seen here to stop its dead-letter supervisor
/// (`rabbit_fifo_dlx_sup`) when queues were deleted while a restart
/// recovered them. Every new quorum queue with at-least-once dead-lettering
/// then fails with `INTERNAL_ERROR` until the broker application restarts.
async fn ensure_queues_can_be_declared() {
    const RESTARTS: u32 = 3;
    let mut restarts = 0;
    while let Err(error) = probe_declaration().await {
        assert!(
            restarts < RESTARTS,
            "no queue can be declared after {RESTARTS} more broker restarts: {error}"
        );
        eprintln!("Declaring a queue after the restart failed, so the broker application restarts again: {error}");
        tokio::task::spawn_blocking(restart_rabbitmq).await.unwrap();
        restarts += 1;
    }
}

fn restart_redis() {
    let _ = Command::new("redis-cli")
        .args(["-p", "6379", "shutdown", "nosave"])
        .output();
    std::thread::sleep(Duration::from_secs(2));
    let started = Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
        ])
        .args([
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ])
        .status()
        .expect("redis-server runs");
    assert!(started.success(), "redis-server did not start");
}

async fn produce_all(brokers: String) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    // 3000 events over about 30 seconds, so the faults hit a running flow.
    for chunk in 0..(EVENTS / 50) {
        let mut pending = Vec::new();
        for n in chunk * 50..(chunk + 1) * 50 {
            let key = format!("chaos-{n}");
            let payload = common::order_event(&key);
            let headers = OwnedHeaders::new().insert(Header {
                key: "idempotentKey",
                value: Some(key.as_bytes()),
            });
            let record = FutureRecord::<str, _>::to(TOPIC)
                .key(&key)
                .payload(payload.as_bytes())
                .headers(headers);
            pending.push(producer.send_result(record).expect("queue record"));
        }
        for delivery in pending {
            delivery
                .await
                .expect("delivery report")
                .expect("record stored");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn delivered_keys(receiver: &Receiver) -> HashSet<String> {
    receiver
        .deliveries("shop")
        .iter()
        .filter(|webhook| webhook.succeeded())
        .filter_map(|webhook| webhook.idempotency_key.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_delivers_every_event() {
    let cluster = MockCluster::new(1).expect("mock Kafka cluster");
    cluster.create_topic(TOPIC, 4, 1).expect("create topic");
    let brokers = cluster.bootstrap_servers();
    let world = World::with_backend(Backend::Distributed).await;
    let mut receivers = vec![world.receiver.clone()];
    for _ in 0..2 {
        receivers.push(
            Receiver::start(&world.pki, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
        );
    }

    let common_env = [
        ("HOOKLINE_KAFKA__BROKERS", brokers.as_str()),
        ("HOOKLINE_KAFKA__SESSION_TIMEOUT", "6s"),
        ("HOOKLINE_RETRY__INTERVAL", "200ms"),
        ("HOOKLINE_RETRY__BACKOFF_UNIT", "10ms"),
        ("HOOKLINE_RETRY__MAX_RETRIES", "20"),
        ("HOOKLINE_SHUTDOWN__GRACE", "2s"),
    ];
    let api = world.start("api", &common_env).await;
    api.create_product("order-created", TOPIC).await;
    for receiver in &receivers {
        api.create_application(receiver, "order-created", "shop")
            .await;
    }

    let mut creators: Vec<Server> = Vec::new();
    for _ in 0..2 {
        creators.push(world.start("creator", &common_env).await);
    }
    let mut dispatchers: Vec<Server> = Vec::new();
    for _ in 0..3 {
        dispatchers.push(world.start("dispatcher", &common_env).await);
    }

    let started = Instant::now();
    let producer = tokio::spawn(produce_all(brokers.clone()));
    let mut round = 0u32;
    let mut kills = 0u32;
    loop {
        let complete = receivers
            .iter()
            .all(|receiver| delivered_keys(receiver).len() >= EVENTS);
        // Every planned fault happens before the run may end.
        if (complete && round >= 12) || started.elapsed() > RUN_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        round += 1;
        match round {
            3 => tokio::task::spawn_blocking(restart_rabbitmq).await.unwrap(),
            6 => tokio::task::spawn_blocking(restart_redis).await.unwrap(),
            r if r <= 12 && r % 2 == 0 => {
                let index = (r as usize / 2) % creators.len();
                creators[index].kill_now();
                creators[index] = world.start("creator", &common_env).await;
                kills += 1;
            }
            r if r <= 12 => {
                let index = (r as usize) % dispatchers.len();
                dispatchers[index].kill_now();
                dispatchers[index] = world.start("dispatcher", &common_env).await;
                kills += 1;
            }
            _ => {}
        }
    }
    ensure_queues_can_be_declared().await;
    producer.await.expect("producer finished");
    assert_eq!(kills, 10, "every planned kill happened");

    let mut duplicates = 0;
    for (index, receiver) in receivers.iter().enumerate() {
        let keys = delivered_keys(receiver);
        let stats = receiver.stats();
        duplicates += stats.duplicates;
        assert_eq!(
            stats.failed_verification, 0,
            "receiver {index}: every signature verifies"
        );
        assert_eq!(
            keys.len(),
            EVENTS,
            "receiver {index} got {} of {EVENTS} events after {:?}",
            keys.len(),
            started.elapsed()
        );
    }
    println!("chaos run: {EVENTS} events x 3 applications in {:?}, {kills} process kills, {duplicates} duplicate deliveries", started.elapsed());

    let (status, dead) = api
        .request(reqwest::Method::GET, "/api/v1/dead-letters", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        dead.as_array().map(Vec::len),
        Some(0),
        "no delivery should be dead: {dead}"
    );
}
