//! PostgreSQL backend of Hookline: the state store shared by several
//! creator, dispatcher and API processes.
//!
//! Every statement is built at run time (no compile-time checked queries),
//! so building the crate needs no database. Batch writes bind one array per
//! column and expand them with `UNNEST`, so a batch of any size costs one
//! round trip per statement. Deduplication relies on the primary key of
//! `idempotency_keys` and `ON CONFLICT DO NOTHING`, which makes it exact
//! across processes: of two transactions inserting the same key, the second
//! waits for the first to commit and then finds the key taken.

mod codec;
mod migration_3;
mod migration_4;
mod migration_5;
mod migration_6;
mod migration_7;
mod migration_8;
mod migration_9;
mod retention;
mod schema;
mod store;

pub use store::PgStore;

use codec::store_failure;
use hookline_core::cipher::SecretCipher;
use hookline_core::store::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::Arc;
use time::OffsetDateTime;

/// Maximum length of a schema name that PostgreSQL keeps without truncating
/// it (`NAMEDATALEN - 1` in a default build).
const MAX_SCHEMA_NAME_LEN: usize = 63;

/// A connection pool to one PostgreSQL database, optionally confined to one
/// schema.
pub struct PgBackend {
    pool: PgPool,
    store: Arc<PgStore>,
}

/// A schema name that [`PgBackend::connect`] rejects.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid schema name {0:?}: use 1 to 63 lowercase ASCII letters, digits and underscores, \
     starting with a letter or an underscore"
)]
pub struct InvalidSchemaName(String);

impl PgBackend {
    /// Opens a pool of up to `max_connections` connections to the database
    /// at `url`, such as `postgres://hookline@127.0.0.1:5432/hookline`. A
    /// `max_connections` of 0 is raised to 1.
    ///
    /// `schema`: when `Some`, every connection uses that schema (created if
    /// missing) via `search_path`, so tests and deployments can share one
    /// database. When `None`, the server's default `search_path` applies.
    pub async fn connect(
        url: &str,
        schema: Option<&str>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::backend("failed to parse the PostgreSQL URL", error))?;
        if let Some(schema) = schema {
            check_schema_name(schema)?;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await
            .map_err(store_failure("connect to PostgreSQL"))?;
        if let Some(schema) = schema {
            create_schema(&pool, schema).await?;
        }
        tracing::info!(?schema, max_connections, "Connected to PostgreSQL");
        Ok(Self {
            store: Arc::new(PgStore::new(pool.clone(), None)),
            pool,
        })
    }

    /// Encrypts and decrypts signing secrets with `keys` from now on.
    /// Without keys, the store fails every read or write of a secret.
    pub fn with_secret_keys(mut self, keys: SecretCipher) -> Self {
        self.store = Arc::new(PgStore::new(self.pool.clone(), Some(Arc::new(keys))));
        self
    }

    /// Applies the migrations the database does not have yet. Safe to run
    /// again and from several processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        schema::migrate(&self.pool).await
    }

    /// Returns the state store.
    pub fn store(&self) -> Arc<PgStore> {
        self.store.clone()
    }

    /// Deletes history older than `older_than` and returns how many rows were
    /// deleted in all tables together. It deletes delivered and dead
    /// deliveries last updated before that time, with their attempts. Then it
    /// deletes events received before it that have no delivery left, and
    /// idempotency keys and rejected records created before it. Pending
    /// deliveries and their events are never deleted.
    ///
    /// Each transaction deletes at most `batch_size` rows of one table (0 is
    /// raised to 1), plus the attempts of the deliveries it deletes, so locks
    /// stay short while the API and the dispatchers keep running.
    pub async fn purge_history(
        &self,
        older_than: OffsetDateTime,
        batch_size: u32,
    ) -> Result<u64, StoreError> {
        retention::purge(&self.pool, older_than, batch_size.max(1)).await
    }

    /// Closes every connection and waits until they are closed. Calls made
    /// through the store afterwards fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Accepts names that need no quoting, so the name can go into
/// `search_path` and `CREATE SCHEMA` as it is.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let mut bytes = schema.bytes();
    let starts_well = bytes
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == b'_');
    let valid = starts_well
        && schema.len() <= MAX_SCHEMA_NAME_LEN
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        let error = InvalidSchemaName(schema.to_owned());
        Err(StoreError::backend(
            "failed to connect to PostgreSQL",
            error,
        ))
    }
}

/// Creates the schema unless it exists. Two processes running
/// `CREATE SCHEMA IF NOT EXISTS` at once can both miss the other's schema and
/// one fails on the catalog's unique index, so this holds the migration lock.
async fn create_schema(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    let mut transaction = pool
        .begin()
        .await
        .map_err(store_failure("begin creating the schema"))?;
    schema::lock_migrations(&mut transaction).await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&mut *transaction)
        .await
        .map_err(|error| StoreError::backend(format!("failed to create schema {schema}"), error))?;
    transaction
        .commit()
        .await
        .map_err(store_failure("commit the schema creation"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_without_quoting_are_accepted() {
        for name in ["hookline", "hl_test_0a9", "_private"] {
            assert!(check_schema_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn schema_names_needing_quotes_are_rejected() {
        let too_long = "a".repeat(MAX_SCHEMA_NAME_LEN + 1);
        for name in [
            "",
            "Hookline",
            "9lives",
            "a-b",
            "a\"; DROP",
            too_long.as_str(),
        ] {
            assert!(check_schema_name(name).is_err(), "{name}");
        }
    }
}
