//! Endpoints that Hookline stops sending to: an endpoint that responds with
//! 410 Gone, or that has failed every attempt for `delivery.disable_after`,
//! has its application disabled, with the reason and the time kept.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// Why and when an application was disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disablement {
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub disabled_at: OffsetDateTime,
}

/// What made Hookline disable an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableCause {
    /// The endpoint responded with 410 Gone.
    Gone,
    /// Every attempt since `since` failed, for longer than `limit`.
    FailingSince {
        since: OffsetDateTime,
        limit: Duration,
    },
}

impl DisableCause {
    /// Short name of the cause, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::FailingSince { .. } => "failing",
        }
    }

    /// The reason stored with the application and shown by the API.
    pub fn reason(self) -> String {
        match self {
            Self::Gone => "the endpoint responded with HTTP 410 Gone".to_owned(),
            Self::FailingSince { since, limit } => {
                let since = since
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| since.unix_timestamp().to_string());
                format!(
                    "every attempt failed since {since}, for longer than delivery.disable_after ({})",
                    humantime_serde::re::humantime::format_duration(limit)
                )
            }
        }
    }
}
