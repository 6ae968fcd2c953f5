//! The catalogue of event APIs, each product's webhook description, and the
//! admin API reference. These pages are public.

use crate::error::PortalError;
use crate::layout::{self};
use crate::session::MaybeViewer;
use crate::{sample, PortalState};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hookline_core::webhook_doc::webhook_document;
use hookline_core::{ContentType, Product, RetryPolicy};
use maud::{html, Markup};
use serde_json::Value;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use utoipa::OpenApi;

pub(crate) async fn list(
    State(state): State<PortalState>,
    MaybeViewer(viewer): MaybeViewer,
) -> Result<Response, PortalError> {
    let products = state.store.products().await?;
    let body = html! {
        h1 { "Event APIs" }
        p { "Each event API delivers one kind of event to the webhooks of its subscribers. Open one to see its payload schema, the headers of each request and how to verify the signature." }
        @if products.is_empty() {
            p { "No event APIs are published yet." }
        } @else {
            ul class="cards" {
                @for product in &products {
                    li class="card" {
                        h2 { a href=(format!("/portal/apis/{}", product.name)) { (product.name) } }
                        p { (description(product)) }
                        dl class="facts" {
                            dt { "Format" } dd { code { (product.content_type.media_type()) } }
                            dt { "Schema" } dd { @if product.schema.is_some() { "published" } @else { "none" } }
                        }
                        p {
                            a href=(format!("/portal/subscribe?product={}", product.name)) { "Subscribe" }
                            " · "
                            a href=(format!("/portal/apis/{}/openapi.json", product.name)) { "OpenAPI document" }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::ok(layout::page(
        &state,
        viewer.as_ref(),
        "Event APIs",
        body,
    )))
}

/// Returns the schema's `description` or `title`, or a sentence about the format.
fn description(product: &Product) -> String {
    let schema: Option<Value> = product
        .schema
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok());
    let from_schema = schema.as_ref().and_then(|schema| {
        ["description", "title", "doc"]
            .iter()
            .find_map(|key| schema.get(key).and_then(Value::as_str))
            .map(str::to_owned)
    });
    from_schema.unwrap_or_else(|| {
        format!(
            "{} events, delivered as {}.",
            product.name,
            product.content_type.media_type()
        )
    })
}

pub(crate) async fn show(
    State(state): State<PortalState>,
    MaybeViewer(viewer): MaybeViewer,
    Path(name): Path<String>,
) -> Result<Response, PortalError> {
    let product = state
        .store
        .product(&name)
        .await?
        .ok_or(PortalError::NotFound)?;
    let retry = state.settings.retry;
    let document = webhook_document(&product, &retry);
    let operation = document["webhooks"][&product.name]["post"].clone();
    // An Avro sample is a binary datum, which the page cannot show as text.
    let example = match product.content_type {
        ContentType::Avro => None,
        _ => sample::payload(&product, OffsetDateTime::now_utc()).ok(),
    };
    let body = html! {
        p { a href="/portal/apis" { "Event APIs" } }
        h1 { (product.name) }
        p { (description(&product)) }
        dl class="facts" {
            dt { "Format" } dd { code { (product.content_type.media_type()) } }
            dt { "Validated on ingest" } dd { @if product.validate && product.schema.is_some() { "yes, against the schema below" } @else { "well-formedness only" } }
            dt { "OpenAPI 3.1" } dd { a href=(format!("/portal/apis/{}/openapi.json", product.name)) { "openapi.json" } }
        }
        p { a class="button" href=(format!("/portal/subscribe?product={}", product.name)) { "Subscribe to " (product.name) } }

        h2 { "Request" }
        (markdown(operation["description"].as_str().unwrap_or_default()))

        h2 { "Headers" }
        (headers_table(&product, &operation["parameters"]))

        h2 { "Payload" }
        @if let Some(text) = operation["requestBody"]["description"].as_str() {
            (markdown(text))
        }
        @if let Some(schema) = &product.schema {
            h3 { "Schema" }
            pre tabindex="0" aria-label="Payload schema" { code { (pretty(schema)) } }
        }
        @if let Some(example) = &example {
            h3 { "Example payload" }
            pre tabindex="0" aria-label="Example payload" { code { (String::from_utf8_lossy(example)) } }
        }

        h2 id="verify" { "Verifying the signature" }
        (verification(&product))

        h2 { "Responses" }
        (responses_table(&operation["responses"]))

        h2 { "Retry schedule" }
        (retry_table(&retry))
    };
    Ok(layout::ok(layout::page(
        &state,
        viewer.as_ref(),
        &product.name,
        body,
    )))
}

pub(crate) async fn openapi(
    State(state): State<PortalState>,
    Path(name): Path<String>,
) -> Result<Response, PortalError> {
    let product = state
        .store
        .product(&name)
        .await?
        .ok_or(PortalError::NotFound)?;
    Ok(Json(webhook_document(&product, &state.settings.retry)).into_response())
}

/// Pretty-prints JSON text, or returns it unchanged when it does not parse.
fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}

fn headers_table(product: &Product, parameters: &Value) -> Markup {
    let parameters = parameters.as_array().cloned().unwrap_or_default();
    html! {
        table {
            thead { tr { th scope="col" { "Header" } th scope="col" { "Required" } th scope="col" { "Meaning" } th scope="col" { "Example" } } }
            tbody {
                @for parameter in &parameters {
                    tr {
                        th scope="row" { code { (parameter["name"].as_str().unwrap_or_default()) } }
                        td { @if parameter["required"].as_bool().unwrap_or(false) { "yes" } @else { "no" } }
                        td { (inline(parameter["description"].as_str().unwrap_or_default())) }
                        td class="mono" { (example_text(&parameter["example"])) }
                    }
                }
                tr {
                    th scope="row" { code { "content-type" } }
                    td { "yes" }
                    td { "The payload's format." }
                    td class="mono" { (product.content_type.media_type()) }
                }
            }
        }
    }
}

fn example_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn responses_table(responses: &Value) -> Markup {
    let responses: BTreeMap<String, Value> = responses
        .as_object()
        .map(|map| map.clone().into_iter().collect())
        .unwrap_or_default();
    html! {
        table {
            thead { tr { th scope="col" { "Your response" } th scope="col" { "What Hookline does" } } }
            tbody {
                @for (status, response) in &responses {
                    tr {
                        th scope="row" { (status) }
                        td { (inline(response["description"].as_str().unwrap_or_default())) }
                    }
                }
            }
        }
    }
}

fn retry_table(retry: &RetryPolicy) -> Markup {
    let rows: Vec<(u32, std::time::Duration, std::time::Duration)> = (1..=retry.max_retries)
        .scan(std::time::Duration::ZERO, |elapsed, n| {
            let wait = retry.wait(n);
            *elapsed += wait;
            Some((n, wait, *elapsed))
        })
        .collect();
    html! {
        p { "The first attempt is immediate. Retry " var { "n" } " waits "
            (format_seconds(retry.interval)) " + " var { "n" } sup { "4" } " × " (format_seconds(retry.backoff_unit)) "." }
        table {
            thead { tr { th scope="col" { "Retry" } th scope="col" { "Wait before it" } th scope="col" { "Time since the first attempt" } } }
            tbody {
                @for (n, wait, elapsed) in &rows {
                    tr {
                        th scope="row" { (n) }
                        td { (format_seconds(*wait)) }
                        td { (format_seconds(*elapsed)) }
                    }
                }
            }
        }
        p { "After the last retry fails, the delivery goes to the dead-letter list, from which it can be replayed." }
    }
}

fn format_seconds(duration: std::time::Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.3} s", duration.as_secs_f64())
    }
}

/// Renders how to verify a webhook of the product, with code samples.
fn verification(product: &Product) -> Markup {
    let body = match product.content_type {
        ContentType::Json | ContentType::Xml => "the raw body text",
        ContentType::Avro => "the raw body bytes (Avro is binary)",
    };
    html! {
        p { "Verify every request before you trust it. Compute the signature over " (body)
            ", exactly as received, before parsing it. Any Standard Webhooks library does this; "
            "the steps are in the request description above." }
        (crate::samples::render())
    }
}

/// Renders the small Markdown subset of the webhook document's
/// descriptions: `##` headings, numbered lists, paragraphs and inline code.
fn markdown(text: &str) -> Markup {
    html! {
        @for block in text.split("\n\n") {
            @let block = block.trim();
            @if let Some(heading) = block.strip_prefix("## ") {
                h3 { (heading) }
            } @else if block.starts_with("1. ") {
                ol {
                    @for item in numbered_items(block) {
                        li { (inline(&item)) }
                    }
                }
            } @else if !block.is_empty() {
                p { (inline(block)) }
            }
        }
    }
}

/// Splits a numbered Markdown list into its items.
fn numbered_items(block: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for line in block.lines() {
        let trimmed = line.trim();
        let marker = trimmed
            .split_once(". ")
            .filter(|(number, _)| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()));
        match (marker, items.last_mut()) {
            (Some((_, rest)), _) => items.push(rest.to_owned()),
            (None, Some(last)) => {
                last.push(' ');
                last.push_str(trimmed);
            }
            (None, None) => items.push(trimmed.to_owned()),
        }
    }
    items
}

