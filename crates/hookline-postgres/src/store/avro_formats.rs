//! The per-application Avro format (`binary` or `json`).

use super::PgStore;
use crate::codec::invalid;
use hookline_core::{ApplicationId, AvroFormat};
use std::collections::HashMap;

impl PgStore {
    pub(super) async fn find_avro_formats(
        &self,
        ids: &[ApplicationId],
    ) -> Result<HashMap<ApplicationId, AvroFormat>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = ids.iter().map(ApplicationId::as_str).collect();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, avro_format FROM applications WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, format)| {
                let format = AvroFormat::parse(&format)
                    .ok_or_else(|| invalid("applications.avro_format", format))?;
                Ok((ApplicationId::from_stored(id), format))
            })
            .collect()
    }

    pub(super) async fn update_avro_format(
        &self,
        application: &ApplicationId,
        avro_format: AvroFormat,
    ) -> Result<bool, sqlx::Error> {
        let result = sqlx::query("UPDATE applications SET avro_format = $2 WHERE id = $1")
            .bind(application.as_str())
            .bind(avro_format.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
