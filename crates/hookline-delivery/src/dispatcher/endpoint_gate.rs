//! Admission to one endpoint (scheme, host and port): at most
//! `per_endpoint_concurrency` attempts in flight, and a schedule for the
//! tasks of an endpoint that is too slow to take them.
//!
//! A task that finds every slot taken waits up to `busy_endpoint_delay`,
//! which keeps a fast endpoint's pipeline full. When such a wait times out,
//! the endpoint is congested for one attempt timeout. While it is, a task
//! that finds no free slot does not wait, so it gives its global slot back
//! at once and cannot crowd out other endpoints. It is postponed to the
//! next free place in a schedule that assumes the worst: every slot held
//! for a whole attempt timeout, that is one place per
//! `attempt_timeout / per_endpoint_concurrency`. A hanging endpoint's
//! backlog is therefore offered again about as fast as the endpoint can
//! take it, instead of every task coming back after each short delay. A
//! wait that ends more than `PROCESS_STALL` after its timeout shows that
//! the process itself was stopped, so it does not mark the endpoint.
//!
//! That schedule is too slow for an endpoint that was congested only for a
//! while, for example behind a network stall. Once `RECOVERY_RESPONSES`
//! attempts in a row get a response within half the attempt timeout, the
//! congestion ends and the gate returns a [`Recovery`]: the applications
//! whose tasks it postponed, so that the dispatcher can make those tasks
//! due at once. It does so at most once per attempt timeout, so an endpoint
//! that hangs and responds by turns does not bring its whole backlog back
//! after every response.

use hookline_core::ApplicationId;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Maximum postponement the schedule hands out, so tasks of an endpoint
/// that recovers come back within this time.
const MAX_POSTPONEMENT: Duration = Duration::from_secs(60);
/// Responses in a row, each within half the attempt timeout, that end a
/// congestion.
const RECOVERY_RESPONSES: u32 = 3;
/// Lateness of a slot wait beyond its timeout that shows that the process
/// itself was stopped (a paused VM, say), not that the endpoint was slow.
const PROCESS_STALL: Duration = Duration::from_secs(1);
/// Applications the gate remembers per congestion. Tasks of applications
/// past this number come back at their places of the schedule.
const MAX_TRACKED_APPLICATIONS: usize = 4096;

/// Decision for one task at its endpoint.
pub(crate) enum Entry {
    /// Send now, holding this endpoint slot until the attempt ends.
    Send(OwnedSemaphorePermit),
    /// Put the task back in the queue for this long, without an attempt.
    Postpone(Duration),
}

/// An endpoint that responds again after a congestion.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// Applications whose tasks the gate postponed while the endpoint was
    /// congested.
    pub(crate) applications: Vec<ApplicationId>,
    /// The last place the gate handed out: no task it postponed is due
    /// later.
    pub(crate) until: Instant,
}

/// Slots and congestion schedule of one endpoint.
pub(crate) struct EndpointGate {
    slots: Arc<Semaphore>,
    /// Time between two places of the congestion schedule.
    spacing: Duration,
    attempt_timeout: Duration,
    schedule: Mutex<Schedule>,
}

#[derive(Default)]
struct Schedule {
    /// End of the current congestion, if any.
    congested_until: Option<Instant>,
    /// Next free place of the schedule.
    next_place: Option<Instant>,
    /// Applications with tasks on the schedule since the last recovery.
    postponed: HashSet<ApplicationId>,
    /// Last place handed out since the last recovery.
    postponed_until: Option<Instant>,
    /// Attempts in a row that got a timely response.
    responses_in_row: u32,
    last_recovery: Option<Instant>,
}

impl EndpointGate {
    pub(crate) fn new(concurrency: usize, attempt_timeout: Duration) -> Self {
        let concurrency = concurrency.max(1);
        let divisor = u32::try_from(concurrency).unwrap_or(u32::MAX);
        Self {
            slots: Arc::new(Semaphore::new(concurrency)),
            spacing: attempt_timeout / divisor,
            attempt_timeout,
            schedule: Mutex::new(Schedule::default()),
        }
    }

