//! Reading delivery records with their attempts, and the column form of an
//! attempt.

use crate::codec::{from_millis, invalid, json_rows, parse_delivery_state, to_millis, to_u32};
use hookline_core::{
    ApplicationId, Attempt, AttemptResult, DeliveryId, DeliveryRecord, EventId, WebhookId,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;

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

/// Column form of one attempt, in the order `INSERT_ATTEMPTS` reads it:
/// delivery id, number, start, duration, result kind, HTTP status, error
/// class, error message, response excerpt, whether the excerpt was cut.
pub(super) type AttemptRow<'a> = (
    &'a str,
    u32,
    i64,
    i64,
    &'static str,
    Option<u16>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    bool,
);

pub(super) fn attempt_row(attempt: &Attempt) -> AttemptRow<'_> {
    let (kind, status, class, message) = match &attempt.result {
        AttemptResult::Response { status } => ("response", Some(*status), None, None),
        AttemptResult::Error { class, message } => {
            ("error", None, Some(class.as_str()), Some(message.as_str()))
        }
    };
    (
        attempt.delivery_id.as_str(),
        attempt.number,
        to_millis(attempt.started_at),
        i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX),
        kind,
        status,
        class,
        message,
        attempt.response_excerpt.as_deref(),
        attempt.response_truncated,
    )
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
/// attempts in the order they were recorded. `connection` is the read
/// transaction that selected `rows`, so records and attempts match.
pub(super) async fn records_with_attempts(
    connection: &mut SqliteConnection,
    rows: &[SqliteRow],
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
         FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(?1)) ORDER BY id",
    )
    .bind(json_rows(&ids)?)
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
fn record_from_row(row: &SqliteRow) -> Result<DeliveryRecord, sqlx::Error> {
    let state: &str = row.try_get("state")?;
    let next_attempt_at: Option<i64> = row.try_get("next_attempt_at")?;
    Ok(DeliveryRecord {
        id: DeliveryId::from_stored(row.try_get("id")?),
        event_id: EventId::from_stored(row.try_get("event_id")?),
        application_id: ApplicationId::from_stored(row.try_get("application_id")?),
        product: row.try_get("product")?,
        webhook_id: WebhookId::from_stored(row.try_get("webhook_id")?),
        state: parse_delivery_state(state)?,
        next_attempt_at: next_attempt_at.map(from_millis).transpose()?,
        last_error: row.try_get("last_error")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
        attempts: Vec::new(),
        replay_of: row
            .try_get::<Option<String>, _>("replay_of")?
            .map(DeliveryId::from_stored),
    })
}

fn attempt_from_row(row: &SqliteRow) -> Result<Attempt, sqlx::Error> {
    let kind: &str = row.try_get("result_kind")?;
    let result = match kind {
        "response" => {
            let status: i64 = row.try_get("status")?;
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
        started_at: from_millis(row.try_get("started_at")?)?,
        duration_ms: u64::try_from(duration_ms)
            .map_err(|_| invalid("attempt duration", duration_ms.to_string()))?,
        result,
        response_excerpt: row.try_get("response_excerpt")?,
        response_truncated: row.try_get("response_truncated")?,
    })
}
