//! `hookline demo`: a real server and a real HTTPS receiver on this machine.
//! Sample order-created events become signed webhooks for three
//! applications: one healthy, one that fails once (a retry), one that always
//! fails (dead letters, then a replay once it recovers).

use crate::config::Config;
use crate::server;
use anyhow::{bail, Context};
use hookline_core::signing::SigningSecret;
use hookline_receiver::{Behaviour, Receiver, TestPki, Verification};
use rand::RngCore;
use serde_json::{json, Value};
use std::time::Duration;

const SAMPLE_EVENT: &str = include_str!("../../../fixtures/order-created.event.json");
const ORDER_IDS: [&str; 3] = ["1001XYZ", "1002XYZ", "1003XYZ"];
const WAIT: Duration = Duration::from_secs(30);

struct Demo {
    http: reqwest::Client,
    api: String,
    token: String,
}

/// Runs the demo; with `keep_running` the server stays up until Ctrl-C.
pub async fn run(mut config: Config, keep_running: bool) -> anyhow::Result<()> {
    let workspace = tempfile_dir()?;
    let pki = TestPki::generate().context("cannot make demo certificates")?;
    let ca_path = workspace.join("demo-ca.pem");
    pki.write_ca(&ca_path)?;
    let receiver = Receiver::start(&pki, "127.0.0.1:0".parse()?).await?;

    demo_settings(&mut config, &workspace, ca_path);
    println!("Hookline demo");
    println!("  data directory   {}", workspace.display());
    println!(
        "  HTTPS receiver   {} (certificate made just now, trusted through delivery.ca_file)",
        receiver.base_url()
    );
    println!(
        "  retry schedule   interval {:?} + n^4 x {:?}, {} retries\n",
        config.retry.interval, config.retry.backoff_unit, config.retry.max_retries
    );

    let running = server::start(config, server::Role::All).await?;
    let demo = Demo {
        http: reqwest::Client::new(),
        api: format!("http://{}", running.api_address),
        token: running.admin_token.clone(),
    };
    let result = demo.script(&receiver).await;
    if result.is_ok() && keep_running {
        println!(
            "\nServer running at {} with admin token {}; press Ctrl-C to stop.",
            demo.api, demo.token
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    running.stop().await;
    receiver.shutdown().await;
    result
}

fn demo_settings(config: &mut Config, workspace: &std::path::Path, ca_path: std::path::PathBuf) {
    let mut token = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut token);
    config.api.listen = "127.0.0.1:0".parse().expect("valid address");
    config.api.admin_token = token.iter().map(|b| format!("{b:02x}")).collect();
    config.storage.data_dir = workspace.join("data");
    config.delivery.ca_file = Some(ca_path);
    config.delivery.allow_private_addresses = true;
    config.retry.interval = Duration::from_millis(500);
    config.retry.backoff_unit = Duration::from_millis(50);
    config.retry.max_retries = 3;
    config.kafka.brokers.clear();
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let mut suffix = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!("hookline-demo-{name}"));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(path)
}

impl Demo {
    async fn script(&self, receiver: &Receiver) -> anyhow::Result<()> {
        self.post("/api/v1/products", json!({"name": "order-created", "topic": "order-created-event", "content_type": "application/json"}))
            .await?;
        println!("Created event API order-created (topic order-created-event)");

        let apps = [
            ("acme", "Acme Shipping", Behaviour::Succeed),
            (
                "globex",
                "Globex Billing",
                Behaviour::FailTimes {
                    failures: 1,
                    status: 503,
                },
            ),
            (
                "initech",
                "Initech Legacy",
                Behaviour::AlwaysFail { status: 500 },
            ),
        ];
        let mut ids = Vec::new();
        for (path, name, behaviour) in apps {
            let url = receiver.endpoint_url(path);
            let body = json!({"name": name, "product": "order-created", "plan": "free", "webhook_url": url});
            let created = self.post("/api/v1/applications", body).await?;
            let secret = SigningSecret::parse(created["secret"].as_str().unwrap_or_default())?;
            receiver.set_secret(path, secret);
            receiver.script(path, behaviour);
            let id = created["id"].as_str().unwrap_or_default().to_owned();
            println!("Subscribed {name:<15} {id}  -> {url}");
            ids.push((path, name, id));
        }

        println!();
        for order in ORDER_IDS {
            let payload = SAMPLE_EVENT.replace("1001XYZ", order);
            let response = self.ingest(&payload, order).await?;
            println!(
                "Sent order {order}: event {} ({} deliveries)",
                response["id"].as_str().unwrap_or("?"),
                response["deliveries"]
            );
        }
        let duplicate = self
            .ingest(&SAMPLE_EVENT.replace("1001XYZ", ORDER_IDS[0]), ORDER_IDS[0])
            .await?;
        println!(
            "Sent order {} again with the same Idempotency-Key: duplicate = {}",
            ORDER_IDS[0], duplicate["duplicate"]
        );

        self.wait_until_settled(&ids).await?;
        self.report(receiver, &ids).await?;
        self.replay(receiver, &ids[2]).await
    }

