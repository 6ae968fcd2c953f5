//! Reading delivery records with their attempts, and writing attempts as one
//! array per column.

use crate::codec::{invalid, parse_delivery_state, to_i32, to_u32};
use hookline_core::{
    ApplicationId, Attempt, AttemptResult, DeliveryId, DeliveryRecord, EventId, WebhookId,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;
use time::OffsetDateTime;

/// Builds a statement that selects the columns [`record_from_row`] reads,
/// with `$tail` (a `WHERE` clause and ordering) after the join.
macro_rules! record_select {
    ($tail:literal) => {
        concat!(
            "SELECT d.id, d.event_id, d.application_id, e.product, ",
            "COALESCE(d.webhook_id, e.webhook_id) AS webhook_id, d.state, d.next_attempt_at, ",
            "d.last_error, d.created_at, d.updated_at, d.replay_of ",
            "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id ",
            $tail
        )
    };
}
pub(super) use record_select;

/// Inserts attempts in batch order, so their generated ids, which order a
/// delivery's attempts, follow that order.
const INSERT_ATTEMPTS: &str = "INSERT INTO attempts \
     (delivery_id, number, started_at, duration_ms, result_kind, status, error_class, \
      error_message, response_excerpt, response_truncated) \
     SELECT delivery_id, number, started_at, duration_ms, result_kind, status, error_class, \
            error_message, response_excerpt, response_truncated \
     FROM UNNEST($1::text[], $2::integer[], $3::timestamptz[], $4::bigint[], $5::text[], \
                 $6::integer[], $7::text[], $8::text[], $9::text[], $10::boolean[]) \
       WITH ORDINALITY AS a (delivery_id, number, started_at, duration_ms, result_kind, \
                             status, error_class, error_message, response_excerpt, \
                             response_truncated, position) \
     ORDER BY position";

/// Attempts of one batch, one vector per column of `attempts`.
#[derive(Default)]
pub(super) struct AttemptColumns<'a> {
    delivery_ids: Vec<&'a str>,
    numbers: Vec<i32>,
    started_at: Vec<OffsetDateTime>,
    durations_ms: Vec<i64>,
    result_kinds: Vec<&'static str>,
    statuses: Vec<Option<i32>>,
    error_classes: Vec<Option<&'a str>>,
    error_messages: Vec<Option<&'a str>>,
    response_excerpts: Vec<Option<&'a str>>,
    response_truncated: Vec<bool>,
}

impl<'a> AttemptColumns<'a> {
    pub(super) fn push(&mut self, attempt: &'a Attempt) {
        let (kind, status, class, message) = match &attempt.result {
            AttemptResult::Response { status } => {
                ("response", Some(i32::from(*status)), None, None)
            }
            AttemptResult::Error { class, message } => {
                ("error", None, Some(class.as_str()), Some(message.as_str()))
            }
        };
        self.delivery_ids.push(attempt.delivery_id.as_str());
        self.numbers.push(to_i32(attempt.number));
        self.started_at.push(attempt.started_at);
        self.durations_ms
            .push(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX));
        self.result_kinds.push(kind);
        self.statuses.push(status);
        self.error_classes.push(class);
        self.error_messages.push(message);
        self.response_excerpts
            .push(attempt.response_excerpt.as_deref());
        self.response_truncated.push(attempt.response_truncated);
    }

    pub(super) async fn insert(self, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT_ATTEMPTS)
            .bind(self.delivery_ids)
            .bind(self.numbers)
            .bind(self.started_at)
            .bind(self.durations_ms)
            .bind(self.result_kinds)
            .bind(self.statuses)
            .bind(self.error_classes)
            .bind(self.error_messages)
            .bind(self.response_excerpts)
            .bind(self.response_truncated)
            .execute(connection)
            .await?;
        Ok(())
    }
}

/// Describes a failed attempt for the delivery's `last_error`.
pub(super) fn describe_failure(result: &AttemptResult) -> String {
    match result {
        AttemptResult::Response { status } => {
            format!("endpoint responded with HTTP status {status}")
        }
        AttemptResult::Error { class, message } => format!("{class}: {message}"),
    }
}

/// Builds records from rows selected with [`record_select!`], each with its
/// attempts in the order they were recorded. `connection` should be the
/// transaction that selected `rows`, so that records and attempts match.
pub(super) async fn records_with_attempts(
    connection: &mut PgConnection,
    rows: &[PgRow],
) -> Result<Vec<DeliveryRecord>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = rows
        .iter()
        .map(|row| row.try_get::<&str, _>("id"))
        .collect::<Result<Vec<&str>, _>>()?;
    let attempt_rows = sqlx::query(
        "SELECT delivery_id, number, started_at, duration_ms, result_kind, status, error_class, \
         error_message, response_excerpt, response_truncated \
         FROM attempts WHERE delivery_id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(&mut *connection)
    .await?;

    let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
    for row in &attempt_rows {
        let attempt = attempt_from_row(row)?;
        attempts
            .entry(attempt.delivery_id.as_str().to_owned())
            .or_default()
            .push(attempt);
    }
    rows.iter()
        .map(|row| {
            let mut record = record_from_row(row)?;
            record.attempts = attempts.remove(record.id.as_str()).unwrap_or_default();
            Ok(record)
        })
        .collect()
}

/// Builds a record without attempts from a row selected with [`record_select!`].
fn record_from_row(row: &PgRow) -> Result<DeliveryRecord, sqlx::Error> {
    let state: &str = row.try_get("state")?;
    Ok(DeliveryRecord {
        id: DeliveryId::from_stored(row.try_get("id")?),
        event_id: EventId::from_stored(row.try_get("event_id")?),
        application_id: ApplicationId::from_stored(row.try_get("application_id")?),
        product: row.try_get("product")?,
        webhook_id: WebhookId::from_stored(row.try_get("webhook_id")?),
        state: parse_delivery_state(state)?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        attempts: Vec::new(),
        replay_of: row
            .try_get::<Option<String>, _>("replay_of")?
            .map(DeliveryId::from_stored),
    })
}

fn attempt_from_row(row: &PgRow) -> Result<Attempt, sqlx::Error> {
    let kind: &str = row.try_get("result_kind")?;
    let result = match kind {
        "response" => {
            let status: i32 = row.try_get("status")?;
            let status =
                u16::try_from(status).map_err(|_| invalid("HTTP status", status.to_string()))?;
            AttemptResult::Response { status }
        }
        "error" => AttemptResult::Error {
            class: row.try_get("error_class")?,
            message: row.try_get("error_message")?,
        },
        other => return Err(invalid("attempt result kind", other)),
    };
    let duration_ms: i64 = row.try_get("duration_ms")?;
    Ok(Attempt {
        delivery_id: DeliveryId::from_stored(row.try_get("delivery_id")?),
        number: to_u32("attempt number", row.try_get("number")?)?,
        started_at: row.try_get("started_at")?,
        duration_ms: u64::try_from(duration_ms)
            .map_err(|_| invalid("attempt duration", duration_ms.to_string()))?,
        result,
        response_excerpt: row.try_get("response_excerpt")?,
        response_truncated: row.try_get("response_truncated")?,
    })
}
