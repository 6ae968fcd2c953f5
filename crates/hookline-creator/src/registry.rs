//! Client of a schema registry with the Confluent REST API, which Apicurio
//! Registry also serves: `GET {url}/schemas/ids/{id}` returns
//! `{"schema": "<schema text>"}`, with `"schemaType"` for schemas other
//! than Avro. Schemas never change under an id, so each one is fetched once
//! and kept for the life of the process.

use apache_avro::Schema;
use hookline_core::content::PayloadError;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Deadline of one registry request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A registry request failed; the record is retried later.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema_registry.url {url:?} is invalid: {problem}")]
    InvalidUrl { url: String, problem: String },
    #[error("schema registry request for schema id {id} failed: {message}")]
    Unavailable { id: u32, message: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaResponse {
    schema: String,
    schema_type: Option<String>,
}

/// Fetches Avro schemas by id and caches them.
pub struct SchemaRegistry {
    base: url::Url,
    http: reqwest::Client,
    /// Parsed schemas by id; never held across an await.
    cache: RwLock<HashMap<u32, Arc<Schema>>>,
}

impl SchemaRegistry {
    /// Creates a client of the registry at `url`, such as
    /// `http://registry.internal:8081` or Apicurio's
    /// `http://apicurio.internal:8080/apis/ccompat/v7`.
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let invalid = |problem: String| RegistryError::InvalidUrl {
            url: url.to_owned(),
            problem,
        };
        let mut base = url::Url::parse(url).map_err(|error| invalid(error.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("use an http:// or https:// URL".into()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            base,
            http,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Returns the Avro schema with id `id`. The inner error is the
    /// payload's fault, such as an unknown id or a schema that is not Avro.
    /// The outer error means that the registry request failed.
    pub async fn schema(
        &self,
        id: u32,
    ) -> Result<Result<Arc<Schema>, PayloadError>, RegistryError> {
        if let Some(schema) = self.cache.read().expect("schema cache lock").get(&id) {
            return Ok(Ok(schema.clone()));
        }
        let fetched = match self.fetch(id).await? {
            Ok(schema) => schema,
            Err(rejected) => return Ok(Err(rejected)),
        };
        let schema = Arc::new(fetched);
        self.cache
            .write()
            .expect("schema cache lock")
            .insert(id, schema.clone());
        tracing::info!(
            schema_id = id,
            "Fetched an Avro schema from the schema registry"
        );
        Ok(Ok(schema))
    }

    async fn fetch(&self, id: u32) -> Result<Result<Schema, PayloadError>, RegistryError> {
        let unavailable = |message: String| RegistryError::Unavailable { id, message };
        let url = self
            .base
            .join(&format!("schemas/ids/{id}"))
            .map_err(|error| unavailable(error.to_string()))?;
        let response = self
            .http
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.schemaregistry.v1+json, application/json",
            )
            .send()
            .await
            .map_err(|error| unavailable(error.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Err(PayloadError::UnknownSchemaId(id)));
        }
        if !status.is_success() {
            return Err(unavailable(format!(
                "the registry responded with HTTP {status}"
            )));
        }
        let body: SchemaResponse = response
            .json()
            .await
            .map_err(|error| unavailable(format!("unexpected response body: {error}")))?;
        Ok(parse_avro(id, &body))
    }
}

fn parse_avro(id: u32, body: &SchemaResponse) -> Result<Schema, PayloadError> {
    if let Some(kind) = body.schema_type.as_deref() {
        if !kind.eq_ignore_ascii_case("AVRO") {
            return Err(PayloadError::InvalidAvro(format!(
                "schema id {id} in the registry is a {kind} schema, not Avro"
            )));
        }
    }
    // NOTE: schema references (`"references"` in the response) are not
    // resolved, so a schema that names types from another subject fails here.
    Schema::parse_str(&body.schema).map_err(|error| {
        PayloadError::InvalidAvro(format!(
            "schema id {id} in the registry is not a valid Avro schema: {error}"
        ))
    })
}
