//! The usage chart: an SVG bar chart of one application's notifications
//! per day, rendered on the server, with the same numbers as a table.

use hookline_core::usage::HourlyUsage;
use maud::{html, Markup};
use time::{Date, Duration, OffsetDateTime};

/// Days the chart covers, ending today (UTC).
pub(crate) const DAYS: usize = 30;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 200;
const LEFT: u32 = 48;
const BOTTOM: u32 = 24;
const TOP: u32 = 8;

/// Totals of one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Day {
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) throttled: u64,
}

impl Day {
    fn total(self) -> u64 {
        self.delivered + self.failed + self.throttled
    }
}

/// Returns the first day of the chart's range for `now`.
pub(crate) fn first_day(now: OffsetDateTime) -> Date {
    now.date() - Duration::days(DAYS as i64 - 1)
}

/// Sums hourly usage into [`DAYS`] daily totals ending with `now`'s day.
pub(crate) fn daily(usage: &[HourlyUsage], now: OffsetDateTime) -> Vec<(Date, Day)> {
    let first = first_day(now);
    let mut days: Vec<(Date, Day)> = (0..DAYS)
        .map(|offset| (first + Duration::days(offset as i64), Day::default()))
        .collect();
    for hour in usage {
        let date = hour.hour.to_offset(time::UtcOffset::UTC).date();
        let index = (date - first).whole_days();
        let Some((_, day)) = usize::try_from(index).ok().and_then(|i| days.get_mut(i)) else {
            continue;
        };
        day.delivered += hour.counts.delivered;
        day.failed += hour.counts.failed_attempts;
        day.throttled += hour.counts.throttled;
    }
    days
}

/// Renders the chart and a table of the same numbers.
pub(crate) fn render(days: &[(Date, Day)]) -> Markup {
    let max = days
        .iter()
        .map(|(_, day)| day.total())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_height = f64::from(HEIGHT - TOP - BOTTOM);
    let slot = f64::from(WIDTH - LEFT) / days.len().max(1) as f64;
    let bar_width = (slot * 0.7).max(1.0);
    let scale = |count: u64| count as f64 / max as f64 * plot_height;
    let baseline = f64::from(HEIGHT - BOTTOM);
    let total: u64 = days.iter().map(|(_, day)| day.total()).sum();
    html! {
        figure {
            svg class="chart" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width=(WIDTH) height=(HEIGHT)
                role="img" aria-labelledby="chart-title chart-desc" {
                title id="chart-title" { "Notifications per day, last " (DAYS) " days" }
                desc id="chart-desc" {
                    (total) " notifications in " (DAYS) " days; the busiest day had " (max) "."
                }
                line class="axis" x1=(LEFT) y1=(baseline) x2=(WIDTH) y2=(baseline) {}
                line class="axis" x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(baseline) {}
                text x=(LEFT - 6) y=(TOP + 10) text-anchor="end" { (max) }
                text x=(LEFT - 6) y=(baseline) text-anchor="end" { "0" }
                @for (index, (date, day)) in days.iter().enumerate() {
                    @let x = f64::from(LEFT) + index as f64 * slot + (slot - bar_width) / 2.0;
                    @let delivered = scale(day.delivered);
                    @let failed = scale(day.failed);
                    @let throttled = scale(day.throttled);
                    g {
                        title { (date) ": " (day.delivered) " delivered, " (day.failed) " failed attempts, " (day.throttled) " throttled" }
                        rect class="delivered" x=(format!("{x:.1}")) y=(format!("{:.1}", baseline - delivered))
                            width=(format!("{bar_width:.1}")) height=(format!("{delivered:.1}")) {}
                        rect class="failed" x=(format!("{x:.1}")) y=(format!("{:.1}", baseline - delivered - failed))
                            width=(format!("{bar_width:.1}")) height=(format!("{failed:.1}")) {}
                        rect class="throttled" x=(format!("{x:.1}")) y=(format!("{:.1}", baseline - delivered - failed - throttled))
                            width=(format!("{bar_width:.1}")) height=(format!("{throttled:.1}")) {}
                    }
                    @if index % 7 == 0 {
                        text x=(format!("{:.1}", x + bar_width / 2.0)) y=(HEIGHT - 6) text-anchor="middle" {
                            (format!("{:02}-{:02}", u8::from(date.month()), date.day()))
                        }
                    }
                }
            }
            figcaption {
                ul class="legend" {
                    li { span class="swatch delivered" {} "Delivered" }
                    li { span class="swatch failed" {} "Failed attempts" }
                    li { span class="swatch throttled" {} "Over the plan's limit" }
                }
            }
        }
        details {
            summary { "Daily numbers as a table" }
            table {
                caption { "Notifications per day (UTC)" }
                thead { tr { th scope="col" { "Day" } th scope="col" { "Delivered" } th scope="col" { "Failed attempts" } th scope="col" { "Over the limit" } } }
                tbody {
                    @for (date, day) in days.iter().rev() {
                        tr { th scope="row" { (date) } td { (day.delivered) } td { (day.failed) } td { (day.throttled) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_core::usage::UsageCounts;
    use hookline_core::ApplicationId;

    fn hour(at: OffsetDateTime, delivered: u64) -> HourlyUsage {
        HourlyUsage {
            application_id: ApplicationId::generate(),
            hour: at,
            counts: UsageCounts {
                delivered,
                ..UsageCounts::default()
            },
        }
    }

    #[test]
    fn hours_are_summed_per_day() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(100);
        let usage = [
            hour(now - Duration::hours(1), 2),
            hour(now - Duration::hours(2), 3),
            hour(now - Duration::days(DAYS as i64 + 1), 50),
        ];
        let days = daily(&usage, now);
        assert_eq!(days.len(), DAYS);
        assert_eq!(days.last().unwrap().1.delivered, 0);
        assert_eq!(days[DAYS - 2].1.delivered, 5);
        let total: u64 = days.iter().map(|(_, day)| day.total()).sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn chart_has_a_bar_group_per_day() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(100);
        let markup = render(&daily(&[], now)).into_string();
        assert_eq!(markup.matches("<g>").count(), DAYS);
        assert!(markup.contains("role=\"img\""));
    }
}
