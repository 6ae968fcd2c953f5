//! Rejected records: listing, reading and marking them replayed, and the
//! schema settings of products that decide what is rejected.

use super::PgStore;
use hookline_core::store::{RejectedRecord, RejectionFilter, StoredRejection};
use hookline_core::{EventId, Product};
use sqlx::postgres::PgRow;
use sqlx::Row;
use time::OffsetDateTime;

const SELECT_REJECTIONS: &str = "SELECT id, product, reason, kafka_topic, kafka_partition, \
     kafka_offset, idempotency_key, payload, received_at, replayed_at, replayed_event_id \
     FROM rejected_records";

impl PgStore {
    pub(super) async fn list_rejections(
        &self,
        product: &str,
        filter: &RejectionFilter,
    ) -> Result<Vec<StoredRejection>, sqlx::Error> {
        let sql = format!(
            "{SELECT_REJECTIONS} WHERE product = $1 AND ($2 OR replayed_at IS NULL) \
             AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(product)
            .bind(filter.include_replayed)
            .bind(filter.before)
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rejection_from_row).collect()
    }

    pub(super) async fn find_rejection(
        &self,
        id: i64,
    ) -> Result<Option<StoredRejection>, sqlx::Error> {
        let sql = format!("{SELECT_REJECTIONS} WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rejection_from_row).transpose()
    }

    pub(super) async fn set_replayed(&self, id: i64, event: &EventId) -> Result<bool, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE rejected_records SET replayed_at = $1, replayed_event_id = $2 \
             WHERE id = $3 AND replayed_at IS NULL",
        )
        .bind(OffsetDateTime::now_utc())
        .bind(event.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub(super) async fn set_product_schema(&self, product: &Product) -> Result<bool, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE products SET payload_schema = $1, validate_payload = $2 WHERE name = $3",
        )
        .bind(product.schema.as_deref())
        .bind(product.validate)
        .bind(&product.name)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

fn rejection_from_row(row: &PgRow) -> Result<StoredRejection, sqlx::Error> {
    let payload: Option<Vec<u8>> = row.try_get("payload")?;
    let replayed_event: Option<String> = row.try_get("replayed_event_id")?;
    let record = RejectedRecord {
        product: row.try_get("product")?,
        reason: row.try_get("reason")?,
        topic: row.try_get("kafka_topic")?,
        partition: row.try_get("kafka_partition")?,
        offset: row.try_get("kafka_offset")?,
        idempotency_key: row.try_get("idempotency_key")?,
        payload: payload.map(bytes::Bytes::from),
        received_at: row.try_get("received_at")?,
    };
    Ok(StoredRejection {
        id: row.try_get("id")?,
        record,
        replayed_at: row.try_get("replayed_at")?,
        replayed_event: replayed_event.map(EventId::from_stored),
    })
}
