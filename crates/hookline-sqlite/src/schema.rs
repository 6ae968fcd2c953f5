//! The database schema and its migrations, applied in order when the
//! backend opens. `schema_version` records each applied version, so opening
//! an up-to-date database changes nothing.

use crate::codec::store_failure;
use crate::migration_3::VERSION_3;
use crate::migration_4::VERSION_4;
use crate::migration_5::VERSION_5;
use crate::migration_6::VERSION_6;
use crate::migration_7::VERSION_7;
use crate::migration_8::VERSION_8;
use crate::migration_9::VERSION_9;
use hookline_core::store::StoreError;
use sqlx::SqlitePool;

/// Migrations by version, oldest first. A released migration never changes,
/// so a new schema change is a new entry.
///
/// Each version is applied unless `schema_version` lists it, so a version
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

/// The first schema. All times are Unix milliseconds. Tables with small rows
/// and a text primary key are `WITHOUT ROWID`, so each row is stored once, in
/// key order. `events` keeps its rowid because payloads make its rows large.
const VERSION_1: &str = r#"
CREATE TABLE products (
    name TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- NOTE: the signing secret is stored as its whsec_ text; encryption at rest is not implemented yet.
CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    product TEXT NOT NULL REFERENCES products (name),
    plan TEXT NOT NULL,
    webhook_url TEXT NOT NULL,
    secret TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'disabled')),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX applications_by_product ON applications (product);

-- enqueued is 1 once every task of the event is in the queue.
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    product TEXT NOT NULL REFERENCES products (name),
    idempotency_key TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    enqueued INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_not_enqueued ON events (received_at) WHERE enqueued = 0;

-- The deduplication table. Rows expire, events stay, so event_id has no
-- foreign key: keys are inserted before their events in the same transaction.
CREATE TABLE idempotency_keys (
    product TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (product, idempotency_key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- attempts counts every recorded attempt, including those before a revive.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id),
    application_id TEXT NOT NULL REFERENCES applications (id),
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX deliveries_by_application ON deliveries (application_id, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_dead ON deliveries (updated_at, id) WHERE state = 'dead';

-- A revived delivery numbers its attempts from 1 again, so the rowid, not
-- (delivery_id, number), orders and identifies attempts.
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    result_kind TEXT NOT NULL CHECK (result_kind IN ('response', 'error')),
    status INTEGER,
    error_class TEXT,
    error_message TEXT,
    response_excerpt TEXT,
    response_truncated INTEGER NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);

CREATE TABLE rejected_records (
    id INTEGER PRIMARY KEY,
    product TEXT,
    reason TEXT NOT NULL,
    kafka_topic TEXT,
    kafka_partition INTEGER,
    kafka_offset INTEGER,
    payload BLOB,
    received_at INTEGER NOT NULL
);

-- visible_at is due_at while the task is not leased, and the lease expiry
-- while it is; a task can be received when visible_at <= now. lease_token
-- stays set after a lease expires until the next receive replaces it.
CREATE TABLE queue (
    delivery_id TEXT PRIMARY KEY REFERENCES deliveries (id),
    due_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    lease_token INTEGER,
    attempts_made INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX queue_by_visibility ON queue (visible_at);
"#;

/// Plans and usage metering. `rate_limit` is the plan's `limit` (a keyword
/// in SQL); NULL means unlimited. `monthly_fee` is a canonical decimal
/// string. The usage tables hold totals that dispatchers add to; their
/// application ids have no foreign key, so metering never blocks on a
/// missing row.
const VERSION_2: &str = r#"
CREATE TABLE plans (
    name TEXT PRIMARY KEY,
    rate_limit INTEGER CHECK (rate_limit IS NULL OR rate_limit > 0),
    period TEXT NOT NULL CHECK (period IN ('second', 'minute', 'hour', 'day')),
    over_limit TEXT NOT NULL CHECK (over_limit IN ('defer', 'dead_letter')),
    monthly_fee TEXT NOT NULL,
    currency TEXT NOT NULL,
    trial_days INTEGER NOT NULL CHECK (trial_days >= 0),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO plans
    (name, rate_limit, period, over_limit, monthly_fee, currency, trial_days, created_at, updated_at)
SELECT seed.name, seed.rate_limit, 'hour', 'defer', '0', 'USD', 0, now.millis, now.millis
FROM (SELECT 'free' AS name, 100 AS rate_limit UNION ALL SELECT 'paid', NULL) AS seed,
     (SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) AS millis) AS now;

CREATE TABLE usage_hourly (
    application_id TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    failed_attempts INTEGER NOT NULL,
    throttled INTEGER NOT NULL,
    dead_lettered INTEGER NOT NULL,
    latency_ms_sum INTEGER NOT NULL,
    latency_count INTEGER NOT NULL,
    latency_ms_max INTEGER NOT NULL,
    PRIMARY KEY (application_id, hour_start)
) WITHOUT ROWID;
CREATE INDEX usage_hourly_by_hour ON usage_hourly (hour_start);

-- One row per application and rate-limit window in which notifications were throttled.
CREATE TABLE limit_windows (
    application_id TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    plan TEXT NOT NULL,
    rate_limit INTEGER NOT NULL,
    throttled INTEGER NOT NULL,
    PRIMARY KEY (application_id, window_start, window_end)
) WITHOUT ROWID;
CREATE INDEX limit_windows_by_start ON limit_windows (window_start);
"#;

/// A database written by a newer release, whose schema this build cannot use.
#[derive(Debug, thiserror::Error)]
#[error("database schema version {found} is newer than the latest this build knows ({latest}); upgrade Hookline")]
struct NewerSchema {
    found: i64,
    latest: i64,
}

/// Applies every migration newer than the database's version, each in its
/// own transaction.
pub(crate) async fn migrate(writer: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .execute(writer)
        .await
        .map_err(store_failure("create the schema_version table"))?;

    for &(version, sql) in MIGRATIONS {
        apply(writer, version, sql).await?;
    }
    Ok(())
}

/// Applies one migration unless the database already has it. The version is
/// read inside the write transaction, so two processes opening the same file
/// cannot both apply it.
async fn apply(writer: &SqlitePool, version: i64, sql: &str) -> Result<(), StoreError> {
    let mut transaction = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_failure("begin a schema migration"))?;
    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *transaction)
        .await
        .map_err(store_failure("read the schema version"))?;
    let current = current.unwrap_or(0);

    let latest = MIGRATIONS.last().map_or(0, |&(latest, _)| latest);
    if current > latest {
        let error = NewerSchema {
            found: current,
            latest,
        };
        return Err(StoreError::backend("failed to open the database", error));
    }
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT version FROM schema_version WHERE version = ?1")
            .bind(version)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(store_failure("read the applied schema versions"))?;
    if applied.is_some() {
        return Ok(());
    }

    sqlx::raw_sql(sql)
        .execute(&mut *transaction)
        .await
        .map_err(store_failure("apply a schema migration"))?;
    sqlx::query("INSERT INTO schema_version (version) VALUES (?1)")
        .bind(version)
        .execute(&mut *transaction)
        .await
        .map_err(store_failure("record the schema version"))?;
    transaction
        .commit()
        .await
        .map_err(store_failure("commit a schema migration"))?;
    tracing::info!(version, "Applied database schema migration");
    Ok(())
}
