//! State shared by the connection tasks and the [`Receiver`](crate::Receiver)
//! handle: per-endpoint configuration, attempt counters and the request log.
//!
//! One mutex guards it all and is never held across an `.await`, so that
//! attempt indexes, duplicate counts and log order agree with each other.

use crate::behaviour::{Behaviour, Decision};
use crate::record::{ReceivedWebhook, ReceiverStats, Verification};
use hookline_core::signing::SigningSecret;
use hyper::HeaderMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Bumped after every recorded request to wake [`Shared::subscribe`] waiters.
    recorded: watch::Sender<()>,
}

#[derive(Default)]
struct State {
    endpoints: HashMap<String, EndpointState>,
    records: Vec<ReceivedWebhook>,
    /// The request headers of `records[i]` at index `i`. They are kept apart
    /// so that [`ReceivedWebhook`] keeps its fields.
    headers: Vec<HeaderMap>,
    stats: ReceiverStats,
}

#[derive(Default)]
struct EndpointState {
    /// Behind an `Arc` so a request can take it out of the lock cheaply.
    secret: Option<Arc<SigningSecret>>,
    behaviour: Behaviour,
    /// Keyed by `webhook-id`.
    webhooks: HashMap<String, WebhookHistory>,
}

#[derive(Default)]
struct WebhookHistory {
    attempts: u32,
    succeeded: bool,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            recorded: watch::Sender::new(()),
        }
    }

    pub(crate) fn set_secret(&self, endpoint: &str, secret: SigningSecret) {
        let mut state = self.lock();
        entry(&mut state.endpoints, endpoint).secret = Some(Arc::new(secret));
    }

    pub(crate) fn set_behaviour(&self, endpoint: &str, behaviour: Behaviour) {
        let mut state = self.lock();
        entry(&mut state.endpoints, endpoint).behaviour = behaviour;
    }

    pub(crate) fn secret(&self, endpoint: &str) -> Option<Arc<SigningSecret>> {
        let state = self.lock();
        state.endpoints.get(endpoint)?.secret.clone()
    }

    /// Records a request and chooses its response. `fixed_status` is the
    /// status of a request rejected by routing, method or signature checks.
    /// Without it the endpoint's behaviour decides. Fills in the record's
    /// `attempt_index` and `responded_status`.
    pub(crate) fn record(
        &self,
        mut webhook: ReceivedWebhook,
        headers: HeaderMap,
        fixed_status: Option<u16>,
    ) -> Decision {
        let decision = {
            let mut state = self.lock();
            let decision = state.decide(&mut webhook, fixed_status);
            state.stats.count(&webhook);
            state.records.push(webhook);
            state.headers.push(headers);
            decision
        };
        self.recorded.send_modify(|_| ());
        decision
    }

    pub(crate) fn stats(&self) -> ReceiverStats {
        self.lock().stats
    }

    /// Runs `read` on the log, in arrival order, while holding the lock.
    pub(crate) fn with_records<T>(&self, read: impl FnOnce(&[ReceivedWebhook]) -> T) -> T {
        read(&self.lock().records)
    }

    /// Returns the headers of the requests whose endpoint is `endpoint`, in
    /// arrival order.
    pub(crate) fn headers_of(&self, endpoint: &str) -> Vec<HeaderMap> {
        let state = self.lock();
        let requests = state.records.iter().zip(&state.headers);
        requests
            .filter(|(webhook, _)| webhook.endpoint == endpoint)
            .map(|(_, headers)| headers.clone())
            .collect()
    }

    /// Forgets recorded requests, counters and attempt histories, keeping
    /// secrets and behaviours.
    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.records = Vec::new();
        state.headers = Vec::new();
        state.stats = ReceiverStats::default();
        for endpoint in state.endpoints.values_mut() {
            endpoint.webhooks.clear();
        }
    }

    /// Returns a watch receiver that is marked changed after each request
    /// recorded from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.recorded.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent enough
        // for a test tool, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Returns the value for `key`, inserting a default first if missing.
/// Looking up before inserting avoids allocating the key on every request.
fn entry<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("key inserted above")
}

impl State {
    fn decide(&mut self, webhook: &mut ReceivedWebhook, fixed_status: Option<u16>) -> Decision {
        let endpoint = entry(&mut self.endpoints, &webhook.endpoint);
        let history = entry(&mut endpoint.webhooks, &webhook.webhook_id);
        history.attempts += 1;
        let attempt = history.attempts;

        let decision = match fixed_status {
            Some(status) => Decision::status(status),
            None => endpoint
                .behaviour
                .decide(&webhook.endpoint, &webhook.webhook_id, attempt),
        };

        webhook.attempt_index = attempt;
        webhook.responded_status = decision.status;
        if webhook.succeeded() {
            if history.succeeded {
                self.stats.duplicates += 1;
            }
            history.succeeded = true;
        }
        decision
    }
}

impl ReceiverStats {
    fn count(&mut self, webhook: &ReceivedWebhook) {
        self.total += 1;
        match webhook.verification {
            Verification::Verified => self.verified += 1,
            Verification::Failed(_) => self.failed_verification += 1,
            Verification::NoSecret => self.no_secret += 1,
        }
        if webhook.succeeded() {
            self.succeeded += 1;
        }
    }
}