/// Renders `code` spans; everything else is escaped text.
fn inline(text: &str) -> Markup {
    html! {
        @for (index, part) in text.split('`').enumerate() {
            @if index % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

pub(crate) async fn admin_reference(
    State(state): State<PortalState>,
    MaybeViewer(viewer): MaybeViewer,
) -> Result<Response, PortalError> {
    let document = serde_json::to_value(hookline_api::ApiDoc::openapi()).map_err(|error| {
        PortalError::Internal(format!("cannot render the API document: {error}"))
    })?;
    let operations = operations(&document);
    let body = html! {
        h1 { (document["info"]["title"].as_str().unwrap_or("Admin API")) }
        p { (document["info"]["description"].as_str().unwrap_or_default()) }
        p { "Every " code { "/api/v1" } " request carries " code { "Authorization: Bearer <admin token>" }
            ". The machine-readable document is at " a href="/openapi.json" { "/openapi.json" } "." }
        @for (tag, entries) in &operations {
            h2 { (tag) }
            table {
                thead { tr { th scope="col" { "Method" } th scope="col" { "Path" } th scope="col" { "Summary" } th scope="col" { "Responses" } } }
                tbody {
                    @for entry in entries {
                        tr {
                            td class="method" { (entry.method) }
                            th scope="row" class="mono" { (entry.path) }
                            td { (inline(&entry.summary)) }
                            td { (entry.statuses.join(", ")) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::ok(layout::page(
        &state,
        viewer.as_ref(),
        "Admin API",
        body,
    )))
}

/// One operation of the admin API document.
struct Operation {
    method: String,
    path: String,
    summary: String,
    statuses: Vec<String>,
}

/// Lists the document's operations grouped by their first tag.
fn operations(document: &Value) -> BTreeMap<String, Vec<Operation>> {
    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
    let mut grouped: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    let Some(paths) = document["paths"].as_object() else {
        return grouped;
    };
    for (path, item) in paths {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let tag = operation["tags"][0].as_str().unwrap_or("other").to_owned();
            let summary = operation["summary"]
                .as_str()
                .or_else(|| operation["description"].as_str())
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let statuses = operation["responses"]
                .as_object()
                .map(|responses| responses.keys().cloned().collect())
                .unwrap_or_default();
            grouped.entry(tag).or_default().push(Operation {
                method: method.to_owned(),
                path: path.clone(),
                summary,
                statuses,
            });
        }
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_lists_and_escapes() {
        let text = "## Steps\n\n1. Take `whsec_`.\n2. Compare <script>.\n\nDone.";
        let html = markdown(text).into_string();
        assert!(html.contains("<h3>Steps</h3>"));
        assert!(html.contains("<li>Take <code>whsec_</code>.</li>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<p>Done.</p>"));
    }

    #[test]
    fn admin_document_lists_operations() {
        let document = serde_json::to_value(hookline_api::ApiDoc::openapi()).unwrap();
        let grouped = operations(&document);
        let applications = grouped.get("applications").expect("applications tag");
        assert!(applications
            .iter()
            .any(|op| op.method == "post" && op.path == "/api/v1/applications"));
    }
}
