//! The 3scale subscription directory (`directory.kind = "threescale"`).
//!
//! The applications of each configured 3scale service (product) are read
//! from the Account Management API (module `api`), every page. An
//! application receives webhooks when its `state` is `live` and it has a
//! webhook URL (default: the extra field `webhook-url`) and a secret
//! (default: its `user_key`). The Standard Webhooks signing key is the
//! secret's UTF-8 bytes, so a consumer verifies with
//! `whsec_<base64 of the user_key>`.
//!
//! An application's plan is the Hookline plan that `directory.plans` maps
//! its 3scale plan to. A 3scale plan without a Hookline plan of that name
//! gets the limits that 3scale sets on the usage metric (default
//! `webhook`) in the plan (module `limits`).
//!
//! Hookline ids are `app_3s{service}_{application}`, so the same 3scale
//! application always has the same id. Lists are cached for
//! `directory.cache_ttl`. While 3scale fails, the last good list is served
//! for up to `directory.stale_for` (module `cache`).
//!
//! With [`ThreescaleDirectory::with_redis`] (the distributed mode with
//! `redis.url`), lists are also shared through Redis (module `shared`). A
//! lookup tries this process's cache first, then a list in Redis younger
//! than `directory.cache_ttl`, then 3scale. A list read from 3scale is
//! written to Redis with an expiry of `directory.stale_for`. When a list in
//! Redis is older than the TTL, one replica claims its refresh and the
//! others serve the older list meanwhile. While 3scale fails, a list in
//! Redis younger than `directory.stale_for` is served, so a replica that
//! starts during an outage still has one. The list is encrypted with the
//! newest key of `secrets.keys`, because it contains the `user_key`s.
//! Redis failures are logged and counted in
//! `hookline_directory_redis_cache_total{result="error"}`, and they do not
//! fail a lookup that 3scale can serve.

mod api;
mod cache;
mod directory;
mod limits;
mod parse;
mod report;
mod settings;
mod shared;
mod snapshot;

pub use api::FetchError;
pub use directory::{ThreescaleDirectory, ThreescaleError};
pub use parse::{application_id, parse_application_id};
pub use report::{ReportCredentials, ReportSettings, ReportingEgress, FLUSH_INTERVAL};
pub use settings::ThreescaleSettings;
