//! The dispatcher and its egress: takes due tasks from the delivery queue,
//! signs and sends them over HTTPS, records every attempt, and schedules
//! retries or dead-letters.
//!
//! - [`client`] builds the one shared HTTPS client, with the SSRF guard in
//!   its DNS resolver so the address dialled is the address checked.
//! - [`egress`] is the policy chain that runs once per attempt: sign, send,
//!   capture the response.
//! - [`dispatcher`] leases tasks, bounds concurrency globally and per
//!   endpoint, and hands outcomes to [`recorder`], which writes them in batches.

pub mod client;
pub mod dispatcher;
pub mod egress;
pub mod recorder;

pub use client::{build_client, ClientSettings};
pub use dispatcher::{Dispatcher, DispatcherSettings};
pub use egress::{AttemptReport, Egress, HttpEgress};
