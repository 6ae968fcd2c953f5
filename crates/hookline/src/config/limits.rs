//! Configuration of per-application rate limits (`limits.*`).

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Count notifications in Redis when `redis.url` is set, so the limits
    /// hold across all dispatchers. `false` counts in each process.
    #[serde(default = "default_use_redis")]
    pub use_redis: bool,
    /// Replaces the window length of every plan. Meant for tests and demos,
    /// which cannot wait for an hour-long window to end.
    #[serde(default, with = "humantime_serde")]
    pub period_override: Option<Duration>,
}

fn default_use_redis() -> bool {
    true
}

impl LimitsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self
            .period_override
            .is_some_and(|period| period < Duration::from_millis(1))
        {
            return Err(ConfigError::Invalid {
                key: "limits.period_override",
                problem: "must be at least 1ms, for example \"10s\"; leave it unset to use each plan's period".to_owned(),
            });
        }
        Ok(())
    }
}
