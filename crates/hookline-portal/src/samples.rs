//! Signature verification code samples, compiled in from `samples/` and
//! shown on each product's page; each is also served as a download.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

/// A verification sample: language, file name and source.
struct Sample {
    language: &'static str,
    file: &'static str,
    source: &'static str,
}

const SAMPLES: [Sample; 5] = [
    Sample {
        language: "Python",
        file: "verify.py",
        source: include_str!("../samples/verify.py"),
    },
    Sample {
        language: "JavaScript (Node.js)",
        file: "verify.js",
        source: include_str!("../samples/verify.js"),
    },
    Sample {
        language: "Go",
        file: "verify.go",
        source: include_str!("../samples/verify.go"),
    },
    Sample {
        language: "Java",
        file: "Verify.java",
        source: include_str!("../samples/Verify.java"),
    },
    Sample {
        language: "Rust",
        file: "verify.rs",
        source: include_str!("../samples/verify.rs"),
    },
];

/// Renders every sample in a collapsible section with a copy button.
pub(crate) fn render() -> Markup {
    html! {
        @for (index, sample) in SAMPLES.iter().enumerate() {
            @let id = format!("sample-{index}");
            details {
                summary { (sample.language) }
                p {
                    a href=(format!("/portal/assets/samples/{}", sample.file)) download=(sample.file) { "Download " (sample.file) }
                    " "
                    button type="button" class="copy secondary" data-copy-target=(id) hidden { "Copy" }
                }
                pre tabindex="0" aria-label=(format!("{} verification sample", sample.language)) {
                    code id=(id) { (sample.source) }
                }
            }
        }
    }
}

/// Serves one sample as plain text.
pub(crate) async fn download(Path(file): Path<String>) -> Response {
    let Some(sample) = SAMPLES.iter().find(|sample| sample.file == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        sample.source,
    )
        .into_response()
}
