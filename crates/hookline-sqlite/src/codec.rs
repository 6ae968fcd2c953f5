//! Conversions between domain values and their column forms, and the error
//! helpers shared by the store and the queue.
//!
//! Times are stored as integer Unix milliseconds, so they read back with
//! millisecond precision.

use hookline_core::queue::QueueError;
use hookline_core::store::StoreError;
use hookline_core::{ApplicationState, ContentType, DeliveryState};
use time::OffsetDateTime;

/// A stored value that does not decode into its domain type.
#[derive(Debug, thiserror::Error)]
#[error("invalid stored {column}: {value:?}")]
pub(crate) struct InvalidColumn {
    column: &'static str,
    value: String,
}

/// Builds the decode error for a stored value that does not parse.
pub(crate) fn invalid(column: &'static str, value: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(InvalidColumn {
        column,
        value: value.into(),
    }))
}

/// Returns a mapper from a failed query to [`StoreError::Backend`] naming the
/// operation, such as `"insert events"`.
pub(crate) fn store_failure(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| StoreError::backend(format!("failed to {operation}"), error)
}

/// Returns a mapper from a failed query to [`QueueError`] naming the operation.
pub(crate) fn queue_failure(operation: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
    move |error| QueueError::new(format!("failed to {operation}"), error)
}

/// Serializes batch rows to the JSON text that statements read back with
/// `json_each`, so that one fixed statement handles any batch size.
pub(crate) fn json_rows<T: serde::Serialize + ?Sized>(rows: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}

/// Converts a time to Unix milliseconds, saturating far outside the range
/// of `i64` milliseconds.
pub(crate) fn to_millis(at: OffsetDateTime) -> i64 {
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn from_millis(millis: i64) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|_| invalid("timestamp", millis.to_string()))
}

pub(crate) fn now_millis() -> i64 {
    to_millis(OffsetDateTime::now_utc())
}

/// Converts a duration to milliseconds, saturating at `i64::MAX`.
pub(crate) fn duration_millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Stored form of a content type: its short name.
pub(crate) fn content_type_name(content_type: ContentType) -> &'static str {
    match content_type {
        ContentType::Json => "json",
        ContentType::Xml => "xml",
        ContentType::Avro => "avro",
    }
}

pub(crate) fn parse_content_type(value: &str) -> Result<ContentType, sqlx::Error> {
    ContentType::parse(value).ok_or_else(|| invalid("content type", value))
}

pub(crate) fn parse_delivery_state(value: &str) -> Result<DeliveryState, sqlx::Error> {
    DeliveryState::parse(value).ok_or_else(|| invalid("delivery state", value))
}

pub(crate) fn parse_application_state(value: &str) -> Result<ApplicationState, sqlx::Error> {
    ApplicationState::parse(value).ok_or_else(|| invalid("application state", value))
}

/// Converts a stored count, which is never negative unless the row is corrupt.
pub(crate) fn to_u32(column: &'static str, value: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|_| invalid(column, value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_drops_sub_millisecond_part() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        let millis = to_millis(at);
        assert_eq!(millis, 1_700_000_000_123);
        let back = from_millis(millis).unwrap();
        assert_eq!(back.unix_timestamp_nanos(), 1_700_000_000_123_000_000);
    }

    #[test]
    fn content_type_names_parse_back() {
        for content_type in [ContentType::Json, ContentType::Xml, ContentType::Avro] {
            let name = content_type_name(content_type);
            assert_eq!(parse_content_type(name).unwrap(), content_type);
        }
    }
}
