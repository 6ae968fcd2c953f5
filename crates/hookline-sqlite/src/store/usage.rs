//! Usage metering: hourly totals and the windows over a plan's limit.

use super::bookkeeping::Bookkeeping;
use super::SqliteStore;
use crate::codec::{from_millis, invalid, to_millis};
use hookline_core::limit::LimitWindow;
use hookline_core::usage::{HourlyUsage, OverLimitWindow, UsageBatch, UsageCounts, UsageQuery};
use hookline_core::ApplicationId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use time::OffsetDateTime;

const SELECT_HOURS: &str = "SELECT application_id, hour_start, delivered, failed_attempts, \
     throttled, dead_lettered, latency_ms_sum, latency_count, latency_ms_max \
     FROM usage_hourly \
     WHERE (?1 IS NULL OR application_id = ?1) AND hour_start >= ?2 AND hour_start < ?3 \
     ORDER BY application_id, hour_start";

const SELECT_WINDOWS: &str = "SELECT application_id, window_start, window_end, plan, \
     rate_limit, throttled FROM limit_windows \
     WHERE window_start < ?2 AND window_end > ?1 ORDER BY application_id, window_start";

/// Converts a count to its column form, saturating at `i64::MAX`.
fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl SqliteStore {
    pub(super) async fn add_usage(&self, batch: &UsageBatch) -> Result<(), sqlx::Error> {
        Bookkeeping::default()
            .usage(batch)?
            .write(&self.writer, &self.scripts)
            .await?;
        Ok(())
    }

    pub(super) async fn find_usage(
        &self,
        query: &UsageQuery,
    ) -> Result<Vec<HourlyUsage>, sqlx::Error> {
        let rows = sqlx::query(SELECT_HOURS)
            .bind(query.application.as_ref().map(ApplicationId::as_str))
            .bind(to_millis(query.from))
            .bind(to_millis(query.to))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(hour_from_row).collect()
    }

    pub(super) async fn find_over_limit_windows(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<OverLimitWindow>, sqlx::Error> {
        let rows = sqlx::query(SELECT_WINDOWS)
            .bind(to_millis(from))
            .bind(to_millis(to))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(window_from_row).collect()
    }
}

pub(super) type HourRow<'a> = (&'a str, i64, i64, i64, i64, i64, i64, i64, i64);

pub(super) fn hour_row(hour: &HourlyUsage) -> HourRow<'_> {
    let counts = &hour.counts;
    (
        hour.application_id.as_str(),
        to_millis(hour.hour),
        count(counts.delivered),
        count(counts.failed_attempts),
        count(counts.throttled),
        count(counts.dead_lettered),
        count(counts.latency_ms_sum),
        count(counts.latency_count),
        count(counts.latency_ms_max),
    )
}

pub(super) type WindowRow<'a> = (&'a str, i64, i64, &'a str, i64, i64);

pub(super) fn window_row(window: &OverLimitWindow) -> WindowRow<'_> {
    (
        window.application_id.as_str(),
        to_millis(window.window.start),
        to_millis(window.window.end),
        window.plan.as_str(),
        count(window.limit),
        count(window.throttled),
    )
}

/// Reads a stored count, which is never negative unless the row is corrupt.
fn count_column(row: &SqliteRow, column: &'static str) -> Result<u64, sqlx::Error> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| invalid(column, value.to_string()))
}

fn hour_from_row(row: &SqliteRow) -> Result<HourlyUsage, sqlx::Error> {
    Ok(HourlyUsage {
        application_id: ApplicationId::from_stored(row.try_get("application_id")?),
        hour: from_millis(row.try_get("hour_start")?)?,
        counts: UsageCounts {
            delivered: count_column(row, "delivered")?,
            failed_attempts: count_column(row, "failed_attempts")?,
            throttled: count_column(row, "throttled")?,
            dead_lettered: count_column(row, "dead_lettered")?,
            latency_ms_sum: count_column(row, "latency_ms_sum")?,
            latency_count: count_column(row, "latency_count")?,
            latency_ms_max: count_column(row, "latency_ms_max")?,
        },
    })
}

fn window_from_row(row: &SqliteRow) -> Result<OverLimitWindow, sqlx::Error> {
    Ok(OverLimitWindow {
        application_id: ApplicationId::from_stored(row.try_get("application_id")?),
        plan: row.try_get("plan")?,
        window: LimitWindow {
            start: from_millis(row.try_get("window_start")?)?,
            end: from_millis(row.try_get("window_end")?)?,
        },
        limit: count_column(row, "rate_limit")?,
        throttled: count_column(row, "throttled")?,
    })
}
