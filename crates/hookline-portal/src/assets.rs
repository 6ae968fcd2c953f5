//! Static assets compiled into the binary, and the brand stylesheet made
//! from the configured colour.

use crate::PortalState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const STYLESHEET: &str = include_str!("../assets/portal.css");
const SCRIPT: &str = include_str!("../assets/portal.js");
const LOGO: &str = include_str!("../assets/logo.svg");

/// Assets change only with the binary, so browsers may keep them an hour.
const CACHE: &str = "public, max-age=3600";

pub(crate) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/portal/assets/portal.css", get(stylesheet))
        .route("/portal/assets/portal.js", get(script))
        .route("/portal/assets/logo.svg", get(logo))
        .route("/portal/assets/brand.css", get(brand))
        .route(
            "/portal/assets/samples/{file}",
            get(crate::samples::download),
        )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        STYLESHEET,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        SCRIPT,
    )
}

async fn logo() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, CACHE),
        ],
        LOGO,
    )
}

/// Serves `--accent` from `portal.brand_colour`, which the configuration
/// checked with [`is_valid_colour`], so it cannot inject other CSS.
async fn brand(State(state): State<PortalState>) -> impl IntoResponse {
    let colour = &state.settings.brand_colour;
    let colour = if is_valid_colour(colour) {
        colour.as_str()
    } else {
        "#1d4ed8"
    };
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        format!(":root {{ --accent: {colour}; }}\n"),
    )
}

/// Returns whether `value` is a CSS hex colour: `#` and 3 or 6 hex digits.
pub fn is_valid_colour(value: &str) -> bool {
    value.strip_prefix('#').is_some_and(|digits| {
        matches!(digits.len(), 3 | 6) && digits.bytes().all(|byte| byte.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_hex_only() {
        assert!(is_valid_colour("#1d4ed8"));
        assert!(is_valid_colour("#abc"));
        assert!(!is_valid_colour("1d4ed8"));
        assert!(!is_valid_colour("#12345"));
        assert!(!is_valid_colour("red; } body { display: none"));
    }
}
