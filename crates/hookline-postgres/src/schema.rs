//! The database schema and its migrations. `schema_migrations` records each
//! applied version, so migrating an up-to-date database changes nothing.
//! All migrations run in one transaction under an advisory lock, so several
//! processes may migrate the same database at once.

use crate::codec::store_failure;
use crate::migration_3::VERSION_3;
use crate::migration_4::VERSION_4;
use crate::migration_5::VERSION_5;
use crate::migration_6::VERSION_6;
use crate::migration_7::VERSION_7;
use crate::migration_8::VERSION_8;
use crate::migration_9::VERSION_9;
use hookline_core::store::StoreError;
use sqlx::{PgConnection, PgPool};

/// Migrations by version, oldest first. A released migration never changes,
/// so a new schema change is a new entry.
///
/// Each version is applied unless `schema_migrations` lists it, so a version
/// added below a later one that a database already has is still applied.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, VERSION_1),
    (2, VERSION_2),
    (3, VERSION_3),
    (4, VERSION_4),
    (5, VERSION_5),
    (6, VERSION_6),
    (7, VERSION_7),
    (8, VERSION_8),
    (9, VERSION_9),
];

/// Key of the transaction-level advisory lock that serializes migrations and
/// schema creation: the ASCII bytes of `hookline` as a big-endian integer.
/// It is one key for the whole database, so migrations of different schemas
/// in one database also wait for each other.
pub(crate) const MIGRATION_LOCK_KEY: i64 = 0x686f_6f6b_6c69_6e65;

/// The first schema. Ids are prefixed text (`evt_…`, `dlv_…`); their UUIDv7
/// part sorts by creation time, so ordering by id is ordering by age.
const VERSION_1: &str = r#"
CREATE TABLE products (
    name text PRIMARY KEY,
    topic text NOT NULL,
    content_type text NOT NULL,
    created_at timestamptz NOT NULL
);

-- NOTE: secret is the whsec_ signing secret in plain text; it is not encrypted at rest.
CREATE TABLE applications (
    id text PRIMARY KEY,
    name text NOT NULL,
    product text NOT NULL REFERENCES products (name),
    plan text NOT NULL,
    webhook_url text NOT NULL,
    secret text NOT NULL,
    state text NOT NULL CHECK (state IN ('active', 'disabled')),
    created_at timestamptz NOT NULL
);
CREATE INDEX applications_by_product ON applications (product, created_at, id);

-- The payload is stored once per event, however many deliveries it has.
-- enqueued is true once every task of the event is in the queue.
CREATE TABLE events (
    id text PRIMARY KEY,
    product text NOT NULL REFERENCES products (name),
    idempotency_key text NOT NULL,
    webhook_id text NOT NULL,
    content_type text NOT NULL,
    payload bytea NOT NULL,
    source jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    enqueued boolean NOT NULL DEFAULT false
);
CREATE INDEX events_not_enqueued ON events (received_at, id) WHERE NOT enqueued;
CREATE INDEX events_by_age ON events (received_at, id);

