//! Failures of portal requests, rendered as small HTML pages.

use crate::layout;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hookline_core::queue::QueueError;
use hookline_core::store::StoreError;
use maud::html;

/// A request that cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PortalError {
    /// The page does not exist, or belongs to another account.
    #[error("not found")]
    NotFound,
    /// The form's CSRF token is missing or wrong.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The page needs a signed-in account.
    #[error("sign-in required")]
    SignInRequired,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            Self::SignInRequired => {
                return Redirect::to("/portal/signin").into_response();
            }
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "This page does not exist, or it belongs to another account.".to_owned(),
            ),
            Self::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                "Form rejected",
                (*message).to_owned(),
            ),
            Self::Store(_) | Self::Queue(_) | Self::Internal(_) => {
                tracing::error!(error = %self, "Portal request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The portal could not complete this request. Try again in a moment.".to_owned(),
                )
            }
        };
        let body = html! {
            h1 { (title) }
            p { (message) }
            p { a href="/portal" { "Back to the portal" } }
        };
        let page = layout::bare_page(title, body);
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page.into_string(),
        )
            .into_response()
    }
}
