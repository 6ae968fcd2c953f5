//! Reports delivered notifications to 3scale's Service Management API, so
//! 3scale's analytics and limits see them as usage of the application.
//!
//! [`ReportingEgress`] wraps the dispatcher's egress and queues one hit for
//! every attempt that the consumer accepted (2xx). A background task sums
//! the hits per application for [`FLUSH_INTERVAL`] and sends one
//! `GET /transactions/authrep.xml?service_id=S&user_key=K&usage[M]=N` per
//! application, authenticated with the service's `service_token` or the
//! account's `provider_key`. Reporting never delays or fails a delivery: a
//! failed report is logged and dropped.

use crate::parse_application_id;
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hookline_core::directory::Endpoint;
use hookline_core::queue::DeliveryTask;
use hookline_core::ApplicationId;
use hookline_delivery::{AttemptReport, Egress, EgressOutcome};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long hits are summed before they are sent.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Hits waiting to be summed; more are dropped and counted in
/// `hookline_threescale_authrep_dropped_total`.
const QUEUE_CAPACITY: usize = 10_000;

/// Credentials of the Service Management API.
#[derive(Debug, Clone)]
pub enum ReportCredentials {
    /// The `service_token` of each service, by service id.
    ServiceTokens(BTreeMap<u64, String>),
    /// The account's `provider_key`, valid for every service.
    ProviderKey(String),
}

/// Settings of usage reporting.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// Base URL of the Service Management API, such as
    /// `https://su1.3scale.net`.
    pub url: url::Url,
    pub credentials: ReportCredentials,
    /// The metric that each delivered notification increments.
    pub metric: String,
    /// Deadline of one report request.
    pub timeout: Duration,
}

/// One delivered notification of an application.
struct Hit {
    application_id: ApplicationId,
    service: u64,
    user_key: String,
}

/// An [`Egress`] that reports each accepted attempt of `inner` to 3scale.
pub struct ReportingEgress {
    inner: Arc<dyn Egress>,
    hits: mpsc::Sender<Hit>,
}

impl ReportingEgress {
    /// Wraps `inner` and starts the reporting task, which runs until the
    /// egress is dropped and then sends the hits it still has.
    pub fn spawn(
        inner: Arc<dyn Egress>,
        settings: ReportSettings,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), reqwest::Error> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(settings.timeout)
            .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (hits, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let reporter = Reporter { client, settings };
        let task = tokio::spawn(reporter.run(receiver));
        Ok((Self { inner, hits }, task))
    }

    fn record(&self, endpoint: &Endpoint) {
        let Some((service, _)) = parse_application_id(&endpoint.application_id) else {
            return;
        };
        let Some(user_key) = user_key(endpoint) else {
            return;
        };
        let hit = Hit {
            application_id: endpoint.application_id.clone(),
            service,
            user_key,
        };
        if self.hits.try_send(hit).is_err() {
            metrics::counter!("hookline_threescale_authrep_dropped_total").increment(1);
        }
    }
}

/// Recovers the `user_key` from the endpoint's signing key, which the 3scale
/// directory builds from the key's UTF-8 bytes.
fn user_key(endpoint: &Endpoint) -> Option<String> {
    let encoded = endpoint.secrets.first()?.expose().strip_prefix("whsec_")?;
    let bytes = STANDARD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

#[async_trait]
impl Egress for ReportingEgress {
    async fn attempt(&self, task: &DeliveryTask, endpoint: &Endpoint) -> AttemptReport {
        let report = self.inner.attempt(task, endpoint).await;
        if report.result.is_success() {
            self.record(endpoint);
        }
        report
    }

    async fn try_attempt(&self, task: &DeliveryTask, endpoint: &Endpoint) -> EgressOutcome {
        let outcome = self.inner.try_attempt(task, endpoint).await;
        if let EgressOutcome::Attempted(report) = &outcome {
            if report.result.is_success() {
                self.record(endpoint);
            }
        }
        outcome
    }

    fn counts_limits(&self) -> bool {
        self.inner.counts_limits()
    }
}

struct Reporter {
    client: reqwest::Client,
    settings: ReportSettings,
}

impl Reporter {
    async fn run(self, mut receiver: mpsc::Receiver<Hit>) {
        let mut batch = Vec::new();
        loop {
            if receiver.recv_many(&mut batch, QUEUE_CAPACITY).await == 0 {
                break;
            }
            tokio::time::sleep(FLUSH_INTERVAL).await;
            while let Ok(hit) = receiver.try_recv() {
                batch.push(hit);
            }
            self.flush(std::mem::take(&mut batch)).await;
        }
        tracing::debug!("3scale usage reporting stopped");
    }

    /// Sends one report per application with the sum of its hits.
    async fn flush(&self, hits: Vec<Hit>) {
        let mut sums: HashMap<(u64, String), (ApplicationId, u64)> = HashMap::new();
        for hit in hits {
            let entry = sums
                .entry((hit.service, hit.user_key))
                .or_insert((hit.application_id, 0));
            entry.1 += 1;
        }
        for ((service, user_key), (application_id, count)) in sums {
            self.send(service, &user_key, &application_id, count).await;
        }
    }

    async fn send(&self, service: u64, user_key: &str, application_id: &ApplicationId, count: u64) {
        let credential = match &self.settings.credentials {
            ReportCredentials::ProviderKey(key) => ("provider_key", key.as_str()),
            ReportCredentials::ServiceTokens(tokens) => match tokens.get(&service) {
                Some(token) => ("service_token", token.as_str()),
                None => {
                    tracing::warn!(service, %application_id, count, "No service token for the 3scale service; usage not reported");
                    return;
                }
            },
        };
        let mut url = self.settings.url.clone();
        url.set_path(&format!(
            "{}transactions/authrep.xml",
            base_path(&self.settings.url)
        ));
        url.query_pairs_mut()
            .append_pair(credential.0, credential.1)
            .append_pair("service_id", &service.to_string())
            .append_pair("user_key", user_key)
            .append_pair(
                &format!("usage[{}]", self.settings.metric),
                &count.to_string(),
            );

        // Errors name neither the URL nor its query, which carry credentials.
        let result = match self.client.get(url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                if status == 200 {
                    Ok(())
                } else {
                    let body = response.text().await.unwrap_or_default();
                    let excerpt: String = body.chars().take(200).collect();
                    Err(format!("HTTP {status}: {excerpt}"))
                }
            }
            Err(error) => Err(error.without_url().to_string()),
        };
        match result {
            Ok(()) => {
                metrics::counter!("hookline_threescale_authrep_total", "result" => "ok")
                    .increment(1);
            }
            Err(error) => {
                metrics::counter!("hookline_threescale_authrep_total", "result" => "error")
                    .increment(1);
                tracing::warn!(service, %application_id, count, %error, "Reporting usage to 3scale failed; the hits are dropped");
            }
        }
    }
}

/// Returns the URL's path with a trailing slash, so a base path is kept.
fn base_path(url: &url::Url) -> String {
    let path = url.path();
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::SigningSecret;

    #[test]
    fn user_key_comes_back_from_the_signing_key() {
        let endpoint = Endpoint {
            application_id: crate::application_id(42, 7001),
            url: "https://hooks.example/".into(),
            plan: "basic".into(),
            limit: None,
            secrets: vec![SigningSecret::from_raw_key(b"a1b2c3")],
            active: true,
        };
        assert_eq!(user_key(&endpoint).as_deref(), Some("a1b2c3"));
    }
}
