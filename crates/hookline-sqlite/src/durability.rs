//! Disk sync policy of the writer connection, and scripts: transactions
//! sent to the writer's thread in one round trip.
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
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every
//! statement to it over a channel. The hot path's writes are therefore
//! scripts: one query string with `BEGIN IMMEDIATE`, the statements and
//! `COMMIT`, whose numbered parameters (`?1`, `?2`) all statements share.
//! The writer thread runs a script as one command, so the write lock is
//! held only while SQLite works, never while a tokio task waits its turn
//! to send the next statement.

use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Statement that restores the default sync level after a relaxed script.
const FULL: &str = "PRAGMA synchronous = FULL";

/// NULL arguments bound after a script's own. sqlx binds the unused
/// parameter slots of a statement (say `?1` in a statement that only reads
/// `?2`) by position, counting on from the statements before it. Once that
/// count passes the last argument, sqlx stops binding the statement, so its
/// later parameters would be NULL. The padding keeps the count within the
/// arguments, and an unused slot reads nothing.
const PADDING: usize = 64;

/// Wraps `body` (statements separated by `;`) in a transaction that
/// commits with `synchronous=NORMAL` and leaves the connection at `FULL`.
pub(crate) fn relaxed_script(body: &str) -> String {
    format!("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE; {body}; COMMIT; {FULL}")
}

/// Wraps `body` in a transaction that commits with the writer's default,
/// `synchronous=FULL`.
pub(crate) fn full_script(body: &str) -> String {
    format!("BEGIN IMMEDIATE; {body}; COMMIT")
}

/// Runs scripts on the writer pool and repairs the connection after a
/// script that stopped midway.
///
/// A script that fails (or whose future is dropped) after its `BEGIN`
/// leaves the connection inside its transaction, possibly at `NORMAL`.
/// `unsettled` is set while a script runs and cleared when it finishes. The
/// writer pool's `before_acquire` hook calls [`Scripts::repair`], which
/// rolls such a transaction back and restores `FULL` before anyone else
/// uses the connection. The pool contains one connection, so one flag covers
/// it.
#[derive(Clone, Default)]
pub(crate) struct Scripts {
    unsettled: Arc<AtomicBool>,
}

impl Scripts {
    /// Runs `query`, built from [`relaxed_script`] or [`full_script`], on
    /// the writer and returns the rows of all its statements in order.
    pub(crate) async fn run<'q>(
        &self,
        writer: &SqlitePool,
        mut query: Query<'q, Sqlite, SqliteArguments<'q>>,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        for _ in 0..PADDING {
            query = query.bind(None::<i64>);
        }
        let mut connection = writer.acquire().await?;
        self.unsettled.store(true, Ordering::Release);
        let rows = query.fetch_all(&mut *connection).await?;
        self.unsettled.store(false, Ordering::Release);
        Ok(rows)
    }

    /// The writer pool's `before_acquire` hook: after an unfinished script,
    /// rolls back its transaction and restores `synchronous=FULL`.
    pub(crate) async fn repair(
        &self,
        connection: &mut SqliteConnection,
    ) -> Result<bool, sqlx::Error> {
        if !self.unsettled.load(Ordering::Acquire) {
            return Ok(true);
        }
        // Fails with "no transaction is active" when the script failed
        // before its BEGIN or after its COMMIT, which needs no rollback.
        // Without this rollback, `FULL` below fails inside the open
        // transaction, and the pool replaces the whole connection.
        if let Err(error) = sqlx::query("ROLLBACK").execute(&mut *connection).await {
            tracing::debug!(%error, "No transaction to roll back after an unfinished script");
        }
        sqlx::query(FULL).execute(connection).await?;
        self.unsettled.store(false, Ordering::Release);
        tracing::info!("Rolled back the transaction of an unfinished write script");
        Ok(true)
    }
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
    async fn relaxed_script_commits_and_restores_full() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = crate::SqliteBackend::open(dir.path()).await.expect("open");
        let script = relaxed_script(
            "CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (?1); SELECT v * 2 FROM t",
        );
        let (writer, scripts) = backend.queue.script_writer();
        let rows = scripts
            .run(writer, sqlx::query(&script).bind(21_i64))
            .await
            .expect("script runs");
        let doubled: i64 = sqlx::Row::get(&rows[0], 0);
        assert_eq!(doubled, 42, "rows of the script's SELECT come back");
        let mut connection = backend.writer.acquire().await.expect("acquire");
        assert_eq!(level(&mut connection).await, 2, "FULL is 2");
        let stored: i64 = sqlx::query_scalar("SELECT v FROM t")
            .fetch_one(&mut *connection)
            .await
            .expect("committed row");
        assert_eq!(stored, 21);
    }

    #[tokio::test]
    async fn failed_script_rolls_back_and_restores_full() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = crate::SqliteBackend::open(dir.path()).await.expect("open");
        sqlx::query("CREATE TABLE t (v INTEGER NOT NULL)")
            .execute(&backend.writer)
            .await
            .expect("create table");
        // A temporary table lives as long as its connection, so it shows
        // that the repair kept the writer connection open.
        sqlx::query("CREATE TEMP TABLE marker (v INTEGER)")
            .execute(&backend.writer)
            .await
            .expect("create temporary table");
        // The second insert violates NOT NULL after the first one ran.
        let script = relaxed_script("INSERT INTO t VALUES (1); INSERT INTO t VALUES (NULL)");
        let (writer, scripts) = backend.queue.script_writer();
        let failed = scripts.run(writer, sqlx::query(&script)).await;
        assert!(failed.is_err(), "the NOT NULL violation fails the script");

        let mut connection = backend.writer.acquire().await.expect("acquire");
        assert_eq!(level(&mut connection).await, 2, "FULL is restored");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *connection)
            .await
            .expect("count");
        assert_eq!(count, 0, "the first insert was rolled back");
        let markers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM temp.marker")
            .fetch_one(&mut *connection)
            .await
            .expect("the temporary table of the same connection");
        assert_eq!(markers, 0);
        drop(connection);
        sqlx::query("INSERT INTO t VALUES (3)")
            .execute(&backend.writer)
            .await
            .expect("the writer takes new transactions");
    }
}
