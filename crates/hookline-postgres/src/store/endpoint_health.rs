//! Disabling and enabling applications, the failure streaks of their
//! endpoints, and the deliveries kept while they were disabled.

use super::tasks::{task_from_row, task_select};
use super::PgStore;
use crate::codec::store_failure;
use hookline_core::endpoint_health::Disablement;
use hookline_core::queue::DeliveryTask;
use hookline_core::store::StoreError;
use hookline_core::{ApplicationId, DeliveryId};
use sqlx::Row;
use time::OffsetDateTime;

impl PgStore {
    pub(super) async fn disable_application_row(
        &self,
        application: &ApplicationId,
        disablement: &Disablement,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE applications SET state = 'disabled', disabled_reason = $2, disabled_at = $3 \
             WHERE id = $1 AND state = 'active'",
        )
        .bind(application.as_str())
        .bind(&disablement.reason)
        .bind(disablement.disabled_at)
        .execute(&self.pool)
        .await
        .map_err(store_failure("disable an application"))?;
        Ok(result.rows_affected() > 0)
    }

    pub(super) async fn enable_application_row(
        &self,
        application: &ApplicationId,
    ) -> Result<bool, StoreError> {
        // `state` on the right of `SET` is the value before the update.
        let result = sqlx::query(
            "UPDATE applications SET state = 'active', disabled_reason = NULL, \
             disabled_at = NULL, failing_since = NULL, \
             resumed_at = CASE WHEN state = 'disabled' THEN $2 ELSE resumed_at END \
             WHERE id = $1",
        )
        .bind(application.as_str())
        .bind(OffsetDateTime::now_utc())
        .execute(&self.pool)
        .await
        .map_err(store_failure("enable an application"))?;
        Ok(result.rows_affected() > 0)
    }

    pub(super) async fn find_disablement(
        &self,
        application: &ApplicationId,
    ) -> Result<Option<Disablement>, StoreError> {
        let row = sqlx::query(
            "SELECT disabled_reason, disabled_at FROM applications \
             WHERE id = $1 AND state = 'disabled' AND disabled_at IS NOT NULL",
        )
        .bind(application.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_failure("read a disablement"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = || -> Result<Disablement, sqlx::Error> {
            let reason: Option<String> = row.try_get("disabled_reason")?;
            Ok(Disablement {
                reason: reason.unwrap_or_default(),
                disabled_at: row.try_get("disabled_at")?,
            })
        };
        read()
            .map(Some)
            .map_err(store_failure("read a disablement"))
    }

    pub(super) async fn note_endpoint_failure(
        &self,
        application: &ApplicationId,
        at: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        sqlx::query_scalar::<_, OffsetDateTime>(
            "UPDATE applications SET failing_since = COALESCE(failing_since, $2) \
             WHERE id = $1 RETURNING failing_since",
        )
        .bind(application.as_str())
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_failure("record a failing endpoint"))
    }

    pub(super) async fn note_endpoint_success(
        &self,
        application: &ApplicationId,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE applications SET failing_since = NULL \
             WHERE id = $1 AND failing_since IS NOT NULL",
        )
        .bind(application.as_str())
        .execute(&self.pool)
        .await
        .map_err(store_failure("record a recovered endpoint"))?;
        Ok(())
    }

    /// Clears the resumed mark of up to `limit` applications and returns
    /// them. `SKIP LOCKED` lets concurrent pollers take different rows.
    pub(super) async fn take_resumed(&self, limit: u32) -> Result<Vec<ApplicationId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE applications SET resumed_at = NULL WHERE id IN ( \
               SELECT id FROM applications WHERE resumed_at IS NOT NULL \
               ORDER BY resumed_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_failure("take resumed applications"))?;
        Ok(ids.into_iter().map(ApplicationId::from_stored).collect())
    }

    /// Reads one page of the application's pending deliveries.
    ///
    /// NOTE: the scan walks `deliveries_by_application` from `after`, past
    /// delivered and dead rows too, so enabling an application with many
    /// retained deliveries reads all of them once, page by page.
    pub(super) async fn find_application_tasks(
        &self,
        application: &ApplicationId,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryTask>, StoreError> {
        // Every id sorts after the empty string.
        let after = after.map_or("", DeliveryId::as_str);
        let rows = sqlx::query(task_select!(
            "WHERE d.application_id = $1 AND d.id > $2 AND d.state = 'pending' \
             ORDER BY d.id LIMIT $3"
        ))
        .bind(application.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_failure(
            "list the pending deliveries of an application",
        ))?;
        rows.iter()
            .map(task_from_row)
            .collect::<Result<_, _>>()
            .map_err(store_failure("read a pending delivery"))
    }

    pub(super) async fn find_finished(
        &self,
        ids: &[DeliveryId],
    ) -> Result<Vec<DeliveryId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(DeliveryId::as_str).collect();
        // Planned per call; see `LOCK_DELIVERIES` for why.
        let finished: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE id = ANY($1) AND state <> 'pending'",
        )
        .persistent(false)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(store_failure("read the states of deliveries"))?;
        Ok(finished.into_iter().map(DeliveryId::from_stored).collect())
    }
}
