//! Disabling and enabling applications, and the failure streaks of their
//! endpoints.

use super::PgStore;
use crate::codec::store_failure;
use hookline_core::endpoint_health::Disablement;
use hookline_core::store::StoreError;
use hookline_core::ApplicationId;
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
        let result = sqlx::query(
            "UPDATE applications SET state = 'active', disabled_reason = NULL, \
             disabled_at = NULL, failing_since = NULL WHERE id = $1",
        )
        .bind(application.as_str())
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
}