-- The deduplication table. Keys expire before their events, so event_id has
-- no foreign key.
CREATE TABLE idempotency_keys (
    product text NOT NULL,
    idempotency_key text NOT NULL,
    event_id text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (product, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- attempts is the number of attempts ever recorded, so a revive does not reset it.
CREATE TABLE deliveries (
    id text PRIMARY KEY,
    event_id text NOT NULL REFERENCES events (id),
    application_id text NOT NULL REFERENCES applications (id),
    state text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX deliveries_by_application ON deliveries (application_id, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_dead ON deliveries (updated_at, id) WHERE state = 'dead';
CREATE INDEX deliveries_finished ON deliveries (updated_at, id) WHERE state <> 'pending';

-- Attempt numbers restart at 1 after a revive, so (delivery_id, number) is not
-- unique. The generated id identifies an attempt and orders a delivery's attempts.
CREATE TABLE attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id text NOT NULL REFERENCES deliveries (id),
    number integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms bigint NOT NULL,
    result_kind text NOT NULL CHECK (result_kind IN ('response', 'error')),
    status integer,
    error_class text,
    error_message text,
    response_excerpt text,
    response_truncated boolean NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);

CREATE TABLE rejected_records (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product text,
    reason text NOT NULL,
    kafka_topic text,
    kafka_partition integer,
    kafka_offset bigint,
    payload bytea,
    received_at timestamptz NOT NULL
);
CREATE INDEX rejected_records_by_age ON rejected_records (received_at, id);
"#;

/// Plans and usage metering. `rate_limit` is the plan's `limit` (a keyword
/// in SQL); NULL means unlimited. `monthly_fee` is a canonical decimal
/// string. The usage tables hold totals that dispatchers add to; their
/// application ids have no foreign key, so metering never blocks on a
/// missing row.
const VERSION_2: &str = r#"
CREATE TABLE plans (
    name text PRIMARY KEY,
    rate_limit bigint CHECK (rate_limit IS NULL OR rate_limit > 0),
    period text NOT NULL CHECK (period IN ('second', 'minute', 'hour', 'day')),
    over_limit text NOT NULL CHECK (over_limit IN ('defer', 'dead_letter')),
    monthly_fee text NOT NULL,
    currency text NOT NULL,
    trial_days integer NOT NULL CHECK (trial_days >= 0),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

INSERT INTO plans
    (name, rate_limit, period, over_limit, monthly_fee, currency, trial_days, created_at, updated_at)
VALUES
    ('free', 100, 'hour', 'defer', '0', 'USD', 0, now(), now()),
    ('paid', NULL, 'hour', 'defer', '0', 'USD', 0, now(), now());

CREATE TABLE usage_hourly (
    application_id text NOT NULL,
    hour_start timestamptz NOT NULL,
    delivered bigint NOT NULL,
    failed_attempts bigint NOT NULL,
    throttled bigint NOT NULL,
    dead_lettered bigint NOT NULL,
    latency_ms_sum bigint NOT NULL,
    latency_count bigint NOT NULL,
    latency_ms_max bigint NOT NULL,
    PRIMARY KEY (application_id, hour_start)
);
CREATE INDEX usage_hourly_by_hour ON usage_hourly (hour_start);

-- One row per application and rate-limit window in which notifications were throttled.
CREATE TABLE limit_windows (
    application_id text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    plan text NOT NULL,
    rate_limit bigint NOT NULL,
    throttled bigint NOT NULL,
    PRIMARY KEY (application_id, window_start, window_end)
);
CREATE INDEX limit_windows_by_start ON limit_windows (window_start);
"#;

/// A database migrated by a newer release, whose schema this build cannot use.
#[derive(Debug, thiserror::Error)]
#[error("database schema version {found} is newer than the latest this build knows ({latest}); upgrade Hookline")]
struct NewerSchema {
    found: i64,
    latest: i64,
}

/// Applies every migration newer than the database's version in one
/// transaction, holding [`MIGRATION_LOCK_KEY`] until it commits.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut transaction = pool
        .begin()
        .await
        .map_err(store_failure("begin the schema migration"))?;
    lock_migrations(&mut transaction).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations ( \
           version bigint PRIMARY KEY, \
           applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *transaction)
    .await
    .map_err(store_failure("create the schema_migrations table"))?;

    let current = current_version(&mut transaction).await?;
    let latest = MIGRATIONS.last().map_or(0, |&(latest, _)| latest);
    if current > latest {
        let error = NewerSchema {
            found: current,
            latest,
        };
        return Err(StoreError::backend("failed to migrate the database", error));
    }

    let done = applied_versions(&mut transaction).await?;
    let mut applied = Vec::new();
    for &(version, sql) in MIGRATIONS
        .iter()
        .filter(|(version, _)| !done.contains(version))
    {
        apply(&mut transaction, version, sql).await?;
        applied.push(version);
    }
    transaction
        .commit()
        .await
        .map_err(store_failure("commit the schema migration"))?;
    for version in applied {
        tracing::info!(version, "Applied database schema migration");
    }
    Ok(())
}

/// Takes the migration lock for the rest of the transaction, waiting while
/// another process holds it.
pub(crate) async fn lock_migrations(connection: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *connection)
        .await
        .map_err(store_failure("take the schema migration lock"))?;
    Ok(())
}

async fn current_version(connection: &mut PgConnection) -> Result<i64, StoreError> {
    let current: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
        .fetch_one(&mut *connection)
        .await
        .map_err(store_failure("read the schema version"))?;
    Ok(current.unwrap_or(0))
}

async fn applied_versions(connection: &mut PgConnection) -> Result<Vec<i64>, StoreError> {
    sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *connection)
        .await
        .map_err(store_failure("read the applied schema versions"))
}

async fn apply(connection: &mut PgConnection, version: i64, sql: &str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql)
        .execute(&mut *connection)
        .await
        .map_err(store_failure("apply a schema migration"))?;
    sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
        .bind(version)
        .execute(&mut *connection)
        .await
        .map_err(store_failure("record the schema version"))?;
    Ok(())
}
