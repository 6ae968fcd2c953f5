//! Conversions between domain values and their column forms, and the error
//! helpers shared by the modules.
//!
//! Times are `timestamptz` columns, which keep microseconds, so a time reads
//! back without its sub-microsecond part.

use hookline_core::store::StoreError;
use hookline_core::{ApplicationState, ContentType, DeliveryState};

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

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_foreign_key_violation())
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

/// Converts a stored `integer` that is never negative unless the row is corrupt.
pub(crate) fn to_u32(column: &'static str, value: i32) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|_| invalid(column, value.to_string()))
}

/// Converts a count to its `integer` column form, saturating at `i32::MAX`.
pub(crate) fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_names_parse_back() {
        for content_type in [ContentType::Json, ContentType::Xml, ContentType::Avro] {
            let name = content_type_name(content_type);
            assert_eq!(parse_content_type(name).unwrap(), content_type);
        }
    }

    #[test]
    fn counts_saturate_at_integer_max() {
        assert_eq!(to_i32(7), 7);
        assert_eq!(to_i32(u32::MAX), i32::MAX);
        assert!(to_u32("attempt number", -1).is_err());
    }
}
