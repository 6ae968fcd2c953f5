//! Disk sync policy of the writer connection.
//!
//! The writer connection runs with `synchronous=FULL`: a commit returns
//! after the write-ahead log is synced, so it survives a power failure.
//! Accepted events, applications, plans and every other write the admin API
//! or the portal confirms are written this way.
//!
//! The delivery path's own bookkeeping runs with `synchronous=NORMAL`
//! instead: queue leases and settlements, enqueue marks, attempt records
//! and usage totals. Their commits return once the log is written, without
//! the sync, which took about 1.5 ms on the virtual disk of the benchmark
//! machine and happened several times per batch. The next `FULL` commit or
//! checkpoint syncs them with its own frames.
//!
//! A crash of the process loses none of these writes, because the log is
//! written before a commit returns. A power failure or kernel crash can roll
//! back the last of them, never an accepted event: the delivery is then
//! sent again with the same `webhook-id` (at-least-once), and the usage
//! totals of that moment can undercount.

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

/// Statement that restores the default on every connection taken from the
/// writer pool, so an interrupted relaxed write never leaves it behind.
pub(crate) const FULL: &str = "PRAGMA synchronous = FULL";

const NORMAL: &str = "PRAGMA synchronous = NORMAL";

/// Takes the writer connection with `synchronous=NORMAL` for one write.
pub(crate) async fn relaxed(writer: &SqlitePool) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
    let mut connection = writer.acquire().await?;
    sqlx::query(NORMAL).execute(&mut *connection).await?;
    Ok(connection)
}

/// Sets `synchronous=FULL` on a connection taken from the writer pool.
pub(crate) async fn restore_full(connection: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    sqlx::query(FULL).execute(connection).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn level(connection: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(connection)
            .await
            .expect("read synchronous")
    }

    #[tokio::test]
    async fn writer_is_full_again_after_a_relaxed_write() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = crate::SqliteBackend::open(dir.path()).await.expect("open");
        {
            let mut connection = relaxed(&backend.writer).await.expect("relaxed");
            assert_eq!(level(&mut connection).await, 1, "NORMAL is 1");
        }
        let mut connection = backend.writer.acquire().await.expect("acquire");
        assert_eq!(level(&mut connection).await, 2, "FULL is 2");
    }
}
