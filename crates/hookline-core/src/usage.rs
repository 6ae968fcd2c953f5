//! Usage metering: what happened to each application's notifications, per
//! hour, and the rate-limit windows in which it went over its plan's limit.

use crate::limit::{unix_millis, LimitWindow};
use crate::ApplicationId;
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

/// What the dispatcher did with one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageKind {
    /// Sent, and the endpoint answered 2xx after `latency`.
    Delivered { latency: Duration },
    /// Sent, and the attempt failed after `latency`; `dead` when it was the
    /// last attempt and the delivery was dead-lettered.
    Failed { latency: Duration, dead: bool },
    /// Not sent because the window was full; `dead` when the plan
    /// dead-letters such deliveries instead of deferring them.
    Throttled {
        window: LimitWindow,
        limit: u64,
        dead: bool,
    },
}

/// One metered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    pub application_id: ApplicationId,
    pub plan: String,
    pub at: OffsetDateTime,
    pub kind: UsageKind,
}

/// Counters of one application in one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub delivered: u64,
    pub failed_attempts: u64,
    pub throttled: u64,
    pub dead_lettered: u64,
    /// Sum of the durations of sent attempts, in milliseconds.
    pub latency_ms_sum: u64,
    /// Sent attempts whose duration is in `latency_ms_sum`.
    pub latency_count: u64,
    pub latency_ms_max: u64,
}

impl UsageCounts {
    fn add_latency(&mut self, latency: Duration) {
        let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.latency_ms_sum = self.latency_ms_sum.saturating_add(millis);
        self.latency_count += 1;
        self.latency_ms_max = self.latency_ms_max.max(millis);
    }

    fn add(&mut self, kind: &UsageKind) {
        match kind {
            UsageKind::Delivered { latency } => {
                self.delivered += 1;
                self.add_latency(*latency);
            }
            UsageKind::Failed { latency, dead } => {
                self.failed_attempts += 1;
                self.dead_lettered += u64::from(*dead);
                self.add_latency(*latency);
            }
            UsageKind::Throttled { dead, .. } => {
                self.throttled += 1;
                self.dead_lettered += u64::from(*dead);
            }
        }
    }
}

/// Counters of one application in the hour starting at `hour`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyUsage {
    pub application_id: ApplicationId,
    pub hour: OffsetDateTime,
    pub counts: UsageCounts,
}

/// Notifications of one application throttled in one rate-limit window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimitWindow {
    pub application_id: ApplicationId,
    /// The plan whose limit applied (the latest one, if it changed).
    pub plan: String,
    pub window: LimitWindow,
    pub limit: u64,
    /// Notifications over the limit in this window.
    pub throttled: u64,
}

/// Usage to add to the stored totals, summed per key so that each hour and
/// each window appears once in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    pub hours: Vec<HourlyUsage>,
    pub windows: Vec<OverLimitWindow>,
}

impl UsageBatch {
    /// Sums `events` per application and hour, and throttled ones also per
    /// application and window.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a UsageEvent>) -> Self {
        let mut batch = Self::default();
        let mut hour_positions: HashMap<(&ApplicationId, i64), usize> = HashMap::new();
        let mut window_positions: HashMap<(&ApplicationId, i64, i64), usize> = HashMap::new();
        for event in events {
            let hour = LimitWindow::containing(unix_millis(event.at), 3_600_000).start;
            let key = (&event.application_id, unix_millis(hour));
            let position = *hour_positions.entry(key).or_insert_with(|| {
                batch.hours.push(HourlyUsage {
                    application_id: event.application_id.clone(),
                    hour,
                    counts: UsageCounts::default(),
                });
                batch.hours.len() - 1
            });
            batch.hours[position].counts.add(&event.kind);

            if let UsageKind::Throttled { window, limit, .. } = &event.kind {
                let key = (
                    &event.application_id,
                    unix_millis(window.start),
                    unix_millis(window.end),
                );
                let position = *window_positions.entry(key).or_insert_with(|| {
                    batch.windows.push(OverLimitWindow {
                        application_id: event.application_id.clone(),
                        plan: event.plan.clone(),
                        window: *window,
                        limit: *limit,
                        throttled: 0,
                    });
                    batch.windows.len() - 1
                });
                batch.windows[position].throttled += 1;
            }
        }
        batch
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.windows.is_empty()
    }
}

