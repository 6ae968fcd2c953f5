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
//! take it, instead of every task coming back after each short delay.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Maximum postponement the schedule hands out, so tasks of an endpoint
/// that recovers come back within this time.
const MAX_POSTPONEMENT: Duration = Duration::from_secs(60);

/// Decision for one task at its endpoint.
pub(crate) enum Entry {
    /// Send now, holding this endpoint slot until the attempt ends.
    Send(OwnedSemaphorePermit),
    /// Put the task back in the queue for this long, without an attempt.
    Postpone(Duration),
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

    /// Takes a slot, or returns how long to postpone the task.
    pub(crate) async fn enter(&self, wait: Duration) -> Entry {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Entry::Send(permit);
        }
        if let Some(delay) = self.place_if_congested(Instant::now()) {
            return Entry::Postpone(delay);
        }
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Entry::Send(permit),
            Ok(Err(_)) | Err(_) => {
                let now = Instant::now();
                self.mark_congested(now);
                Entry::Postpone(self.place_if_congested(now).unwrap_or(wait))
            }
        }
    }

    fn mark_congested(&self, now: Instant) {
        let mut schedule = self.schedule.lock().expect("endpoint schedule lock");
        schedule.congested_until = Some(now + self.attempt_timeout);
    }

    /// Returns the next place of the schedule while the endpoint is
    /// congested, or `None` once the congestion has passed.
    fn place_if_congested(&self, now: Instant) -> Option<Duration> {
        let mut schedule = self.schedule.lock().expect("endpoint schedule lock");
        match schedule.congested_until {
            Some(until) if until > now => {}
            _ => {
                *schedule = Schedule::default();
                return None;
            }
        }
        let earliest = now + self.spacing;
        let place = schedule
            .next_place
            .map_or(earliest, |next| next.max(earliest));
        let place = place.min(now + MAX_POSTPONEMENT);
        schedule.next_place = Some(place + self.spacing);
        Some(place - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postponement(entry: Entry) -> Option<Duration> {
        match entry {
            Entry::Send(_) => None,
            Entry::Postpone(delay) => Some(delay),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn free_slot_sends_at_once() {
        let gate = EndpointGate::new(2, Duration::from_secs(2));
        let first = gate.enter(Duration::from_millis(200)).await;
        let second = gate.enter(Duration::from_millis(200)).await;
        assert!(postponement(first).is_none());
        assert!(postponement(second).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn busy_fast_endpoint_waits_for_slot() {
        let gate = Arc::new(EndpointGate::new(1, Duration::from_secs(2)));
        let Entry::Send(held) = gate.enter(Duration::from_millis(200)).await else {
            panic!("the first task finds a free slot");
        };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        });
        let entry = gate.enter(Duration::from_millis(200)).await;
        assert!(postponement(entry).is_none(), "the freed slot is taken");
    }

    #[tokio::test(start_paused = true)]
    async fn congested_endpoint_spaces_postponements() {
        let gate = EndpointGate::new(2, Duration::from_secs(2));
        let _first_slot = gate.enter(Duration::ZERO).await;
        let _second_slot = gate.enter(Duration::ZERO).await;
        let first = postponement(gate.enter(Duration::from_millis(200)).await);
        let second = postponement(gate.enter(Duration::from_millis(200)).await);
        let third = postponement(gate.enter(Duration::from_millis(200)).await);
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
        let _only_slot = gate.enter(Duration::ZERO).await;
        assert!(postponement(gate.enter(Duration::from_millis(200)).await).is_some());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let started = Instant::now();
        let entry = gate.enter(Duration::from_millis(200)).await;
        assert_eq!(postponement(entry), Some(Duration::from_secs(2)));
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(200),
            "it waited again first"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn postponement_is_capped() {
        let gate = EndpointGate::new(1, Duration::from_secs(50));
        let _only_slot = gate.enter(Duration::ZERO).await;
        let mut last = Duration::ZERO;
        for _ in 0..4 {
            last = postponement(gate.enter(Duration::from_millis(1)).await).expect("postponed");
        }
        assert!(last <= MAX_POSTPONEMENT, "{last:?}");
    }
}
