//! The dispatcher and its egress: takes due tasks from the delivery queue,
//! signs and sends them over HTTPS, records every attempt, and schedules
//! retries or dead-letters.
//!
//! - [`client`] builds the one shared HTTPS client, with the SSRF guard in
//!   its DNS resolver so the address dialled is the address checked.
//! - [`egress`] is the policy chain that runs once per attempt: sign, send,
//!   capture the response.
//! - [`gateway_egress`] is the egress of a dispatcher that sends through the
//!   egress gateway, and [`gateway_protocol`] the JSON both sides exchange.
//! - [`dispatcher`] leases tasks, bounds concurrency globally and per
//!   endpoint, converts Avro payloads to JSON for applications whose
//!   `avro_format` is `json`, and hands outcomes to [`recorder`], which
//!   writes them in batches.

pub mod client;
pub mod dispatcher;
pub mod egress;
pub mod gateway_egress;
pub mod gateway_protocol;
pub mod recorder;
pub mod retry_policy;
mod schema_header;

pub use client::{build_client, ClientSettings};
pub use dispatcher::{Dispatcher, DispatcherSettings};
pub use egress::{AttemptReport, Egress, EgressOutcome, HttpEgress, NotSent, NotSentCause};
pub use gateway_egress::{GatewayEgress, GatewaySettings};
pub use retry_policy::SharedRetryPolicy;
pub use schema_header::SCHEMA_ID_HEADER;
