//! Resuming applications that were enabled again: their deliveries, kept
//! while the application was disabled, are made due or enqueued again at
//! once instead of after `disabled_recheck`, and queue copies of deliveries
//! that are already finished are dropped unsent.
//!
//! Whatever enables an application (the admin API, a directory sync or
//! another caller of `Store::enable_application`) marks it resumed in the
//! store, and every dispatcher polls for the mark. One dispatcher takes each
//! mark. If it stops before the tasks are enqueued, the kept copies in the
//! queue still come due after `disabled_recheck`, so nothing is lost.

use super::Dispatcher;
use crate::recorder::Finished;
use hookline_core::queue::{Leased, Settlement};
use hookline_core::ApplicationId;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Applications taken per poll.
const RESUMED_PER_POLL: u32 = 64;
/// Tasks read from the store and enqueued at once.
const TASK_PAGE: u32 = 256;

impl Dispatcher {
    /// Polls the store for resumed applications every `resume_poll` until
    /// `shutdown` is cancelled. An application whose tasks could not be
    /// enqueued is retried on the next poll for as long as this process runs.
    pub(super) async fn resume_applications(self: Arc<Self>, shutdown: CancellationToken) {
        let mut unfinished: Vec<ApplicationId> = Vec::new();
        let mut interval = tokio::time::interval(self.settings.resume_poll);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            match self.store.take_resumed_applications(RESUMED_PER_POLL).await {
                Ok(taken) => unfinished.extend(taken),
                Err(error) => {
                    tracing::warn!(%error, "Reading resumed applications failed; retrying at the next poll");
                }
            }
            if unfinished.is_empty() {
                continue;
            }
            // The cache may still hold the disabled endpoint, which would
            // postpone the tasks enqueued below again.
            self.directory.invalidate();
            let mut failed = Vec::new();
            for application in unfinished.drain(..) {
                if !self.resume(&application).await {
                    failed.push(application);
                }
            }
            unfinished = failed;
        }
    }

    /// Makes the application's kept tasks due now where the queue can
    /// reschedule them, and enqueues every pending delivery of the
    /// application again for a queue that cannot. Returns `false` when a
    /// step failed and should be retried.
    async fn resume(&self, application: &ApplicationId) -> bool {
        let woken = match self.queue.wake_application(application).await {
            Ok(woken) => woken,
            Err(error) => {
                tracing::warn!(%error, application_id = %application, "Making kept deliveries due failed; retrying");
                return false;
            }
        };
        // With a queue that deduplicates by delivery id this enqueues only
        // deliveries that are missing from it. With one that may hold
        // copies, the kept copies come due later and are dropped unsent if
        // their delivery is finished by then.
        // NOTE: a kept delivery that still fails after the enable is retried
        // on two schedules, its new task's and its kept copy's, until one
        // attempt succeeds or both are dead-lettered.
        let mut enqueued = 0_usize;
        let mut after = None;
        loop {
            let tasks = match self
                .store
                .application_tasks(application, after.as_ref(), TASK_PAGE)
                .await
            {
                Ok(tasks) => tasks,
                Err(error) => {
                    tracing::warn!(%error, application_id = %application, "Reading kept deliveries failed; retrying");
                    return false;
                }
            };
            let Some(last) = tasks.last() else {
                break;
            };
            after = Some(last.delivery_id.clone());
            let count = tasks.len();
            if let Err(error) = self.queue.enqueue(tasks).await {
                tracing::warn!(%error, application_id = %application, "Enqueueing kept deliveries failed; retrying");
                return false;
            }
            enqueued += count;
        }
        tracing::info!(
            application_id = %application,
            woken,
            enqueued,
            "Application resumed; its kept deliveries are due now"
        );
        true
    }

    /// Settles copies of finished deliveries without attempting them and
    /// returns the other leases. Only a queue that may hold copies is
    /// checked. A failed check is logged and attempts every lease, which
    /// at-least-once delivery allows.
    pub(super) async fn drop_finished(
        &self,
        leased: Vec<Leased>,
        recorder: &mpsc::Sender<Finished>,
    ) -> Vec<Leased> {
        if leased.is_empty() || !self.queue.may_hold_copies() {
            return leased;
        }
        let ids: Vec<_> = leased
            .iter()
            .map(|lease| lease.task.delivery_id.clone())
            .collect();
        let finished: HashSet<_> = match self.store.finished_deliveries(&ids).await {
            Ok(finished) => finished.into_iter().collect(),
            Err(error) => {
                tracing::warn!(%error, tasks = ids.len(), "Reading delivery states failed; attempting every task");
                return leased;
            }
        };
        if finished.is_empty() {
            return leased;
        }
        let (copies, current): (Vec<_>, Vec<_>) = leased
            .into_iter()
            .partition(|lease| finished.contains(&lease.task.delivery_id));
        tracing::debug!(
            copies = copies.len(),
            "Dropping copies of finished deliveries"
        );
        metrics::counter!("hookline_finished_copies_dropped_total").increment(copies.len() as u64);
        for lease in copies {
            let dropped = Finished {
                outcome: None,
                settlement: Settlement::Ack { lease },
                usage: None,
            };
            let _ = recorder.send(dropped).await;
        }
        current
    }

    /// Reads the application from the store when the directory reports it
    /// as disabled, because the cached entry may predate an enable. Returns
    /// whether the store has it active, and then clears the cache.
    pub(super) async fn enabled_since_cached(&self, application: &ApplicationId) -> bool {
        match self.store.application(application).await {
            Ok(Some(stored)) if stored.state == hookline_core::ApplicationState::Active => {
                self.directory.invalidate();
                true
            }
            Ok(_) => false,
            Err(error) => {
                tracing::warn!(%error, application_id = %application, "Reading an application's state failed; keeping its delivery");
                false
            }
        }
    }
}
