//! Tasks handed from the insert that enqueues them straight to a receiver
//! in the same process.
//!
//! When a receiver of this process is waiting and the table holds no
//! backlog, the insert script writes the new queue rows already leased, and
//! the tasks, built from the events in memory, wait here for the next
//! `receive`. That receive then costs no lease statement and no read of the
//! payloads back from the database.
//!
//! The rows carry a real lease, so the rest works as for a task leased from
//! the table. Settling checks the token, and a lease that expires makes the
//! row visible to every receiver. Tasks still waiting here when the process
//! stops are released by `release_all_leases` at the next exclusive open,
//! or else when their lease expires.

use crate::codec::{duration_millis, now_millis};
use hookline_core::queue::{DeliveryTask, Leased};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Tasks that may wait here at once. An insert whose tasks would pass it
/// writes them unleased instead, for receivers to lease from the table.
const CAPACITY: usize = 8_192;

/// Maximum time between two leases from the table while tasks arrive here,
/// so that retries and other due rows are received even when this handoff
/// alone could fill every receive.
const TABLE_INTERVAL: Duration = Duration::from_millis(100);

/// The lease that an insert writes to the queue rows it hands off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandoffLease {
    /// The token stored in `lease_token`.
    pub(crate) token: i64,
    /// The lease expiry stored in `visible_at`, in Unix milliseconds.
    pub(crate) visible_at: i64,
    /// The same expiry on this process's monotonic clock.
    expires: Instant,
}

/// One task waiting for a receiver.
struct Waiting {
    leased: Leased,
    expires: Instant,
}

/// Tasks whose lease ran too short while they waited, as (delivery id,
/// token) pairs, for the receiver to release to the table.
pub(crate) type Stale = Vec<(String, i64)>;

#[derive(Default)]
struct State {
    waiting: VecDeque<Waiting>,
    /// The visibility timeout of the latest receive; `None` until a
    /// receiver called `receive`, so a process that does not deliver hands
    /// nothing off.
    visibility: Option<Duration>,
    /// Whether the latest lease from the table filled its batch. Older rows
    /// then wait in the table, and new tasks join them there instead of
    /// overtaking them here.
    backlog: bool,
    last_table_lease: Option<Instant>,
}

/// The tasks waiting for a receiver of this process.
#[derive(Default)]
pub(crate) struct Handoff {
    state: Mutex<State>,
}

impl Handoff {
    /// Returns the lease for an insert of `tasks` tasks, or `None` when they
    /// should go to the table: no receiver called `receive` yet, the table has a
    /// backlog, or they would pass [`CAPACITY`].
    pub(crate) fn lease_for(&self, tasks: usize) -> Option<HandoffLease> {
        let state = self.state.lock().expect("handoff lock");
        let visibility = state.visibility?;
        if tasks == 0 || state.backlog || state.waiting.len() + tasks > CAPACITY {
            return None;
        }
        Some(HandoffLease {
            token: rand::random(),
            visible_at: now_millis().saturating_add(duration_millis(visibility)),
            expires: Instant::now() + visibility,
        })
    }

    /// Adds the tasks that an insert wrote with `lease`.
    pub(crate) fn push(&self, lease: HandoffLease, tasks: impl Iterator<Item = DeliveryTask>) {
        let mut state = self.state.lock().expect("handoff lock");
        state.waiting.extend(tasks.map(|task| Waiting {
            leased: Leased {
                task,
                lease: lease.token as u64,
            },
            expires: lease.expires,
        }));
    }

    /// Returns whether the next receive should also lease from the table: the
    /// latest lease from it found a backlog, or it was [`TABLE_INTERVAL`]
    /// ago or longer.
    pub(crate) fn table_due(&self) -> bool {
        let state = self.state.lock().expect("handoff lock");
        state.backlog
            || state
                .last_table_lease
                .is_none_or(|at| at.elapsed() >= TABLE_INTERVAL)
    }

    /// Takes up to `max` waiting tasks for a receive with `visibility`, in
    /// the order they were inserted. A task with less than half of
    /// `visibility` left is not handed out but returned as stale: its
    /// receiver could still be sending it when the lease expires.
    pub(crate) fn take(&self, max: usize, visibility: Duration) -> (Vec<Leased>, Stale) {
        let mut state = self.state.lock().expect("handoff lock");
        state.visibility = Some(visibility);
        let fresh_until = Instant::now() + visibility / 2;
        let mut leased = Vec::with_capacity(max.min(state.waiting.len()));
        let mut stale = Vec::new();
        while leased.len() < max {
            let Some(waiting) = state.waiting.pop_front() else {
                break;
            };
            if waiting.expires < fresh_until {
                let id = waiting.leased.task.delivery_id.as_str().to_owned();
                stale.push((id, waiting.leased.lease as i64));
            } else {
                leased.push(waiting.leased);
            }
        }
        (leased, stale)
    }

    /// Notes a lease from the table that requested `requested` rows and got
    /// `received`.
    pub(crate) fn table_leased(&self, requested: usize, received: usize) {
        let mut state = self.state.lock().expect("handoff lock");
        state.backlog = requested > 0 && received >= requested;
        state.last_table_lease = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISIBILITY: Duration = Duration::from_secs(30);

    #[test]
    fn lease_waits_for_first_receive() {
        let handoff = Handoff::default();
        assert!(handoff.lease_for(1).is_none());
        let (leased, stale) = handoff.take(10, VISIBILITY);
        assert!(leased.is_empty());
        assert!(stale.is_empty());
        let lease = handoff.lease_for(1).expect("a receiver called receive");
        let expiry = lease.visible_at - now_millis();
        assert!((29_000..=30_000).contains(&expiry), "{expiry} ms");
    }

    #[test]
    fn capacity_and_backlog_skip_handoff() {
        let handoff = Handoff::default();
        handoff.take(10, VISIBILITY);
        assert!(handoff.lease_for(CAPACITY).is_some());
        assert!(handoff.lease_for(CAPACITY + 1).is_none());
        assert!(handoff.lease_for(0).is_none());

        handoff.table_leased(10, 10);
        assert!(handoff.lease_for(1).is_none(), "the table has a backlog");
        assert!(handoff.table_due());
        handoff.table_leased(10, 3);
        assert!(handoff.lease_for(1).is_some(), "the table is drained");
        assert!(!handoff.table_due(), "the table was leased just now");
    }
}
