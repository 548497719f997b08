//! Helpers every aggregate uses: error mapping, commits, column conversions, and the
//! one-row lookup.

use serde::de::DeserializeOwned;
use storefront_app::page::PageRequest;
use storefront_app::ports::{StoreError, StoreResult};
use storefront_domain::timestamp::Timestamp;

use super::db;
use super::rows::Rows;

/// Statements built with their binds. On SQLite several of them, separated by `;`, go to the
/// connection's thread in one hand-off (`db::CHAINS_STATEMENTS`); binds are numbered in order
/// across them.
pub(crate) type Statements<'a> = sqlx::QueryBuilder<'a, db::Database>;

/// Runs built statements inside the caller's transaction; the rows they changed.
pub(super) async fn execute(conn: &mut db::Connection, mut q: Statements<'_>) -> StoreResult<u64> {
    Ok(q.build()
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected())
}

/// `count` bind placeholders from `$first` on, comma-separated, for an `IN (...)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A failed statement as the port reports it: a unique violation is a `Conflict` the use-case
/// answers; anything else is counted by kind and reported as `Backend`.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error() {
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_owned());
        }
    }
    crate::count_failure(crate::failure_kind(&e));
    StoreError::Backend(e.to_string())
}

pub(super) fn corrupt(what: &str) -> StoreError {
    crate::count_failure("unreadable");
    StoreError::Backend(format!("unreadable {what} in the database"))
}

/// Commits the backend's way (SQLite: the unit's batch; PostgreSQL: the transaction), in a task
/// of its own: once a use-case reaches its commit, the commit happens and its outcome is settled
/// even if the caller is dropped at this `.await` (see `crate::detached`).
pub(super) async fn commit(tx: db::Transaction) -> StoreResult<()> {
    db::commit(tx).await.map_err(backend)
}

pub(super) fn parse_ts(raw: &str) -> StoreResult<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| corrupt("timestamp"))
}

pub(super) fn parse_json<T: DeserializeOwned>(raw: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|_| corrupt("JSON column"))
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

impl db::Adapter {
    /// The one row `sql` finds for `key` (its only parameter), mapped.
    pub(super) async fn find_one<T>(
        &self,
        sql: &str,
        key: &str,
        map: fn(&db::Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(self.reader())
            .await
            .map_err(backend)?;
        row.as_ref().map(map).transpose()
    }

    /// What `sql` finds for `params` (bound as `$1`, `$2`, ...), read by `read`. For the
    /// hottest reads: SQLite answers them on the calling thread when it can do so at once (see
    /// `db::read_inline`); otherwise, and on PostgreSQL, they go through the reader pool.
    /// `read` may run twice (an inline attempt that had to give way, then the pool), so it
    /// keeps nothing between calls.
    pub(super) async fn read_rows<R>(
        &self,
        sql: &str,
        params: &[&str],
        read: impl Fn(&mut dyn Rows) -> StoreResult<R>,
    ) -> StoreResult<R> {
        if let Some(answer) = db::read_inline(self, sql, params, &read) {
            return answer;
        }
        self.read_rows_pooled(sql, params, read).await
    }

    /// [`Self::read_rows`] always through the reader pool: for a read that may walk many rows,
    /// which would hold a runtime thread inline.
    pub(super) async fn read_rows_pooled<R>(
        &self,
        sql: &str,
        params: &[&str],
        read: impl Fn(&mut dyn Rows) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let mut query = sqlx::query(sql);
        for param in params {
            query = query.bind(*param);
        }
        let rows = query.fetch_all(self.reader()).await.map_err(backend)?;
        read(&mut rows.iter())
    }
}

/// The statement that reads one page of `table`'s rows of the account `$1` that also match
/// `filters` (`AND ...`, may be empty, numbering the values already in `params`), newest first,
/// and one row more (which tells whether another page follows). The page's cursor, if any, is
/// added to `params` and written as `id < $n` only then: `$n IS NULL OR id < $n` would be a filter,
/// and a deep page would walk every newer row. The page size is written in, a number this
/// function formats: it is known to the planner, and every parameter is text (inline reads).
pub(crate) fn newest_first<'p>(
    table: &str,
    filters: &str,
    page: &'p PageRequest,
    params: &mut Vec<&'p str>,
) -> String {
    let (account, order) = db::ACCOUNT_PAGE;
    let mut sql = format!("SELECT * FROM {table} WHERE {account}{filters}");
    if let Some(cursor) = page.cursor.as_deref() {
        params.push(cursor);
        sql.push_str(&format!(" AND id < ${}", params.len()));
    }
    sql.push_str(&format!(
        " ORDER BY {order} LIMIT {}",
        u64::from(page.limit) + 1
    ));
    sql
}
