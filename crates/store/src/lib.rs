//! sqlx adapters of the store port: SQLite (the embedded default) and PostgreSQL (several
//! replicas on one database). The database URL selects the adapter; both run the same SQL
//! (`shared/`, compiled into each adapter's module).

mod append;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;
use storefront_app::ports::Store;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("could not open the database: {0}")]
    Connect(String),
    #[error("could not apply migrations: {0}")]
    Migrate(String),
}

/// Opens the store a URL names and applies its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(OpenError::UnsupportedUrl(redact_url(url)))
    }
}

/// A URL fit for logs and error messages: any password is replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Runs one database step (opening or committing a transaction) in a task of its own, so a
/// caller dropped at an `.await` — a client that disconnected, a timeout — cannot interrupt it
/// halfway. sqlx's SQLite `begin_with` is not drop-safe: dropped after `BEGIN` is acknowledged, it
/// leaves the connection inside a transaction with no guard to end it, and every later `begin`
/// on that connection fails. Here the step always finishes; if nobody waits for its result, the
/// result is dropped inside the task, and a transaction it opened is rolled back there.
pub(crate) async fn detached<T: Send + 'static>(
    step: impl std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> Result<T, sqlx::Error> {
    match tokio::spawn(step).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime that is shutting down cancels the task.
        Err(_) => Err(sqlx::Error::PoolClosed),
    }
}

/// Counts a storage failure by kind (`storefront_store_failures_total{kind}` on `/metrics`), so
/// an operator sees a failing write path without reading logs.
pub(crate) fn count_failure(kind: &'static str) {
    metrics::counter!("storefront_store_failures_total", "kind" => kind).increment(1);
}

/// A stable, low-cardinality name for what went wrong.
pub(crate) fn failure_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match (code.parse::<i64>().ok().map(|c| c & 0xff), code.as_ref()) {
                // SQLITE_BUSY, SQLITE_LOCKED; PostgreSQL's lock_not_available.
                (Some(5 | 6), _) | (_, "55P03") => "busy",
                // SQLITE_FULL; PostgreSQL's disk_full.
                (Some(13), _) | (_, "53100") => "disk_full",
                // SQLITE_READONLY; PostgreSQL's read_only_sql_transaction.
                (Some(8), _) | (_, "25006") => "read_only",
                _ => "database",
            }
        }
        sqlx::Error::PoolTimedOut => "pool_timeout",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "io",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::InvalidSavePointStatement | sqlx::Error::BeginFailed => "transaction_state",
        sqlx::Error::WorkerCrashed => "worker_crashed",
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_) => "decode",
        _ => "other",
    }
}

/// Counts and logs a pooled connection found inside a transaction: it is closed (which rolls
/// the transaction back) instead of being handed out again.
pub(crate) fn discard_unclean_connection(when: &'static str) {
    count_failure("unclean_connection");
    tracing::warn!(
        when,
        "a database connection was left inside a transaction; closing it (the transaction is rolled back) and opening a fresh one"
    );
}