    /// Takes a slot for a task of `application`, or returns how long to
    /// postpone the task.
    pub(crate) async fn enter(&self, wait: Duration, application: &ApplicationId) -> Entry {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Entry::Send(permit);
        }
        if let Some(delay) = self.place_if_congested(Instant::now(), application) {
            return Entry::Postpone(delay);
        }
        let started = Instant::now();
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Entry::Send(permit),
            Ok(Err(_)) | Err(_) => {
                let now = Instant::now();
                if now.duration_since(started) > wait + PROCESS_STALL {
                    // The wait ended long after its timeout because this
                    // process did not run meanwhile. The endpoint is not
                    // marked congested, and the task comes back shortly.
                    return Entry::Postpone(wait);
                }
                self.mark_congested(now);
                Entry::Postpone(self.place_if_congested(now, application).unwrap_or(wait))
            }
        }
    }

    /// Notes how an attempt ended: `responded` when the endpoint sent a
    /// response, whatever its status, after `duration`. Returns the recovery
    /// when this response ends a congestion whose postponed tasks are not
    /// all due yet.
    pub(crate) fn attempt_ended(
        &self,
        responded: bool,
        duration: Duration,
        now: Instant,
    ) -> Option<Recovery> {
        let mut schedule = self.lock();
        if !responded || duration > self.attempt_timeout / 2 {
            schedule.responses_in_row = 0;
            return None;
        }

        schedule.responses_in_row = schedule.responses_in_row.saturating_add(1);
        if schedule.responses_in_row < RECOVERY_RESPONSES {
            return None;
        }
        let Some(until) = schedule.postponed_until.filter(|until| *until > now) else {
            // Every postponed task is due by now.
            schedule.postponed.clear();
            schedule.postponed_until = None;
            return None;
        };
        if schedule
            .last_recovery
            .is_some_and(|last| now < last + self.attempt_timeout)
        {
            return None;
        }

        schedule.congested_until = None;
        schedule.next_place = None;
        schedule.postponed_until = None;
        schedule.responses_in_row = 0;
        schedule.last_recovery = Some(now);
        let applications = schedule.postponed.drain().collect();
        Some(Recovery {
            applications,
            until,
        })
    }

    fn mark_congested(&self, now: Instant) {
        self.lock().congested_until = Some(now + self.attempt_timeout);
    }

    /// Returns the next place of the schedule while the endpoint is
    /// congested and notes that `application` has a task there, or returns
    /// `None` once the congestion has passed.
    fn place_if_congested(&self, now: Instant, application: &ApplicationId) -> Option<Duration> {
        let mut schedule = self.lock();
        match schedule.congested_until {
            Some(until) if until > now => {}
            _ => {
                schedule.congested_until = None;
                schedule.next_place = None;
                return None;
            }
        }
        let earliest = now + self.spacing;
        let place = schedule
            .next_place
            .map_or(earliest, |next| next.max(earliest));
        let place = place.min(now + MAX_POSTPONEMENT);
        schedule.next_place = Some(place + self.spacing);
        schedule.postponed_until = Some(
            schedule
                .postponed_until
                .map_or(place, |last| last.max(place)),
        );
        if schedule.postponed.len() < MAX_TRACKED_APPLICATIONS {
            schedule.postponed.insert(application.clone());
        }
        Some(place - now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().expect("endpoint schedule lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> ApplicationId {
        ApplicationId::generate()
    }

    /// Enters with a 200 ms wait, checks that the task waited that long for
    /// a slot, so the gate was not congested, and returns its postponement.
    async fn enter_after_wait(gate: &EndpointGate) -> Option<Duration> {
        let started = Instant::now();
        let entry = gate.enter(Duration::from_millis(200), &app()).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(200),
            "not congested, so the task waited for a slot first"
        );
        postponement(entry)
    }

    fn postponement(entry: Entry) -> Option<Duration> {
        match entry {
            Entry::Send(_) => None,
            Entry::Postpone(delay) => Some(delay),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn free_slot_sends_at_once() {
        let gate = EndpointGate::new(2, Duration::from_secs(2));
        let first = gate.enter(Duration::from_millis(200), &app()).await;
        let second = gate.enter(Duration::from_millis(200), &app()).await;
        assert!(postponement(first).is_none());
        assert!(postponement(second).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn busy_fast_endpoint_waits_for_slot() {
        let gate = Arc::new(EndpointGate::new(1, Duration::from_secs(2)));
        let Entry::Send(held) = gate.enter(Duration::from_millis(200), &app()).await else {
            panic!("the first task finds a free slot");
        };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        });
        let entry = gate.enter(Duration::from_millis(200), &app()).await;
        assert!(postponement(entry).is_none(), "the freed slot is taken");
    }

    #[tokio::test(start_paused = true)]
    async fn congested_endpoint_spaces_postponements() {
        let gate = EndpointGate::new(2, Duration::from_secs(2));
        let _first_slot = gate.enter(Duration::ZERO, &app()).await;
        let _second_slot = gate.enter(Duration::ZERO, &app()).await;
        let first = postponement(gate.enter(Duration::from_millis(200), &app()).await);
        let second = postponement(gate.enter(Duration::from_millis(200), &app()).await);
        let third = postponement(gate.enter(Duration::from_millis(200), &app()).await);
        assert_eq!(
            first,
            Some(Duration::from_secs(1)),
            "one slot time after the wait"
        );
        assert_eq!(
            second,
            Some(Duration::from_secs(2)),
            "no wait once congested"
        );
        assert_eq!(third, Some(Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn congestion_ends_after_attempt_timeout() {
        let gate = EndpointGate::new(1, Duration::from_secs(2));
        let _only_slot = gate.enter(Duration::ZERO, &app()).await;
        assert!(postponement(gate.enter(Duration::from_millis(200), &app()).await).is_some());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(enter_after_wait(&gate).await, Some(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn postponement_is_capped() {
        let gate = EndpointGate::new(1, Duration::from_secs(50));
        let _only_slot = gate.enter(Duration::ZERO, &app()).await;
        let mut last = Duration::ZERO;
        for _ in 0..4 {
            last = postponement(gate.enter(Duration::from_millis(1), &app()).await)
                .expect("postponed");
        }
        assert!(last <= MAX_POSTPONEMENT, "{last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_process_does_not_congest() {
        let gate = Arc::new(EndpointGate::new(1, Duration::from_secs(2)));
        let _only_slot = gate.enter(Duration::ZERO, &app()).await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(Duration::from_millis(200), &app()).await }
        });
        tokio::task::yield_now().await;
        // The clock jumps as it does for a process that was stopped.
        tokio::time::advance(Duration::from_secs(5)).await;
        let entry = waiting.await.unwrap();
        assert_eq!(
            postponement(entry),
            Some(Duration::from_millis(200)),
            "postponed by the wait, not by the schedule"
        );

        assert_eq!(enter_after_wait(&gate).await, Some(Duration::from_secs(2)));
    }

    const QUICK: Duration = Duration::from_millis(10);

    /// Builds a gate of two slots and a 2 s attempt timeout, takes both slots
    /// and postpones one task of each of `applications`.
    async fn congested(applications: &[ApplicationId]) -> (EndpointGate, Vec<Entry>) {
        let gate = EndpointGate::new(2, Duration::from_secs(2));
        let occupied_slots = vec![
            gate.enter(Duration::ZERO, &app()).await,
            gate.enter(Duration::ZERO, &app()).await,
        ];
        for application in applications {
            let entry = gate.enter(Duration::from_millis(200), application).await;
            assert!(postponement(entry).is_some());
        }
        (gate, occupied_slots)
    }

    #[tokio::test(start_paused = true)]
    async fn timely_responses_end_congestion() {
        let (a, b) = (app(), app());
        let (gate, _occupied_slots) = congested(&[a.clone(), b.clone(), a.clone()]).await;
        let now = Instant::now();
        assert!(gate.attempt_ended(true, QUICK, now).is_none());
        assert!(gate.attempt_ended(true, QUICK, now).is_none());
        let recovery = gate
            .attempt_ended(true, QUICK, now)
            .expect("the third response ends the congestion");
        let mut returned = recovery.applications.clone();
        returned.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(returned, expected);
        assert_eq!(
            recovery.until - now,
            Duration::from_secs(3),
            "last place handed out"
        );
        assert_eq!(
            enter_after_wait(&gate).await,
            Some(Duration::from_secs(1)),
            "the schedule starts over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn missing_or_slow_response_resets_count() {
        let (gate, _occupied_slots) = congested(&[app()]).await;
        let now = Instant::now();
        let slow = Duration::from_millis(1500);
        for (responded, duration) in [
            (true, QUICK),
            (true, QUICK),
            (false, QUICK),
            (true, QUICK),
            (true, QUICK),
            (true, slow),
            (true, QUICK),
            (true, QUICK),
        ] {
            assert!(
                gate.attempt_ended(responded, duration, now).is_none(),
                "{responded} {duration:?}"
            );
        }
        assert!(gate.attempt_ended(true, QUICK, now).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn recovery_once_per_attempt_timeout() {
        let (gate, _occupied_slots) = congested(&[app()]).await;
        let respond = |gate: &EndpointGate| {
            (0..RECOVERY_RESPONSES)
                .filter_map(|_| gate.attempt_ended(true, QUICK, Instant::now()))
                .count()
        };
        assert_eq!(respond(&gate), 1);
        let entry = gate.enter(Duration::from_millis(200), &app()).await;
        assert!(postponement(entry).is_some(), "congested again");
        assert_eq!(respond(&gate), 0, "too soon after the last recovery");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let entry = gate.enter(Duration::from_millis(200), &app()).await;
        assert!(postponement(entry).is_some());
        assert_eq!(respond(&gate), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_recovery_once_postponed_due() {
        let (gate, _occupied_slots) = congested(&[app()]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = Instant::now();
        assert!((0..RECOVERY_RESPONSES).all(|_| gate.attempt_ended(true, QUICK, now).is_none()));
    }
}
