//! Embedded backend of Hookline: the state store and the durable delivery
//! queue in one SQLite file, `hookline.db`, under a data directory.
//!
//! All writes go through one connection, so writers queue in the process
//! instead of failing with `SQLITE_BUSY`. Reads use a small pool of other
//! connections, which WAL mode lets run next to the writer. With
//! `synchronous=FULL`, SQLite syncs the WAL to disk on every commit, so a
//! write that returned `Ok` survives the process being killed. A test
//! checks this with a child process that aborts after its writes. The
//! delivery path's bookkeeping skips that sync (module `durability`).
//!
//! Queue rows hold only the delivery id and its schedule. The payload is
//! stored once per event and joined in when a task is received.

mod codec;
mod durability;
mod migration_3;
mod migration_4;
mod migration_5;
mod migration_6;
mod migration_7;
mod migration_8;
mod migration_9;
mod queue;
mod schema;
mod secret_key;
mod shared;
mod store;
mod tasks;

pub use queue::SqliteQueue;
pub use secret_key::SECRET_KEY_FILE;
pub use shared::SqliteShared;
pub use store::SqliteStore;

use hookline_core::cipher::SecretCipher;
use hookline_core::store::StoreError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "hookline.db";

/// How long a connection waits for a lock held by another process before it
/// fails with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the read pool.
const READ_CONNECTIONS: u32 = 4;

/// Creates the writer's temporary table of the events a batch insert adds
/// (module `store::events`). It lives in memory (`temp_store`) and only
/// this connection can read it.
const NEW_EVENTS_TABLE: &str =
    "CREATE TEMP TABLE IF NOT EXISTS new_events (id TEXT PRIMARY KEY) WITHOUT ROWID";

/// Page cache of each connection in KiB (SQLite reads a negative
/// `cache_size` as KiB).
const CACHE_SIZE_KIB: &str = "-32768";

/// The opened database with its writer and reader pools.
pub struct SqliteBackend {
    store: Arc<SqliteStore>,
    queue: Arc<SqliteQueue>,
    writer: SqlitePool,
    reader: SqlitePool,
    /// Held open to keep the exclusive lock of [`Self::open_exclusive`].
    _lock: Option<std::fs::File>,
}

/// Name of the lock file that marks a data directory as in use.
pub const LOCK_FILE: &str = "hookline.lock";

