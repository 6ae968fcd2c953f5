//! Reads a service's applications and application plans from 3scale's
//! Account Management API:
//!
//! - `GET /admin/api/applications.json?service_id=S&page=N&per_page=500`
//!   returns `{"applications": [{"application": {...}}], "metadata":
//!   {"per_page", "total_entries", "total_pages", "current_page"}}`. Every
//!   page is read; without `metadata`, a short page is the last one.
//! - `GET /admin/api/services/S/application_plans.json` returns
//!   `{"plans": [{"application_plan": {"id", "system_name", ...}}]}`.
//! - `GET /admin/api/services/S/metrics.json` returns
//!   `{"metrics": [{"metric": {"id", "name", "system_name", ...}}]}`.
//! - `GET /admin/api/application_plans/P/limits.json` returns
//!   `{"limits": [{"limit": {"id", "period", "value", "metric_id", ...}}]}`.
//!
//! Both authenticate with the `access_token` query parameter.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The largest page 3scale serves.
pub(crate) const PER_PAGE: u32 = 500;
/// Pages read at most per service, so a server that reports ever more pages
/// cannot keep a refresh going forever (500 × 1000 applications).
const MAX_PAGES: u32 = 1000;

/// A failed read from 3scale.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("3scale request timed out: {url}")]
    Timeout { url: String },
    #[error("3scale answered HTTP {status} to {url}")]
    Status { url: String, status: u16 },
    #[error("3scale request failed: {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("3scale sent a response that is not the documented JSON: {url}: {reason}")]
    InvalidBody { url: String, reason: String },
}

/// One application as 3scale returns it. Fields are kept as JSON because
/// the webhook URL and secret fields are configurable.
pub(crate) type RawApplication = Map<String, Value>;

#[derive(Deserialize)]
struct ApplicationsPage {
    applications: Vec<ApplicationEnvelope>,
    metadata: Option<PageMetadata>,
}

#[derive(Deserialize)]
struct ApplicationEnvelope {
    application: RawApplication,
}

#[derive(Deserialize)]
struct PageMetadata {
    total_pages: Option<u32>,
}

#[derive(Deserialize)]
struct PlansPage {
    plans: Vec<PlanEnvelope>,
}

#[derive(Deserialize)]
struct PlanEnvelope {
    application_plan: PlanFields,
}

#[derive(Deserialize)]
struct PlanFields {
    id: u64,
    system_name: Option<String>,
}

#[derive(Deserialize)]
struct MetricsPage {
    metrics: Vec<MetricEnvelope>,
}

#[derive(Deserialize)]
struct MetricEnvelope {
    metric: MetricFields,
}

#[derive(Deserialize)]
struct MetricFields {
    id: u64,
    name: Option<String>,
    system_name: Option<String>,
}

#[derive(Deserialize)]
struct LimitsPage {
    limits: Vec<LimitEnvelope>,
}

#[derive(Deserialize)]
struct LimitEnvelope {
    limit: PlanLimitFields,
}

/// One usage limit of an application plan: at most `value` units of the
/// metric per `period` (`minute`, `hour`, `day`, `week`, `month`, `year`
/// or `eternity`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PlanLimitFields {
    pub(crate) metric_id: u64,
    pub(crate) period: String,
    pub(crate) value: u64,
}

/// A client of one 3scale Admin Portal.
pub(crate) struct AdminApi {
    client: reqwest::Client,
    admin_url: url::Url,
    access_token: String,
}

impl AdminApi {
    pub(crate) fn new(client: reqwest::Client, admin_url: url::Url, access_token: String) -> Self {
        Self {
            client,
            admin_url,
            access_token,
        }
    }

    /// Reads every page of the applications of `service`.
    pub(crate) async fn applications(
        &self,
        service: u64,
    ) -> Result<Vec<RawApplication>, FetchError> {
        let mut applications = Vec::new();
        for page in 1..=MAX_PAGES {
            let query = [
                ("service_id", service.to_string()),
                ("page", page.to_string()),
                ("per_page", PER_PAGE.to_string()),
            ];
            let body: ApplicationsPage = self.get("admin/api/applications.json", &query).await?;
            let count = body.applications.len();
            applications.extend(body.applications.into_iter().map(|a| a.application));
            let last = match body.metadata.and_then(|metadata| metadata.total_pages) {
                Some(total) => page >= total,
                None => count < PER_PAGE as usize,
            };
            if last || count == 0 {
                break;
            }
        }
        Ok(applications)
    }

    /// Reads the `system_name` of each application plan of `service`.
    pub(crate) async fn plan_names(
        &self,
        service: u64,
    ) -> Result<HashMap<u64, String>, FetchError> {
        let path = format!("admin/api/services/{service}/application_plans.json");
        let body: PlansPage = self.get(&path, &[]).await?;
        let names = body
            .plans
            .into_iter()
            .filter_map(|plan| {
                let fields = plan.application_plan;
                Some((fields.id, fields.system_name?))
            })
            .collect();
        Ok(names)
    }

    /// Returns the id of the metric of `service` whose `system_name`, or
    /// else `name`, is `metric`.
    pub(crate) async fn metric_id(
        &self,
        service: u64,
        metric: &str,
    ) -> Result<Option<u64>, FetchError> {
        let path = format!("admin/api/services/{service}/metrics.json");
        let body: MetricsPage = self.get(&path, &[]).await?;
        let metrics: Vec<MetricFields> = body.metrics.into_iter().map(|m| m.metric).collect();
        let by_system_name = metrics
            .iter()
            .find(|fields| fields.system_name.as_deref() == Some(metric));
        let by_name = || {
            metrics
                .iter()
                .find(|fields| fields.name.as_deref() == Some(metric))
        };
        Ok(by_system_name.or_else(by_name).map(|fields| fields.id))
    }

    /// Reads the usage limits of application plan `plan`, for every metric.
    pub(crate) async fn plan_limits(&self, plan: u64) -> Result<Vec<PlanLimitFields>, FetchError> {
        let path = format!("admin/api/application_plans/{plan}/limits.json");
        let body: LimitsPage = self.get(&path, &[]).await?;
        Ok(body.limits.into_iter().map(|l| l.limit).collect())
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, FetchError> {
        let mut url = self.admin_url.clone();
        url.set_path(&format!("{}{path}", base_path(&self.admin_url)));
        url.query_pairs_mut().extend_pairs(query);
        // The URL in errors and logs never carries the token.
        let display_url = url.to_string();
        url.query_pairs_mut()
            .append_pair("access_token", &self.access_token);

        let response = self.client.get(url).send().await.map_err(|source| {
            if source.is_timeout() {
                FetchError::Timeout {
                    url: display_url.clone(),
                }
            } else {
                FetchError::Transport {
                    url: display_url.clone(),
                    source: source.without_url(),
                }
            }
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: display_url,
                status,
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|source| match source.is_timeout() {
                true => FetchError::Timeout {
                    url: display_url.clone(),
                },
                false => FetchError::Transport {
                    url: display_url.clone(),
                    source: source.without_url(),
                },
            })?;
        serde_json::from_slice(&bytes).map_err(|error| FetchError::InvalidBody {
            url: display_url,
            reason: error.to_string(),
        })
    }
}

/// Returns the admin URL's path with a trailing slash, so a portal behind a
/// path prefix keeps it.
fn base_path(admin_url: &url::Url) -> String {
    let path = admin_url.path();
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}