/// Filter of the hourly usage query: hours that start in `[from, to)`.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// One application, or all of them.
    pub application: Option<ApplicationId>,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

/// An application's windows over its limit, with their total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overage {
    pub application_id: ApplicationId,
    /// Notifications over the limit in all `windows` together.
    pub total: u64,
    /// Oldest first.
    pub windows: Vec<OverLimitWindow>,
}

/// Groups windows by application, sorted by total overage, largest first
/// (ties by application id), and each application's windows oldest first.
pub fn group_overages(windows: Vec<OverLimitWindow>) -> Vec<Overage> {
    let mut by_application: HashMap<ApplicationId, Vec<OverLimitWindow>> = HashMap::new();
    for window in windows {
        by_application
            .entry(window.application_id.clone())
            .or_default()
            .push(window);
    }
    let mut overages: Vec<Overage> = by_application
        .into_iter()
        .map(|(application_id, mut windows)| {
            windows.sort_by_key(|window| window.window.start);
            Overage {
                application_id,
                total: windows.iter().map(|window| window.throttled).sum(),
                windows,
            }
        })
        .collect();
    overages.sort_by(|a, b| {
        b.total
            .cmp(&a.total)
            .then_with(|| a.application_id.cmp(&b.application_id))
    });
    overages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::from_unix_millis;

    fn event(application: &ApplicationId, at_ms: i64, kind: UsageKind) -> UsageEvent {
        UsageEvent {
            application_id: application.clone(),
            plan: "free".into(),
            at: from_unix_millis(at_ms),
            kind,
        }
    }

    fn throttled(dead: bool) -> UsageKind {
        UsageKind::Throttled {
            window: LimitWindow::containing(0, 3_600_000),
            limit: 100,
            dead,
        }
    }

    #[test]
    fn batch_sums_per_application_and_hour() {
        let app = ApplicationId::generate();
        let ms = Duration::from_millis;
        let events = [
            event(&app, 10, UsageKind::Delivered { latency: ms(20) }),
            event(
                &app,
                20,
                UsageKind::Failed {
                    latency: ms(40),
                    dead: true,
                },
            ),
            event(&app, 30, throttled(false)),
            event(&app, 40, throttled(true)),
            event(&app, 3_600_000, UsageKind::Delivered { latency: ms(5) }),
        ];
        let batch = UsageBatch::from_events(&events);
        assert_eq!(batch.hours.len(), 2, "two hours");
        let first = batch.hours[0].counts;
        assert_eq!(first.delivered, 1);
        assert_eq!(first.failed_attempts, 1);
        assert_eq!(first.throttled, 2);
        assert_eq!(first.dead_lettered, 2);
        assert_eq!(first.latency_ms_sum, 60);
        assert_eq!(first.latency_count, 2);
        assert_eq!(first.latency_ms_max, 40);
        assert_eq!(batch.hours[1].hour, from_unix_millis(3_600_000));
        assert_eq!(batch.windows.len(), 1, "one window");
        assert_eq!(batch.windows[0].throttled, 2);
    }

    #[test]
    fn overages_sort_by_total_descending() {
        let small = ApplicationId::generate();
        let large = ApplicationId::generate();
        let window = |application: &ApplicationId, start_ms: i64, throttled: u64| OverLimitWindow {
            application_id: application.clone(),
            plan: "free".into(),
            window: LimitWindow::containing(start_ms, 1000),
            limit: 10,
            throttled,
        };
        let overages = group_overages(vec![
            window(&small, 0, 5),
            window(&large, 2000, 30),
            window(&large, 0, 20),
        ]);
        assert_eq!(overages.len(), 2);
        assert_eq!(overages[0].application_id, large);
        assert_eq!(overages[0].total, 50);
        assert_eq!(
            overages[0].windows[0].window.start,
            from_unix_millis(0),
            "windows oldest first"
        );
        assert_eq!(overages[1].total, 5);
    }
}