    /// Waits until every delivery is delivered or dead.
    async fn wait_until_settled(&self, ids: &[(&str, &str, String)]) -> anyhow::Result<()> {
        println!("\nWaiting for deliveries, retries and dead letters...");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut pending = 0;
            for (_, _, id) in ids {
                let deliveries = self
                    .get(&format!("/api/v1/applications/{id}/deliveries"))
                    .await?;
                pending += as_list(&deliveries)
                    .iter()
                    .filter(|d| d["state"] == "pending")
                    .count();
            }
            if pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{pending} deliveries still pending after {WAIT:?}; see the server log above"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn report(
        &self,
        receiver: &Receiver,
        ids: &[(&str, &str, String)],
    ) -> anyhow::Result<()> {
        println!();
        for (path, name, id) in ids {
            let received = receiver.deliveries(path);
            let verified = received
                .iter()
                .filter(|r| r.verification == Verification::Verified)
                .count();
            let deliveries = self
                .get(&format!("/api/v1/applications/{id}/deliveries"))
                .await?;
            println!(
                "{name}: {} requests received, {verified} with a valid signature",
                received.len()
            );
            for delivery in as_list(&deliveries).iter().rev() {
                let attempts: Vec<String> = as_list(&delivery["attempts"])
                    .iter()
                    .map(describe_attempt)
                    .collect();
                println!(
                    "  {} {:<9} webhook-id {}  attempts: {}",
                    delivery["id"].as_str().unwrap_or("?"),
                    delivery["state"].as_str().unwrap_or("?"),
                    delivery["webhook_id"].as_str().unwrap_or("?"),
                    attempts.join(", ")
                );
            }
        }
        let dead = self.get("/api/v1/dead-letters").await?;
        println!("\nDead letters: {}", as_list(&dead).len());
        for letter in as_list(&dead) {
            println!(
                "  {}  reason: {}",
                letter["id"].as_str().unwrap_or("?"),
                letter["reason"].as_str().unwrap_or("?")
            );
        }
        Ok(())
    }

    /// The failing endpoint recovers; one dead letter is replayed and delivered.
    async fn replay(&self, receiver: &Receiver, app: &(&str, &str, String)) -> anyhow::Result<()> {
        let (path, name, _) = app;
        let dead = self.get("/api/v1/dead-letters").await?;
        let Some(first) = as_list(&dead)
            .first()
            .and_then(|d| d["id"].as_str())
            .map(str::to_owned)
        else {
            bail!("expected dead letters for {name}, found none");
        };
        receiver.script(path, Behaviour::Succeed);
        let before = receiver
            .deliveries(path)
            .iter()
            .filter(|r| r.succeeded())
            .count();
        self.post(&format!("/api/v1/dead-letters/{first}/replay"), json!({}))
            .await?;
        let arrived = receiver
            .wait_for(
                |_| {
                    receiver
                        .deliveries(path)
                        .iter()
                        .filter(|r| r.succeeded())
                        .count()
                        > before
                },
                WAIT,
            )
            .await;
        if !arrived {
            bail!("the replayed dead letter {first} did not arrive within {WAIT:?}");
        }
        println!("\n{name} recovered; replayed dead letter {first}: delivered and verified.");
        Ok(())
    }

    async fn ingest(&self, payload: &str, key: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/api/v1/products/order-created/events", self.api))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("order-{key}"))
            .body(payload.to_owned())
            .send()
            .await?;
        json_of(response).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        json_of(response).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .send()
            .await?;
        json_of(response).await
    }
}

async fn json_of(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .context("the API responded with a body that is not JSON")?;
    if !status.is_success() {
        bail!("the API responded {status}: {body}");
    }
    Ok(body)
}

fn as_list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn describe_attempt(attempt: &Value) -> String {
    match attempt["status_code"].as_u64() {
        Some(status) => format!(
            "#{} HTTP {status} ({} ms)",
            attempt["number"], attempt["duration_ms"]
        ),
        None => format!(
            "#{} {}",
            attempt["number"],
            attempt["error_class"].as_str().unwrap_or("error")
        ),
    }
}
