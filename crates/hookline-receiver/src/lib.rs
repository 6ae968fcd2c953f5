//! An HTTPS webhook receiver that verifies Hookline's Standard Webhooks
//! signatures, for `hookline demo`, end-to-end tests and load benchmarks.
//!
//! [`TestPki`] makes a CA and a server certificate at run time.
//! [`Receiver::start`] serves HTTP/1.1 with keep-alive and HTTP/2 (chosen
//! by ALPN) on `/hooks/{name}`, checks each request's `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` against the endpoint's
//! secret, responds as the endpoint's [`Behaviour`] scripts, and records
//! every request as a [`ReceivedWebhook`].
//!
//! ```no_run
//! # async fn example() -> Result<(), hookline_receiver::ReceiverError> {
//! use hookline_core::signing::SigningSecret;
//! use hookline_receiver::{Behaviour, Receiver, TestPki};
//! use std::time::Duration;
//!
//! let pki = TestPki::generate()?;
//! let receiver = Receiver::start(&pki, "127.0.0.1:0".parse().unwrap()).await?;
//! receiver.set_secret("orders", SigningSecret::generate());
//! receiver.script("orders", Behaviour::FailTimes { failures: 2, status: 500 });
//! // Point a sender at receiver.endpoint_url("orders"), trusting pki.ca_pem.
//! let verified = receiver.wait_for(|stats| stats.verified >= 3, Duration::from_secs(10)).await;
//! assert!(verified, "three verified requests did not arrive within 10 s");
//! receiver.shutdown().await;
//! # Ok(()) }
//! ```

mod behaviour;
mod error;
mod handler;
pub mod hostile;
mod pki;
mod receiver;
mod record;
mod server;
mod state;

pub use behaviour::Behaviour;
pub use error::ReceiverError;
pub use handler::MAX_BODY_BYTES;
pub use pki::TestPki;
pub use receiver::Receiver;
pub use record::{ReceivedWebhook, ReceiverStats, Verification};
