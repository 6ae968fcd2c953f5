//! Plans, and moving an application to another plan.

use super::SqliteStore;
use crate::codec::{from_millis, invalid, store_failure, to_millis, to_u32};
use hookline_core::store::StoreError;
use hookline_core::{ApplicationId, LimitPeriod, OverLimit, Plan};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

const SELECT_PLANS: &str = "SELECT name, rate_limit, period, over_limit, monthly_fee, currency, \
     trial_days, created_at, updated_at FROM plans";

impl SqliteStore {
    pub(super) async fn insert_plan(&self, plan: &Plan) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO plans (name, rate_limit, period, over_limit, monthly_fee, currency, \
             trial_days, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(&plan.name)
        .bind(plan.limit.map(limit_column))
        .bind(plan.period.as_str())
        .bind(plan.over_limit.as_str())
        .bind(&plan.monthly_fee)
        .bind(&plan.currency)
        .bind(i64::from(plan.trial_days))
        .bind(to_millis(plan.created_at))
        .bind(to_millis(plan.updated_at))
        .execute(&self.writer)
        .await;

        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(StoreError::Conflict {
                    entity: "plan",
                    key: plan.name.clone(),
                })
            }
            Err(error) => Err(store_failure("create a plan")(error)),
        }
    }

    pub(super) async fn find_plan(&self, name: &str) -> Result<Option<Plan>, sqlx::Error> {
        let sql = format!("{SELECT_PLANS} WHERE name = ?1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(plan_from_row).transpose()
    }

    pub(super) async fn list_plans(&self) -> Result<Vec<Plan>, sqlx::Error> {
        let sql = format!("{SELECT_PLANS} ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().map(plan_from_row).collect()
    }

    pub(super) async fn replace_plan(&self, plan: &Plan) -> Result<bool, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE plans SET rate_limit = ?2, period = ?3, over_limit = ?4, monthly_fee = ?5, \
             currency = ?6, trial_days = ?7, updated_at = ?8 WHERE name = ?1",
        )
        .bind(&plan.name)
        .bind(plan.limit.map(limit_column))
        .bind(plan.period.as_str())
        .bind(plan.over_limit.as_str())
        .bind(&plan.monthly_fee)
        .bind(&plan.currency)
        .bind(i64::from(plan.trial_days))
        .bind(to_millis(plan.updated_at))
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    pub(super) async fn move_application(
        &self,
        application: &ApplicationId,
        plan: &str,
    ) -> Result<bool, sqlx::Error> {
        let result = sqlx::query("UPDATE applications SET plan = ?2 WHERE id = ?1")
            .bind(application.as_str())
            .bind(plan)
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// Column form of a limit, saturating at `i64::MAX`.
fn limit_column(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn plan_from_row(row: &SqliteRow) -> Result<Plan, sqlx::Error> {
    let limit: Option<i64> = row.try_get("rate_limit")?;
    let period: &str = row.try_get("period")?;
    let over_limit: &str = row.try_get("over_limit")?;
    let limit = limit
        .map(|value| u64::try_from(value).map_err(|_| invalid("plan limit", value.to_string())))
        .transpose()?;
    Ok(Plan {
        name: row.try_get("name")?,
        limit,
        period: LimitPeriod::parse(period).ok_or_else(|| invalid("plan period", period))?,
        over_limit: OverLimit::parse(over_limit)
            .ok_or_else(|| invalid("plan over_limit", over_limit))?,
        monthly_fee: row.try_get("monthly_fee")?,
        currency: row.try_get("currency")?,
        trial_days: to_u32("plan trial_days", row.try_get("trial_days")?)?,
        created_at: from_millis(row.try_get("created_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}
