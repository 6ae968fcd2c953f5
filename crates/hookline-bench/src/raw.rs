//! The raw limit: signed webhook requests sent straight to the receiver by
//! one shared client, with no Hookline in between.
//!
//! Each request carries the headers Hookline sends (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`, `idempotency-key`,
//! `content-type`), signed per request as Hookline signs each attempt, so
//! the receiver does the same work as in the Hookline phase.

use crate::generator::per_second;
use crate::receipts::ConnectionUse;
use crate::workload::{idempotency_key, json_payload};
use anyhow::{bail, Context, Result};
use hookline_core::signing::SigningSecret;
use hookline_core::WebhookId;
use hookline_receiver::Receiver;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Receiver endpoint of the raw phase.
const ENDPOINT: &str = "raw";
/// Product name the raw phase derives `webhook-id` values from.
const PRODUCT: &str = "hookline-bench-raw";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests of the raw phase.
#[derive(Debug, Clone)]
pub(crate) struct RawConfig {
    pub(crate) requests: u64,
    pub(crate) payload_bytes: usize,
    /// Requests in flight at once.
    pub(crate) concurrency: usize,
}

/// Figures of the raw phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RawFigures {
    pub(crate) requests: u64,
    /// Requests that got a 2xx response.
    pub(crate) succeeded: u64,
    pub(crate) seconds: f64,
    pub(crate) requests_per_second: f64,
    pub(crate) verification_failures: u64,
    pub(crate) connection_use: ConnectionUse,
}

struct Job {
    config: RawConfig,
    client: reqwest::Client,
    url: String,
    secret: SigningSecret,
    next_index: AtomicU64,
    succeeded: AtomicU64,
}

/// Sends `config.requests` signed requests to `receiver` and clears the
/// receiver's log afterwards. The client trusts `ca_pem` in addition to the
/// built-in roots, as Hookline does with `delivery.ca_file`.
pub(crate) async fn run(
    receiver: &Receiver,
    ca_pem: &str,
    config: RawConfig,
) -> Result<RawFigures> {
    let secret = SigningSecret::generate();
    receiver.set_secret(ENDPOINT, secret.clone());
    let certificate = reqwest::Certificate::from_pem(ca_pem.as_bytes())
        .context("invalid receiver CA certificate")?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(certificate)
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(config.concurrency)
        .build()?;
    let concurrency = config.concurrency;
    let requests = config.requests;
    let job = Arc::new(Job {
        config,
        client,
        url: receiver.endpoint_url(ENDPOINT),
        secret,
        next_index: AtomicU64::new(0),
        succeeded: AtomicU64::new(0),
    });

    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(job.clone())))
        .collect();
    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed();

    let stats = receiver.stats();
    let connection_use = ConnectionUse::of(&receiver.all());
    receiver.clear();
    let succeeded = job.succeeded.load(Ordering::Relaxed);
    Ok(RawFigures {
        requests,
        succeeded,
        seconds: elapsed.as_secs_f64(),
        requests_per_second: per_second(succeeded, elapsed),
        verification_failures: stats.failed_verification,
        connection_use,
    })
}

/// Sends requests until none is left. A transport error stops the phase,
/// because the receiver runs in this process and should not fail.
async fn worker(job: Arc<Job>) -> Result<()> {
    loop {
        let index = job.next_index.fetch_add(1, Ordering::Relaxed);
        if index >= job.config.requests {
            return Ok(());
        }
        let status = send(&job, index).await?;
        if status.is_success() {
            job.succeeded.fetch_add(1, Ordering::Relaxed);
        } else if status != reqwest::StatusCode::UNAUTHORIZED {
            // A 401 is a verification failure, which the receiver counts.
            bail!("the receiver returned {status} to raw request {index}, expected 204");
        }
    }
}

async fn send(job: &Job, index: u64) -> Result<reqwest::StatusCode> {
    let key = idempotency_key(index);
    let webhook_id = WebhookId::derive(PRODUCT, &key);
    let body = json_payload(index, job.config.payload_bytes);
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let signature = job.secret.sign(webhook_id.as_str(), timestamp, &body);
    let response = job
        .client
        .post(&job.url)
        .header("webhook-id", webhook_id.as_str())
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .header("idempotency-key", key)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("raw request {index} to the receiver failed"))?;
    let status = response.status();
    // Reading the (empty) body lets the connection go back to the pool.
    let _ = response.bytes().await;
    Ok(status)
}
