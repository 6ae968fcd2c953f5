//! Domain types and contracts of Hookline, free of I/O.
//!
//! The creator, the dispatcher and the API are written against the traits in
//! [`store`], [`queue`] and [`directory`]; the embedded (SQLite) and the
//! distributed backends implement them. Everything a consumer can observe on
//! the wire is fixed here: the signing schemes in [`signing`], the retry
//! schedule in [`retry`] and the webhook URL rules in [`webhook_url`].

pub mod cipher;
pub mod content;
pub mod dedup;
pub mod directory;
pub mod endpoint_health;
pub mod formats;
pub mod ids;
pub mod limit;
pub mod model;
pub mod plan;
pub mod portal;
pub mod queue;
pub mod retry;
pub mod shared_database;
pub mod signing;
pub mod store;
pub mod trace;
pub mod usage;
pub mod webhook_doc;
pub mod webhook_url;

pub use content::ContentType;
pub use ids::{ApplicationId, DeliveryId, EventId, WebhookId};
pub use model::*;
pub use plan::{LimitPeriod, OverLimit, Plan, PlanLimit};
pub use retry::RetryPolicy;
pub use signing::SigningSecret;
