//! Making due the tasks that an endpoint gate postponed while its endpoint
//! was congested, once the endpoint responds again.
//!
//! A task postponed shortly before the recovery may reach the queue after
//! the first pass, because the recorder writes settlements in batches. A
//! second pass after [`SECOND_PASS_DELAY`] catches those.
//!
//! NOTE: a postponement that the recorder writes later than that (behind a
//! slow or failing store) stays at its place of the schedule, at most one
//! minute ahead.

use super::endpoint_gate::Recovery;
use super::{authority, Dispatcher};
use hookline_core::directory::Endpoint;
use hookline_core::queue::DeliveryQueue;
use hookline_core::ApplicationId;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// Time between the two passes.
const SECOND_PASS_DELAY: Duration = Duration::from_secs(1);
/// Postponed tasks got their due time a moment after the gate chose their
/// place. This margin covers that and the conversion between clocks.
const DUE_MARGIN: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// Makes the tasks of `recovery` due now, in the background.
    pub(super) fn wake_postponed(&self, endpoint: &Endpoint, recovery: Recovery) {
        let queue = self.queue.clone();
        let endpoint = authority(&endpoint.url);
        let until = OffsetDateTime::now_utc()
            + recovery.until.saturating_duration_since(Instant::now())
            + DUE_MARGIN;
        tokio::spawn(async move {
            let applications = recovery.applications;
            let woken = wake_twice(queue.as_ref(), &applications, until).await;
            tracing::info!(
                %endpoint,
                applications = applications.len(),
                woken,
                "Endpoint responds again; deliveries postponed while it was congested are due now"
            );
        });
    }
}

/// Runs both passes and returns how many tasks moved in all.
async fn wake_twice(
    queue: &dyn DeliveryQueue,
    applications: &[ApplicationId],
    until: OffsetDateTime,
) -> u64 {
    let first = wake_pass(queue, applications, until).await;
    tokio::time::sleep(SECOND_PASS_DELAY).await;
    first + wake_pass(queue, applications, until).await
}

/// Makes the postponed tasks of `applications` due and returns how many moved.
async fn wake_pass(
    queue: &dyn DeliveryQueue,
    applications: &[ApplicationId],
    until: OffsetDateTime,
) -> u64 {
    let mut woken = 0;
    for application in applications {
        match queue.wake_postponed(application, until).await {
            Ok(moved) => woken += moved,
            Err(error) => tracing::warn!(
                %error,
                application_id = %application,
                "Making postponed deliveries due failed; they stay at their postponed time"
            ),
        }
    }
    woken
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use hookline_core::queue::{DeliveryTask, Leased, QueueDepth, QueueError, Settlement};
    use std::sync::Mutex;

    /// A queue whose postponed tasks reach it in steps: each call to
    /// `wake_postponed` moves the next count of `arrivals`.
    struct ArrivingQueue {
        arrivals: Mutex<Vec<u64>>,
        calls: Mutex<Vec<(ApplicationId, Instant)>>,
    }

    #[async_trait]
    impl DeliveryQueue for ArrivingQueue {
        async fn enqueue(&self, _: Vec<DeliveryTask>) -> Result<(), QueueError> {
            unreachable!("the recovery only wakes tasks")
        }

        async fn receive(
            &self,
            _: usize,
            _: Duration,
            _: Duration,
        ) -> Result<Vec<Leased>, QueueError> {
            unreachable!("the recovery only wakes tasks")
        }

        async fn settle(&self, _: Vec<Settlement>) -> Result<(), QueueError> {
            unreachable!("the recovery only wakes tasks")
        }

        async fn depth(&self) -> Result<QueueDepth, QueueError> {
            unreachable!("the recovery only wakes tasks")
        }

        async fn wake_postponed(
            &self,
            application: &ApplicationId,
            _until: OffsetDateTime,
        ) -> Result<u64, QueueError> {
            self.calls
                .lock()
                .unwrap()
                .push((application.clone(), Instant::now()));
            let mut arrivals = self.arrivals.lock().unwrap();
            Ok(if arrivals.is_empty() {
                0
            } else {
                arrivals.remove(0)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn second_pass_wakes_late_postponements() {
        let queue = ArrivingQueue {
            arrivals: Mutex::new(vec![0, 3]),
            calls: Mutex::new(Vec::new()),
        };
        let application = ApplicationId::generate();
        let started = Instant::now();

        let woken = wake_twice(
            &queue,
            std::slice::from_ref(&application),
            OffsetDateTime::now_utc(),
        )
        .await;

        assert_eq!(woken, 3, "tasks recorded after the first pass are woken");
        let calls = queue.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|(called, _)| *called == application));
        assert_eq!(calls[1].1 - started, SECOND_PASS_DELAY);
    }
}
