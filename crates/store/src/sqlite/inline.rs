//! The hottest SQLite reads, answered on the thread that asks.
//!
//! sqlx runs each SQLite connection on a thread of its own, so every query is a hand-off to that
//! thread and an answer back: two wake-ups and two context switches. For a read of one row by
//! its key, which SQLite itself answers in microseconds, the hand-offs were most of the cost: in
//! a profile of `GET /orders/{id}` (docs/benchmarks.md, "Issue 19, seventh steps") a third of
//! the server's CPU went to the scheduler and futexes. So the reads that agents repeat most (an
//! order by id; an agent with its rules, before every check and agent-key order) run here, on a
//! connection of this module's own, where the use-case runs. They hold that thread for as long as
//! the read takes — an index lookup of a row or a handful — which is less than the hand-off did.
//!
//! A read never waits here: the connections have no busy timeout, so a database that is locked
//! for the moment (a migration, WAL recovery) answers `SQLITE_BUSY` at once and the read goes to
//! sqlx's reader pool, whose threads may wait. Reads see the last committed state, as the pool's
//! do (WAL snapshots).

use super::shared::rows::{Columns, Rows};
use fallible_streaming_iterator::FallibleStreamingIterator;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use storefront_app::ports::{StoreError, StoreResult};

/// Connections kept for the next reads; a read that finds none opens one. Reads run on the
/// runtime's worker threads, so about as many run at once as there are cores.
const KEPT: usize = 8;

pub(crate) struct InlineReads {
    /// The database file; `None` for an in-memory database, which other connections cannot
    /// open (its reads all go to the pool).
    file: Option<PathBuf>,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReads {
    pub(crate) fn new(file: &Path) -> Self {
        let name = file.to_string_lossy();
        let in_memory = name.is_empty() || name == ":memory:" || name.starts_with("file:");
        Self {
            file: (!in_memory).then(|| file.to_owned()),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Whether the database is a file other connections can open.
    pub(crate) fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Runs `sql` with `params` bound as `$1`, `$2`, ... and hands its rows to `read`; `None`
    /// when the database could not be read at once (then nothing `read` produced is kept).
    pub(crate) fn read<R>(
        &self,
        sql: &str,
        params: &[&str],
        read: &dyn Fn(&mut dyn Rows) -> StoreResult<R>,
    ) -> Option<StoreResult<R>> {
        let file = self.file.as_deref()?;
        let taken = self.lock().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => match open(file) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "inline read connection did not open; reading through the pool");
                    return None;
                }
            },
        };
        let answer = run(&conn, sql, params, read);
        let mut idle = self.lock();
        if idle.len() < KEPT {
            idle.push(conn);
        }
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Never wait on this thread (see the module's comment).
    conn.busy_timeout(Duration::ZERO)?;
    // A page's statement carries its page size, so a few pages' sizes and filters make as many
    // statements (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn run<R>(
    conn: &Connection,
    sql: &str,
    params: &[&str],
    read: &dyn Fn(&mut dyn Rows) -> StoreResult<R>,
) -> Option<StoreResult<R>> {
    let mut statement = match conn.prepare_cached(sql) {
        Ok(statement) => statement,
        Err(e) => return failed(e),
    };
    let rows = match statement.query(rusqlite::params_from_iter(params)) {
        Ok(rows) => rows,
        Err(e) => return failed(e),
    };
    let mut rows = InlineRows {
        rows,
        names: Vec::new(),
        next: Cell::new(0),
        locked: false,
    };
    let answer = read(&mut rows);
    // Dropping the rows resets the statement, which ends its read transaction: a kept
    // connection holds no snapshot between reads (one would keep checkpoints from finishing).
    (!rows.locked).then_some(answer)
}

/// `None` (read through the pool) when the database was locked; the error otherwise.
fn failed<R>(e: rusqlite::Error) -> Option<StoreResult<R>> {
    if is_locked(&e) {
        return None;
    }
    Some(Err(store_error(e)))
}

fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn store_error(e: rusqlite::Error) -> StoreError {
    crate::count_failure("database");
    StoreError::Backend(e.to_string())
}

struct InlineRows<'s> {
    rows: rusqlite::Rows<'s>,
    /// The statement's column names, read once, at the first row (a statement SQLite prepared
    /// again after a schema change has its new columns by then). rusqlite finds a column by name
    /// by asking SQLite for each column's name in turn and comparing it; for a page of orders (25
    /// columns, each read by name) that was a fifth of the read's time.
    names: Vec<String>,
    /// Where the next search for a column by name starts: after the column found last. The row
    /// mappers read a row's columns mostly in the statement's order (`SELECT *` and the schema's
    /// order), so the next one is found at once instead of after a walk over the names before it.
    next: Cell<usize>,
    /// Whether a step found the database locked: the answer is then discarded.
    locked: bool,
}

impl Rows for InlineRows<'_> {
    fn next_row(&mut self) -> StoreResult<Option<&dyn Columns>> {
        match self.rows.advance() {
            Ok(()) => {
                let Some(row) = self.rows.get() else {
                    return Ok(None);
                };
                if self.names.is_empty() {
                    let statement: &rusqlite::Statement = row.as_ref();
                    self.names = statement
                        .column_names()
                        .into_iter()
                        .map(str::to_owned)
                        .collect();
                }
                Ok(Some(&*self as &dyn Columns))
            }
            // A locked step is not a failure: the answer is discarded and the pool reads.
            Err(e) if is_locked(&e) => {
                self.locked = true;
                Err(StoreError::Backend(e.to_string()))
            }
            Err(e) => Err(store_error(e)),
        }
    }
}

impl InlineRows<'_> {
    /// The current row's value of column `name`.
    fn value(&self, name: &str) -> ValueRef<'_> {
        let row = self
            .rows
            .get()
            .expect("columns are read only from the row `next_row` handed over");
        let count = self.names.len();
        let start = self.next.get();
        let index = (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&i| self.names[i].eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("the statement has no column {name}"));
        self.next.set(index + 1);
        row.get_ref_unwrap(index)
    }
}

impl Columns for InlineRows<'_> {
    fn text_or_null(&self, name: &str) -> Option<&str> {
        match self.value(name) {
            ValueRef::Null => None,
            ValueRef::Text(text) => Some(
                std::str::from_utf8(text)
                    .unwrap_or_else(|_| panic!("column {name} is not UTF-8 text")),
            ),
            other => panic!("column {name} is not text: {other:?}"),
        }
    }

    fn int_or_null(&self, name: &str) -> Option<i64> {
        match self.value(name) {
            ValueRef::Null => None,
            ValueRef::Integer(n) => Some(n),
            other => panic!("column {name} is not an integer: {other:?}"),
        }
    }

    /// SQLite keeps booleans as integers 0 and 1.
    fn bool_or_null(&self, name: &str) -> Option<bool> {
        self.int_or_null(name).map(|n| n != 0)
    }
}
