//! The SQLite adapter: WAL journal, `synchronous=FULL` (this is money), foreign keys on.
//!
//! Writes go through a pool of exactly one connection and start with `BEGIN IMMEDIATE`, so
//! writers queue inside the process instead of spinning on SQLite's busy handler, and a
//! read-then-write transaction can never fail to upgrade its lock. Other processes (the
//! `admin` commands while a server runs) wait on the busy timeout. Reads use a separate pool
//! and see the last committed state (WAL snapshots).
//!
//! The one write connection is precious: if it were ever handed out inside a transaction, every
//! write would fail until a restart. So transactions open in a task of their own
//! ([`crate::detached`]), and the pool checks the connection each time it comes back and before
//! it goes out: one still inside a transaction is closed (rolling it back) and replaced.

use crate::OpenError;
use shared::backend;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqlitePool};
use std::str::FromStr;
use std::time::Duration;
use storefront_app::ports::StoreResult;

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
            // Cheap on the way out (sqlx's own count); thorough on the way back, where an
            // interrupted caller leaves its traces.
            .before_acquire(|conn, _| {
                Box::pin(async move { Ok(!left_in_transaction(conn, "before_acquire")) })
            })
            .after_release(|conn, _| Box::pin(async move { is_clean(conn).await }))
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
        let writer = self.writer.clone();
        crate::detached(async move { writer.begin_with("BEGIN IMMEDIATE").await })
            .await
            .map_err(backend)
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

/// Whether sqlx counts the connection as inside a transaction; if so, says so.
fn left_in_transaction(conn: &SqliteConnection, when: &'static str) -> bool {
    let open = conn.is_in_transaction();
    if open {
        crate::discard_unclean_connection(when);
    }
    open
}

/// Whether a returned write connection may be used again: neither sqlx's transaction count nor
/// SQLite itself (its autocommit flag) says it is inside a transaction.
async fn is_clean(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    if left_in_transaction(conn, "after_release") {
        return Ok(false);
    }
    let autocommit = {
        let mut handle = conn.lock_handle().await?;
        in_autocommit(handle.as_raw_handle())
    };
    if !autocommit {
        crate::discard_unclean_connection("after_release");
    }
    Ok(autocommit)
}

/// SQLite's own answer to "is this connection outside any transaction?".
#[allow(unsafe_code)]
fn in_autocommit(handle: std::ptr::NonNull<libsqlite3_sys::sqlite3>) -> bool {
    // SAFETY: the handle comes from a `LockedSqliteHandle`, so the connection is open and no
    // other thread uses it during the call; sqlite3_get_autocommit only reads a flag of it.
    unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_ptr()) != 0 }
}

/// What the shared SQL (`shared/`) needs to know about this backend.
mod db {
    pub(super) type Adapter = super::SqliteStore;
    pub(super) type Database = sqlx::Sqlite;
    pub(super) type Row = sqlx::sqlite::SqliteRow;
    pub(super) type Connection = sqlx::SqliteConnection;
    /// Appended to the subquery that picks the next job to claim: nothing, the one write
    /// connection already serializes claims.
    pub(super) const JOB_CLAIM_LOCK: &str = "";
    /// Appended to the read of an agent before its budgets are checked: nothing, the one write
    /// connection already serializes budget checks.
    pub(super) const ROW_LOCK: &str = "";
    /// Appended to the subquery that picks deliveries to claim: nothing, as for jobs.
    pub(super) const DELIVERY_CLAIM_LOCK: &str = "";
    /// An event's position in the log: one more than the last. The one writer makes insert
    /// order commit order.
    pub(super) const NEXT_EVENT_POSITION: &str =
        "(SELECT COALESCE(MAX(position), 0) + 1 FROM events)";
    /// Taken before an account's events are written: nothing, the one writer already keeps
    /// insert order and commit order the same.
    pub(super) const EVENT_ORDER_LOCK: Option<&str> = None;
}

// Compiled once per backend on purpose: the same SQL over this backend's `db` types.
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_app::ports::SettingsStore;

    /// The state the outage left behind — the one write connection back in the pool inside a
    /// transaction nothing will end — no longer stops writes: the pool replaces the connection.
    #[tokio::test]
    async fn a_write_connection_left_inside_a_transaction_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let now = chrono::Utc::now();

        // As sqlx's `begin_with` leaves it when dropped after `BEGIN`: a transaction sqlx counts
        // and SQLite has open, with no guard left to end it.
        {
            let mut conn = store.writer.acquire().await.unwrap();
            let guard = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
            std::mem::forget(guard);
        }
        store.probe_write(now).await.expect("writes work again");

        // A transaction SQLite has open but sqlx never counted (a raw `BEGIN`).
        {
            let mut conn = store.writer.acquire().await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        store.probe_write(now).await.expect("writes work again");
    }
}
