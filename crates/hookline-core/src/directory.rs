//! The subscription directory: which applications receive a product's
//! events, and where and with which secrets to send them.

use crate::{ApplicationId, SigningSecret};
use async_trait::async_trait;
use std::sync::Arc;

/// Where and how to deliver to one application, looked up at send time so
/// that secrets never travel in queue messages.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub application_id: ApplicationId,
    pub url: String,
    pub plan: String,
    /// Active secrets, newest first; all of them sign each delivery.
    pub secrets: Vec<SigningSecret>,
    pub active: bool,
}

/// Failure to reach the directory; retry later.
#[derive(Debug, thiserror::Error)]
#[error("subscription directory failed: {message}")]
pub struct DirectoryError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Active applications subscribed to `product`.
    async fn subscribers(&self, product: &str) -> Result<Arc<[ApplicationId]>, DirectoryError>;
    /// The endpoint of one application, or `None` when it no longer exists.
    async fn endpoint(&self, application: &ApplicationId) -> Result<Option<Arc<Endpoint>>, DirectoryError>;
    /// Drops cached entries after a change to applications.
    fn invalidate(&self);
}