impl SqliteBackend {
    /// Opens `hookline.db` under `data_dir`, creating the directory and the
    /// file when they are missing, and applies the schema. Signing secrets
    /// are encrypted with the key in `<data_dir>/secret-key`, which is
    /// generated when it does not exist.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_keys(data_dir, None).await
    }

    /// Opens like [`SqliteBackend::open`], with the secret keys `keys`
    /// instead of the key file when they are given. Fails when the newest
    /// application's secret does not decrypt with them, and re-encrypts
    /// secrets stored in plain text or under an older key.
    pub async fn open_with_keys(
        data_dir: &Path,
        keys: Option<SecretCipher>,
    ) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(data_dir).await.map_err(|error| {
            let message = format!("failed to create data directory {}", data_dir.display());
            StoreError::backend(message, error)
        })?;
        let path = data_dir.join(DATABASE_FILE);

        let scripts = durability::Scripts::default();
        let writer = connect_writer(&path, &scripts).await?;
        schema::migrate(&writer).await?;
        let reader = connect_reader(&path).await?;
        let keys = match keys {
            Some(keys) => keys,
            None => secret_key::load_or_generate(data_dir)?,
        };
        let store = SqliteStore::new(
            writer.clone(),
            reader.clone(),
            scripts.clone(),
            Arc::new(keys),
        );
        store.verify_secret_key().await?;
        store.reencrypt_secrets().await?;
        tracing::info!(path = %path.display(), "Opened SQLite database");

        Ok(Self {
            store: Arc::new(store),
            queue: Arc::new(SqliteQueue::new(writer.clone(), reader.clone(), scripts)),
            writer,
            reader,
            _lock: None,
        })
    }

    /// Opens the database for the only process that may use it, as
    /// `hookline serve` does. It takes an exclusive lock on `hookline.lock`,
    /// so a second process on the same directory fails at once. Leases left
    /// by a previous process that was killed are released, so their tasks
    /// are sent again now instead of after the visibility timeout.
    pub async fn open_exclusive(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_exclusive_with_keys(data_dir, None).await
    }

    /// Opens like [`SqliteBackend::open_exclusive`] with the secret keys of
    /// [`SqliteBackend::open_with_keys`].
    pub async fn open_exclusive_with_keys(
        data_dir: &Path,
        keys: Option<SecretCipher>,
    ) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(data_dir).await.map_err(|error| {
            let message = format!("failed to create data directory {}", data_dir.display());
            StoreError::backend(message, error)
        })?;
        let lock = lock_data_dir(data_dir)?;
        let mut backend = Self::open_with_keys(data_dir, keys).await?;
        backend._lock = Some(lock);
        let released = backend
            .queue
            .release_all_leases()
            .await
            .map_err(|error| StoreError::backend("failed to release leases", error))?;
        if released > 0 {
            tracing::info!(
                released,
                "Released leases of tasks in flight when the previous process stopped"
            );
        }
        Ok(backend)
    }

    /// Returns the state store.
    pub fn store(&self) -> Arc<SqliteStore> {
        self.store.clone()
    }

    /// Returns the delivery queue.
    pub fn queue(&self) -> Arc<SqliteQueue> {
        self.queue.clone()
    }

    /// Returns the writes that span the store and the queue.
    pub fn shared(&self) -> Arc<SqliteShared> {
        Arc::new(SqliteShared {
            store: self.store.clone(),
            queue: self.queue.clone(),
        })
    }

    /// Closes every connection and waits until they are closed. Calls made
    /// through the store or the queue afterwards fail.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| {
            StoreError::backend(format!("failed to open {}", path.display()), error)
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::backend(
            format!(
                "another process is using {}; stop it or set another storage.data_dir",
                data_dir.display()
            ),
            std::io::Error::from(std::io::ErrorKind::WouldBlock),
        )),
        Err(std::fs::TryLockError::Error(error)) => Err(StoreError::backend(
            format!("failed to lock {}", path.display()),
            error,
        )),
    }
}

/// Results that the writer's thread may pass on before the task that runs
/// the script reads them. sqlx's default of 50 made the thread stop within
/// an ingest script, which returns a row per event, until that task was
/// scheduled again, and the writer connection stayed held meanwhile. Every
/// script's rows end up in one `Vec` anyway, so the larger buffer costs no
/// memory beyond them.
const WRITER_ROW_BUFFER: usize = 4096;

/// Options shared by the writer and the readers.
fn base_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("cache_size", CACHE_SIZE_KIB)
        .pragma("temp_store", "memory")
}

async fn connect_writer(
    path: &Path,
    scripts: &durability::Scripts,
) -> Result<SqlitePool, StoreError> {
    let scripts = scripts.clone();
    let options = base_options(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .row_buffer_size(WRITER_ROW_BUFFER);
    // The connection lives in this process, so testing it before each use
    // would only cost a round trip to its thread.
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::query(NEW_EVENTS_TABLE).execute(connection).await?;
                Ok(())
            })
        })
        .before_acquire(move |connection, _| {
            let scripts = scripts.clone();
            Box::pin(async move { scripts.repair(connection).await })
        })
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(|error| {
            let message = format!("failed to open database {} for writing", path.display());
            StoreError::backend(message, error)
        })
}

/// Opens the read pool. `query_only` makes an accidental write on a reader
/// fail instead of competing with the writer for the lock.
async fn connect_reader(path: &Path) -> Result<SqlitePool, StoreError> {
    let options = base_options(path).pragma("query_only", "ON");
    SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(|error| {
            let message = format!("failed to open database {} for reading", path.display());
            StoreError::backend(message, error)
        })
}
