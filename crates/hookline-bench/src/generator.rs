//! The event generator: ingests events into Hookline over HTTP keep-alive
//! with a fixed number of requests in flight, optionally at a fixed rate,
//! and records when each accepted event was sent.

use crate::server::ADMIN_TOKEN;
use crate::workload::{idempotency_key, json_payload, product_of_event};
use anyhow::{bail, Result};
use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors logged one by one. Later ones are only counted.
const LOGGED_ERRORS: u64 = 10;
/// Deadline of one ingest request, so that a hung server cannot hang the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Ingest settings: the events to send and their rate.
#[derive(Debug, Clone)]
pub(crate) struct GeneratorConfig {
    /// `POST` targets, `…/api/v1/products/{name}/events`, one per product
    /// (see [`ingest_url`]). Events take turns among them.
    pub(crate) ingest_urls: Vec<String>,
    /// Number of the first event, so that runs with several ingest phases
    /// give every event its own Idempotency-Key.
    pub(crate) first_event: u64,
    pub(crate) events: u64,
    pub(crate) payload_bytes: usize,
    /// Ingest requests in flight at once.
    pub(crate) concurrency: usize,
    /// Events per second, or `None` for as fast as the server responds.
    pub(crate) rate: Option<f64>,
}

/// Result of the ingest phase.
#[derive(Debug)]
pub(crate) struct IngestOutcome {
    /// Send time of each event, indexed by event number minus
    /// `first_event`, for the events that got 202 Accepted, and `None` for
    /// the others.
    pub(crate) sent: Vec<Option<Instant>>,
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    /// Time just before the first request was sent.
    pub(crate) started: Instant,
    /// Time after the last response arrived.
    pub(crate) finished: Instant,
}

impl IngestOutcome {
    pub(crate) fn accepted_per_second(&self) -> f64 {
        per_second(self.accepted, self.finished - self.started)
    }
}

/// Returns the ingest URL of `product` on the API at `api_url`.
pub(crate) fn ingest_url(api_url: &str, product: &str) -> String {
    format!("{api_url}/api/v1/products/{product}/events")
}

/// Returns `count / elapsed`, or 0 for no elapsed time.
pub(crate) fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

struct Job {
    config: GeneratorConfig,
    client: reqwest::Client,
    next_offset: AtomicU64,
    errors: AtomicU64,
    started: Instant,
}

/// Sends every event once and returns when each has a response or failed.
/// A rejected event is not retried, so it has no deliveries.
pub(crate) async fn run(config: GeneratorConfig) -> Result<IngestOutcome> {
    if config.ingest_urls.is_empty() {
        bail!("the generator needs at least one ingest URL");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(config.concurrency)
        .build()?;
    let events = config.events;
    let concurrency = config.concurrency;
    let job = Arc::new(Job {
        config,
        client,
        next_offset: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        started: Instant::now(),
    });

    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(job.clone())))
        .collect();
    let mut sent = vec![None; usize::try_from(events)?];
    for worker in workers {
        for (offset, instant) in worker.await? {
            sent[offset as usize] = Some(instant);
        }
    }
    let finished = Instant::now();

    let errors = job.errors.load(Ordering::Relaxed);
    if errors > LOGGED_ERRORS {
        tracing::warn!(
            errors,
            "ingest requests failed, and only the first {LOGGED_ERRORS} were logged"
        );
    }
    let accepted = sent.iter().filter(|instant| instant.is_some()).count() as u64;
    Ok(IngestOutcome {
        sent,
        accepted,
        rejected: events - accepted,
        started: job.started,
        finished,
    })
}

/// Takes the next event until none is left, and returns the offsets from
/// `first_event` of the events it got accepted, with their send times.
async fn worker(job: Arc<Job>) -> Vec<(u64, Instant)> {
    let mut accepted = Vec::new();
    loop {
        let offset = job.next_offset.fetch_add(1, Ordering::Relaxed);
        if offset >= job.config.events {
            return accepted;
        }
        if let Some(rate) = job.config.rate {
            let due = job.started + Duration::from_secs_f64(offset as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let index = job.config.first_event + offset;
        let body = json_payload(index, job.config.payload_bytes);
        let send_instant = Instant::now();
        match ingest(&job, index, body).await {
            Ok(()) => accepted.push((offset, send_instant)),
            Err(error) => job.log_error(index, &error),
        }
    }
}

async fn ingest(job: &Job, index: u64, body: Bytes) -> Result<()> {
    let urls = &job.config.ingest_urls;
    let product = product_of_event(index, urls.len() as u32) as usize;
    let response = job
        .client
        .post(&urls[product])
        .bearer_auth(ADMIN_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .header("idempotency-key", idempotency_key(index))
        .body(body)
        .send()
        .await?;
    let status = response.status();
    // Reading the whole body lets the connection go back to the pool.
    let text = response.text().await.unwrap_or_default();
    if status != StatusCode::ACCEPTED {
        bail!("returned {status}, expected 202 Accepted: {text}");
    }
    Ok(())
}

impl Job {
    fn log_error(&self, index: u64, error: &anyhow::Error) {
        let count = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if count <= LOGGED_ERRORS {
            let key = idempotency_key(index);
            tracing::warn!(%key, error = %format!("{error:#}"), "ingest request failed");
        }
    }
}
