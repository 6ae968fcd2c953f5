//! Configuration reload without a restart, on SIGHUP and when the file
//! given with `--config` changes.
//!
//! The whole configuration is loaded again (defaults, file, environment)
//! and checked. The retry policy (`retry.*`) takes effect at once: the
//! dispatcher reads it after every failed attempt. Other changed keys are
//! logged as needing a restart. Products and plans are not part of the file:
//! they live in the state store, whose cached copies expire within seconds.

use crate::config::Config;
use hookline_core::RetryPolicy;
use hookline_delivery::SharedRetryPolicy;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the configuration file is read to see whether it changed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// State of the reload task: the file it watches, the configuration in
/// force and the retry policy that it replaces.
pub struct Reloader {
    /// The `--config` file; `None` reloads the environment alone on SIGHUP.
    pub path: Option<PathBuf>,
    pub current: Config,
    pub retry: SharedRetryPolicy,
}

impl Reloader {
    /// Starts the reload task on the current runtime; it ends with `shutdown`.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut hangups = hangup_signals();
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut contents = self.read_file();
        loop {
            let trigger = tokio::select! {
                () = shutdown.cancelled() => return,
                () = next_hangup(&mut hangups) => "SIGHUP",
                _ = ticker.tick() => {
                    let now = self.read_file();
                    if now == contents {
                        continue;
                    }
                    contents = now;
                    "file change"
                }
            };
            self.reload(trigger);
        }
    }

    /// Returns the file's bytes, or `None` without a file or when it cannot
    /// be read (the reload then reports why).
    fn read_file(&self) -> Option<Vec<u8>> {
        self.path.as_ref().and_then(|path| std::fs::read(path).ok())
    }

    fn reload(&mut self, trigger: &'static str) {
        let next = match Config::load(self.path.as_deref()) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(trigger, %error, "Configuration reload failed; the running configuration stays in force");
                return;
            }
        };
        let retry = retry_changes(&self.current.retry, &next.retry);
        if !retry.is_empty() {
            self.retry.replace(next.retry);
        }
        let restart = changed_keys(&self.current, &next)
            .into_iter()
            .filter(|key| !key.starts_with("retry."))
            .collect::<Vec<_>>();
        if retry.is_empty() && restart.is_empty() {
            tracing::info!(trigger, "Configuration reloaded; nothing changed");
        } else if !retry.is_empty() {
            tracing::info!(trigger, changes = %retry.join(", "), "Configuration reloaded; the new retry policy applies to the next failed attempt");
        }
        if !restart.is_empty() {
            tracing::warn!(trigger, keys = %restart.join(", "), "Configuration reloaded; these changed keys take effect only after a restart");
        }
        self.current = next;
    }
}

/// Describes each changed retry setting as `key: old -> new`.
fn retry_changes(old: &RetryPolicy, new: &RetryPolicy) -> Vec<String> {
    let mut changes = Vec::new();
    let duration = |value: Duration| humantime::format_duration(value).to_string();
    if old.interval != new.interval {
        changes.push(format!(
            "retry.interval: {} -> {}",
            duration(old.interval),
            duration(new.interval)
        ));
    }
    if old.backoff_unit != new.backoff_unit {
        changes.push(format!(
            "retry.backoff_unit: {} -> {}",
            duration(old.backoff_unit),
            duration(new.backoff_unit)
        ));
    }
    if old.max_retries != new.max_retries {
        changes.push(format!(
            "retry.max_retries: {} -> {}",
            old.max_retries, new.max_retries
        ));
    }
    changes
}

/// Returns the dotted keys whose values differ, without the values, so
/// that no secret reaches the log.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let old = flatten(old);
    let new = flatten(new);
    let mut keys: Vec<String> = old
        .iter()
        .filter(|(key, value)| new.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect();
    keys.extend(new.keys().filter(|key| !old.contains_key(*key)).cloned());
    keys.sort();
    keys
}

fn flatten(config: &Config) -> BTreeMap<String, toml::Value> {
    let mut flat = BTreeMap::new();
    if let Ok(value) = toml::Value::try_from(config) {
        insert_flat(&mut flat, String::new(), value);
    }
    flat
}

fn insert_flat(flat: &mut BTreeMap<String, toml::Value>, prefix: String, value: toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let key = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                insert_flat(flat, key, value);
            }
        }
        other => {
            flat.insert(prefix, other);
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(signals) => Some(signals),
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGHUP; the configuration reloads on file changes only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangups {}

/// Waits for the next SIGHUP, or forever where there is none.
#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) {
    let received = match hangups {
        Some(signals) => signals.recv().await.is_some(),
        None => false,
    };
    if !received {
        // Without a SIGHUP stream, or once it ended, no signal can arrive.
        *hangups = None;
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn next_hangup(_hangups: &mut Hangups) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::load(None).expect("the defaults load")
    }

    #[test]
    fn retry_changes_show_old_and_new() {
        let old = RetryPolicy::default();
        let new = RetryPolicy {
            interval: Duration::from_millis(100),
            max_retries: 7,
            ..old
        };
        assert_eq!(
            retry_changes(&old, &new),
            ["retry.interval: 1m -> 100ms", "retry.max_retries: 5 -> 7"]
        );
        assert!(retry_changes(&old, &old).is_empty());
    }

    #[test]
    fn changed_keys_are_named_without_values() {
        let old = config();
        let mut new = old.clone();
        new.api.admin_token = "a-new-secret-token".into();
        new.retry.max_retries = 9;
        assert_eq!(
            changed_keys(&old, &new),
            ["api.admin_token", "retry.max_retries"]
        );
        assert!(changed_keys(&old, &old).is_empty());
    }
}
