//! The retry policy as a handle that a configuration reload can replace
//! while the dispatcher runs.

use hookline_core::RetryPolicy;
use std::sync::{Arc, RwLock};

/// A [`RetryPolicy`] shared between the dispatcher, which reads it after
/// every failed attempt, and the configuration reload, which replaces it.
/// Clones share one policy. A replaced policy applies to failures from then on;
/// retries that are already scheduled keep their due time.
#[derive(Debug, Clone, Default)]
pub struct SharedRetryPolicy(Arc<RwLock<RetryPolicy>>);

impl SharedRetryPolicy {
    pub fn new(policy: RetryPolicy) -> Self {
        Self(Arc::new(RwLock::new(policy)))
    }

    /// Returns the policy in force.
    pub fn current(&self) -> RetryPolicy {
        *self.0.read().expect("retry policy lock")
    }

    /// Replaces the policy and returns the previous one.
    pub fn replace(&self, policy: RetryPolicy) -> RetryPolicy {
        std::mem::replace(&mut *self.0.write().expect("retry policy lock"), policy)
    }
}

impl From<RetryPolicy> for SharedRetryPolicy {
    fn from(policy: RetryPolicy) -> Self {
        Self::new(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clones_see_a_replaced_policy() {
        let shared = SharedRetryPolicy::new(RetryPolicy::default());
        let reader = shared.clone();
        let faster = RetryPolicy {
            interval: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        let previous = shared.replace(faster);
        assert_eq!(previous, RetryPolicy::default());
        assert_eq!(reader.current(), faster);
    }
}
