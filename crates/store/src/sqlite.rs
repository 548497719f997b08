//! The SQLite adapter: WAL journal, `synchronous=FULL` (this is money), foreign keys on.
//!
//! Writes go through a pool of exactly one connection and start with `BEGIN IMMEDIATE`, so
//! writers queue inside the process instead of spinning on SQLite's busy handler, and a
//! read-then-write transaction can never fail to upgrade its lock. Other processes (the
//! `admin` commands while a server runs) wait on the busy timeout. Reads use a separate pool
//! and see the last committed state (WAL snapshots).

use crate::OpenError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies the embedded migrations.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| OpenError::Connect(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| OpenError::Migrate(e.to_string()))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        Ok(Self { writer, reader })
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

crate::sql::shared_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    sqlx::SqliteConnection,
    "",
    ""
);
