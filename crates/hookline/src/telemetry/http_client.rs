//! The OTLP exporter's HTTP client, on the workspace's reqwest, so the
//! binary carries one HTTP stack.

use async_trait::async_trait;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::time::Duration;

/// Largest collector response body read; OTLP responses are small status
/// messages.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// [`HttpClient`] over one shared `reqwest::Client`.
#[derive(Debug, Clone)]
pub(super) struct OtlpHttpClient {
    client: reqwest::Client,
}

impl OtlpHttpClient {
    /// Builds a client whose requests time out after `timeout`.
    pub(super) fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()?;
        Ok(Self { client })
    }
}

#[async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let mut response = self.client.execute(request).await?;
        let mut builder = Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(builder.body(Bytes::from(body))?)
    }
}
