//! Usage metering: hourly totals and the windows over a plan's limit.

use super::PgStore;
use crate::codec::invalid;
use hookline_core::limit::LimitWindow;
use hookline_core::usage::{HourlyUsage, OverLimitWindow, UsageBatch, UsageCounts, UsageQuery};
use hookline_core::ApplicationId;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

/// Adds each row to the stored totals. Rows go in key order, so two
/// dispatchers adding to the same rows take their locks in the same order
/// instead of deadlocking.
const ADD_HOURS: &str = "INSERT INTO usage_hourly \
     (application_id, hour_start, delivered, failed_attempts, throttled, dead_lettered, \
      latency_ms_sum, latency_count, latency_ms_max) \
     SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], \
                          $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) \
       AS u (application_id, hour_start, delivered, failed_attempts, throttled, dead_lettered, \
             latency_ms_sum, latency_count, latency_ms_max) \
     ORDER BY application_id, hour_start \
     ON CONFLICT (application_id, hour_start) DO UPDATE SET \
       delivered = usage_hourly.delivered + EXCLUDED.delivered, \
       failed_attempts = usage_hourly.failed_attempts + EXCLUDED.failed_attempts, \
       throttled = usage_hourly.throttled + EXCLUDED.throttled, \
       dead_lettered = usage_hourly.dead_lettered + EXCLUDED.dead_lettered, \
       latency_ms_sum = usage_hourly.latency_ms_sum + EXCLUDED.latency_ms_sum, \
       latency_count = usage_hourly.latency_count + EXCLUDED.latency_count, \
       latency_ms_max = GREATEST(usage_hourly.latency_ms_max, EXCLUDED.latency_ms_max)";

const ADD_WINDOWS: &str = "INSERT INTO limit_windows \
     (application_id, window_start, window_end, plan, rate_limit, throttled) \
     SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], \
                          $5::bigint[], $6::bigint[]) \
       AS u (application_id, window_start, window_end, plan, rate_limit, throttled) \
     ORDER BY application_id, window_start, window_end \
     ON CONFLICT (application_id, window_start, window_end) DO UPDATE SET \
       plan = EXCLUDED.plan, rate_limit = EXCLUDED.rate_limit, \
       throttled = limit_windows.throttled + EXCLUDED.throttled";

const SELECT_HOURS: &str = "SELECT application_id, hour_start, delivered, failed_attempts, \
     throttled, dead_lettered, latency_ms_sum, latency_count, latency_ms_max \
     FROM usage_hourly \
     WHERE ($1::text IS NULL OR application_id = $1) AND hour_start >= $2 AND hour_start < $3 \
     ORDER BY application_id, hour_start";

const SELECT_WINDOWS: &str = "SELECT application_id, window_start, window_end, plan, \
     rate_limit, throttled FROM limit_windows \
     WHERE window_start < $2 AND window_end > $1 ORDER BY application_id, window_start";

/// Converts a count to its `bigint` column form, saturating at `i64::MAX`.
fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl PgStore {
    pub(super) async fn add_usage(&self, batch: &UsageBatch) -> Result<(), sqlx::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut transaction = self.pool.begin().await?;
        add_totals(&mut transaction, batch).await?;
        transaction.commit().await
    }

    pub(super) async fn find_usage(
        &self,
        query: &UsageQuery,
    ) -> Result<Vec<HourlyUsage>, sqlx::Error> {
        let rows = sqlx::query(SELECT_HOURS)
            .bind(query.application.as_ref().map(ApplicationId::as_str))
            .bind(query.from)
            .bind(query.to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(hour_from_row).collect()
    }

    pub(super) async fn find_over_limit_windows(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<OverLimitWindow>, sqlx::Error> {
        let rows = sqlx::query(SELECT_WINDOWS)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(window_from_row).collect()
    }
}

/// Adds `batch` to the totals inside the caller's transaction.
pub(super) async fn add_totals(
    transaction: &mut PgConnection,
    batch: &UsageBatch,
) -> sqlx::Result<()> {
    if !batch.hours.is_empty() {
        add_hours(transaction, &batch.hours).await?;
    }
    if !batch.windows.is_empty() {
        add_windows(transaction, &batch.windows).await?;
    }
    Ok(())
}

async fn add_hours(connection: &mut PgConnection, hours: &[HourlyUsage]) -> sqlx::Result<()> {
    let column = |read: fn(&UsageCounts) -> u64| -> Vec<i64> {
        hours.iter().map(|hour| count(read(&hour.counts))).collect()
    };
    let ids: Vec<&str> = hours
        .iter()
        .map(|hour| hour.application_id.as_str())
        .collect();
    let starts: Vec<OffsetDateTime> = hours.iter().map(|hour| hour.hour).collect();
    sqlx::query(ADD_HOURS)
        .bind(ids)
        .bind(starts)
        .bind(column(|counts| counts.delivered))
        .bind(column(|counts| counts.failed_attempts))
        .bind(column(|counts| counts.throttled))
        .bind(column(|counts| counts.dead_lettered))
        .bind(column(|counts| counts.latency_ms_sum))
        .bind(column(|counts| counts.latency_count))
        .bind(column(|counts| counts.latency_ms_max))
        .execute(connection)
        .await?;
    Ok(())
}

async fn add_windows(
    connection: &mut PgConnection,
    windows: &[OverLimitWindow],
) -> sqlx::Result<()> {
    let ids: Vec<&str> = windows.iter().map(|w| w.application_id.as_str()).collect();
    let starts: Vec<OffsetDateTime> = windows.iter().map(|w| w.window.start).collect();
    let ends: Vec<OffsetDateTime> = windows.iter().map(|w| w.window.end).collect();
    let plans: Vec<&str> = windows.iter().map(|w| w.plan.as_str()).collect();
    let limits: Vec<i64> = windows.iter().map(|w| count(w.limit)).collect();
    let throttled: Vec<i64> = windows.iter().map(|w| count(w.throttled)).collect();
    sqlx::query(ADD_WINDOWS)
        .bind(ids)
        .bind(starts)
        .bind(ends)
        .bind(plans)
        .bind(limits)
        .bind(throttled)
        .execute(connection)
        .await?;
    Ok(())
}

/// Reads a stored count, which is never negative unless the row is corrupt.
fn count_column(row: &PgRow, column: &'static str) -> Result<u64, sqlx::Error> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| invalid(column, value.to_string()))
}

fn hour_from_row(row: &PgRow) -> Result<HourlyUsage, sqlx::Error> {
    Ok(HourlyUsage {
        application_id: ApplicationId::from_stored(row.try_get("application_id")?),
        hour: row.try_get("hour_start")?,
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

fn window_from_row(row: &PgRow) -> Result<OverLimitWindow, sqlx::Error> {
    Ok(OverLimitWindow {
        application_id: ApplicationId::from_stored(row.try_get("application_id")?),
        plan: row.try_get("plan")?,
        window: LimitWindow {
            start: row.try_get("window_start")?,
            end: row.try_get("window_end")?,
        },
        limit: count_column(row, "rate_limit")?,
        throttled: count_column(row, "throttled")?,
    })
}
