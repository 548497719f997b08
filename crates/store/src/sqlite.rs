//! The SQLite adapter: WAL journal, `synchronous=FULL` (this is money), foreign keys on.
//!
//! Writes go through a pool of exactly one connection and start with `BEGIN IMMEDIATE`, so
//! writers queue inside the process instead of spinning on SQLite's busy handler, and a
//! read-then-write transaction can never fail to upgrade its lock. Other processes (the
//! `admin` commands while a server runs) wait on the busy timeout. Reads use a separate pool
//! and see the last committed state (WAL snapshots); the hottest of them skip the pool's thread
//! hand-off and run where they are asked ([`inline`]).
//!
//! The one write connection is precious: if it were ever handed out inside a transaction, every
//! write would fail until a restart. So transactions open in a task of their own
//! ([`crate::detached`]), and the pool checks the connection each time it comes back and before
//! it goes out: one still inside a transaction is closed (rolling it back) and replaced.

use crate::OpenError;
use shared::backend;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, SqlitePool};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use storefront_app::ports::StoreResult;
use tokio::sync::{oneshot, OwnedMutexGuard};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

mod checkpoint;
mod inline;
mod memory;
mod priority;

#[derive(Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    inline: Arc<inline::InlineReads>,
    group: Arc<GroupCommit>,
    appends: Arc<crate::append::Appends>,
}

/// Most write units one batch holds before it commits, so a steady stream of writers still sees
/// its commits within a bounded wait.
const MAX_UNITS_PER_BATCH: usize = 64;

/// How long a unit waits for its turn before it fails.
const TURN_TIMEOUT: Duration = Duration::from_secs(60);

/// Group commit: SQLite has one writer, and each durable commit costs an fsync. Write units (an
/// order with its charge and jobs, a quote, an audit record) take turns on the one connection
/// inside a shared transaction, each in a savepoint of its own, so one unit's failure or refusal
/// rolls back only itself. The unit that finds nobody queued behind it (or fills the batch)
/// commits the whole batch with one fsync; every unit of the batch is answered only after that
/// commit, with its outcome. `synchronous=FULL` is unchanged: nothing is acknowledged before it
/// is durable.
struct GroupCommit {
    writer: SqlitePool,
    batch: Arc<tokio::sync::Mutex<Batch>>,
    /// Units waiting for their turn: while there are any, a finishing unit leaves the commit to
    /// the last of them.
    queued: AtomicUsize,
    /// Batches committed (each one fsync), for tests; `/metrics` counts them too.
    committed: AtomicUsize,
    /// Units whose statements were known before their turn ([`SqliteStore::chained`]), waiting
    /// for the task that runs them.
    chains: std::sync::Mutex<std::collections::VecDeque<Step>>,
    /// Whether a task is running the queued chained units.
    driving: std::sync::atomic::AtomicBool,
    /// Copies committed pages into the database file off the writer's path; `None` for an
    /// in-memory database, which has no WAL.
    checkpointer: Option<checkpoint::Checkpointer>,
}

/// A chained unit, run on the batch's connection: what became of it in the batch.
type Step = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> futures_util::future::BoxFuture<'c, Ran> + Send,
>;

/// Where a unit kept in a batch hears the batch's outcome.
type BatchOutcome = oneshot::Receiver<Result<(), String>>;

/// What a chained unit's run left in the batch.
enum Ran {
    /// Its writes stay; it waits for the batch's outcome.
    Kept(oneshot::Sender<Result<(), String>>),
    /// It wrote nothing (refused, stale or failed, and rolled back): already answered.
    Nothing,
    /// Its rollback failed: the batch is unusable.
    Broken(String),
}

/// The answers of a chained call, statement after statement: each one's rows, then its result.
pub(crate) type Answers =
    Vec<sqlx::Either<sqlx::sqlite::SqliteQueryResult, sqlx::sqlite::SqliteRow>>;

/// What a chained unit does with its statements' answers, on the batch's connection (a further
/// statement may follow): its value, and whether its writes stay (`false` rolls it back).
pub(crate) type Then<T> = Box<
    dyn for<'c> FnOnce(
            &'c mut SqliteConnection,
            Answers,
        ) -> futures_util::future::BoxFuture<'c, StoreResult<(T, bool)>>
        + Send,
>;

/// How a chained unit's statements begin: its savepoint, in the same call.
const CHAIN_OPENING: &str = "SAVEPOINT unit; ";

#[derive(Default)]
struct Batch {
    /// The write connection, inside `BEGIN IMMEDIATE` while a batch is open.
    conn: Option<PoolConnection<Sqlite>>,
    /// Units released into the open batch.
    units: usize,
    /// Those units, told the batch's outcome once it is known.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

/// One write unit: a savepoint in the open batch. Dereferences to the connection, so the shared
/// SQL runs on it as on any transaction. Dropped without `commit`, it rolls back to its savepoint.
pub(crate) struct GroupUnit {
    turn: Option<OwnedMutexGuard<Batch>>,
    group: Arc<GroupCommit>,
}

impl std::ops::Deref for GroupUnit {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.turn
            .as_ref()
            .and_then(|t| t.conn.as_deref())
            .expect("a unit holds its turn and the batch's connection until it ends")
    }
}

impl std::ops::DerefMut for GroupUnit {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.turn
            .as_mut()
            .and_then(|t| t.conn.as_deref_mut())
            .expect("a unit holds its turn and the batch's connection until it ends")
    }
}

impl Drop for GroupUnit {
    fn drop(&mut self) {
        // Not committed: an error path, or a caller that went away. Its savepoint is rolled back
        // (and the batch committed for the others if this was the last unit) in a task.
        if let Some(turn) = self.turn.take() {
            let group = self.group.clone();
            tokio::spawn(async move {
                let _ = group.finish(turn, false).await;
            });
        }
    }
}

impl GroupUnit {
    /// Leaves the unit's writes in the batch (its savepoint stays open until the batch's
    /// `COMMIT`) and waits until the batch is durable.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let mut turn = self.turn.take().expect("a unit is committed once");
        let group = self.group.clone();
        // With units queued behind it and room in the batch, a kept unit sends no statement:
        // it joins the batch and hands the turn on at once, on the writers' path, with nothing
        // a dropped caller could interrupt.
        if group.queued.load(Ordering::SeqCst) > 0 && turn.units + 1 < MAX_UNITS_PER_BATCH {
            let (tell, hear) = oneshot::channel();
            turn.waiters.push(tell);
            turn.units += 1;
            drop(turn);
            return batch_outcome(hear).await;
        }
        // In a task of its own: once a use-case reaches its commit, its outcome is settled even
        // if the caller is dropped here.
        crate::detached(async move { group.finish(turn, true).await }).await
    }
}

/// Runs one fixed statement on the write connection. Boxed with its lifetime spelled out, so
/// the futures that use it stay `Send` inside spawned tasks.
fn exec<'c>(
    conn: &'c mut SqliteConnection,
    sql: &'static str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>> {
    Box::pin(async move { sqlx::query(sql).execute(conn).await.map(|_| ()) })
}

/// What a unit that joined a batch is answered: the batch's commit, or why it failed.
async fn batch_outcome(hear: BatchOutcome) -> Result<(), sqlx::Error> {
    match hear.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(sqlx::Error::Protocol(format!(
            "the batch this write was in did not commit: {message}"
        ))),
        Err(_) => Err(sqlx::Error::Protocol(
            "the batch this write was in ended without an outcome".into(),
        )),
    }
}

impl GroupCommit {
    async fn begin(self: Arc<Self>) -> Result<GroupUnit, sqlx::Error> {
        let Some(mut turn) = self.take_turn().await else {
            // A unit ahead may have left the batch's commit to this one: whoever gets the turn
            // next with nobody queued commits what is open.
            let group = self.clone();
            tokio::spawn(async move {
                let mut turn = group.batch.clone().lock_owned().await;
                if group.queued.load(Ordering::SeqCst) == 0 {
                    group.commit_batch(&mut turn).await;
                }
            });
            return Err(sqlx::Error::PoolTimedOut);
        };
        // Every statement is a hand-off to the connection's thread and back, on the path all
        // writers wait on: the batch's first unit opens it and its savepoint in one.
        if turn.conn.is_none() {
            turn.conn = Some(self.open_batch("BEGIN IMMEDIATE; SAVEPOINT unit").await?);
        } else if let Err(e) = exec(turn.conn.as_deref_mut().expect("open"), "SAVEPOINT unit").await
        {
            // The batch is unusable: end it for everyone in it.
            self.end_batch(&mut turn, Err(e.to_string())).await;
            return Err(e);
        }
        Ok(GroupUnit {
            turn: Some(turn),
            group: self,
        })
    }

    /// Waits for the turn on the write connection, counted as queued meanwhile (so a finishing
    /// unit leaves the commit to whoever waits). `None` after [`TURN_TIMEOUT`]: as long as a
    /// pooled connection would have been waited for, so a unit that never ends (a bug) fails the
    /// writers behind it instead of hanging them.
    async fn take_turn(&self) -> Option<OwnedMutexGuard<Batch>> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let turn = tokio::time::timeout(TURN_TIMEOUT, self.batch.clone().lock_owned()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        turn.ok()
    }

    /// The write connection inside a new batch's transaction, opened by `first` (which begins
    /// it). On a failure nothing stays open on the connection, whichever statement failed.
    async fn open_batch(&self, first: &'static str) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
        let mut conn = self.writer.acquire().await?;
        if let Err(e) = exec(&mut conn, first).await {
            let _ = exec(&mut conn, "ROLLBACK").await;
            return Err(e);
        }
        Ok(conn)
    }

    /// Ends a unit (`keep`: leave its savepoint in the batch; otherwise roll it back), commits
    /// the batch if nobody is queued behind it or it is full, and for a kept unit waits for the
    /// batch's outcome.
    ///
    /// A kept unit's savepoint is not released: the next unit's nests inside it, and `COMMIT`
    /// ends them all. That saves a statement per unit; a unit rolled back (the innermost
    /// savepoint named `unit`, its own) is rolled back and released, so it leaves nothing.
    async fn finish(
        &self,
        mut turn: OwnedMutexGuard<Batch>,
        keep: bool,
    ) -> Result<(), sqlx::Error> {
        if !keep {
            let conn = turn.conn.as_deref_mut().expect("a unit's batch is open");
            if let Err(e) = exec(conn, "ROLLBACK TO unit; RELEASE unit").await {
                self.end_batch(&mut turn, Err(e.to_string())).await;
                return Err(e);
            }
        }
        let outcome = keep.then(|| {
            let (tell, hear) = oneshot::channel();
            turn.waiters.push(tell);
            turn.units += 1;
            hear
        });
        if self.queued.load(Ordering::SeqCst) == 0 || turn.units >= MAX_UNITS_PER_BATCH {
            self.commit_batch(&mut turn).await;
        }
        drop(turn);
        match outcome {
            None => Ok(()),
            Some(hear) => batch_outcome(hear).await,
        }
    }

    /// Commits the open batch (one fsync) and tells its units.
    async fn commit_batch(&self, turn: &mut Batch) {
        let Some(conn) = turn.conn.as_deref_mut() else {
            return;
        };
        let committed = exec(conn, "COMMIT").await.map_err(|e| e.to_string());
        if committed.is_ok() {
            self.committed.fetch_add(1, Ordering::SeqCst);
            if let Some(checkpointer) = &self.checkpointer {
                checkpointer.committed();
            }
            // Units per fsync = units / batches.
            metrics::counter!("storefront_sqlite_batches_total").increment(1);
            metrics::counter!("storefront_sqlite_batch_units_total").increment(turn.units as u64);
        }
        self.end_batch(turn, committed).await;
    }

    /// Runs the queued chained units, in the order they came, one after another on the batch's
    /// connection without handing the turn between tasks: per unit one call to the
    /// connection's thread (its savepoint and statements) and, only when it must, a rollback.
    /// Commits like any unit: when nobody is queued behind, or the batch is full.
    async fn drive(self: Arc<Self>) {
        loop {
            match self.take_turn().await {
                Some(turn) => self.run_chains(turn).await,
                // The units queued fail (their answers are dropped), as a unit waiting this
                // long for its turn does.
                None => self.chains.lock().expect("not poisoned").clear(),
            }
            self.driving.store(false, Ordering::SeqCst);
            // A unit queued after the queue was found empty, before `driving` was cleared, would
            // wait for nobody: run it unless another task has taken over.
            if self.chains.lock().expect("not poisoned").is_empty()
                || self.driving.swap(true, Ordering::SeqCst)
            {
                return;
            }
        }
    }

    /// Runs the queued chained units with the turn, then commits unless others wait for it.
    async fn run_chains(&self, mut turn: OwnedMutexGuard<Batch>) {
        use futures_util::FutureExt as _;
        while let Some(step) = self.next_chain() {
            if turn.conn.is_none() {
                match self.open_batch("BEGIN IMMEDIATE").await {
                    Ok(conn) => turn.conn = Some(conn),
                    Err(e) => {
                        // The step is dropped unrun: its caller hears that it ended without an
                        // outcome. The failure is counted; the next step tries again.
                        crate::count_failure(crate::failure_kind(&e));
                        continue;
                    }
                }
            }
            let conn = turn.conn.as_deref_mut().expect("open");
            // A panic (a bug) in a unit's `then` leaves its writes in an unknown state: the
            // batch is rolled back for everyone in it, and the queue goes on.
            let ran = std::panic::AssertUnwindSafe(step(conn))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Ran::Broken("a write unit panicked".into()));
            match ran {
                Ran::Kept(tell) => {
                    turn.waiters.push(tell);
                    turn.units += 1;
                }
                Ran::Nothing => {}
                Ran::Broken(why) => self.end_batch(&mut turn, Err(why)).await,
            }
            if turn.units >= MAX_UNITS_PER_BATCH {
                self.commit_batch(&mut turn).await;
            }
        }
        if self.queued.load(Ordering::SeqCst) == 0 {
            self.commit_batch(&mut turn).await;
        }
    }

    fn next_chain(&self) -> Option<Step> {
        self.chains.lock().expect("not poisoned").pop_front()
    }

    /// Closes the open batch with `outcome` (a failed one is rolled back) and tells its units;
    /// the connection goes back to the pool, which replaces it if it is not clean.
    async fn end_batch(&self, turn: &mut Batch, outcome: Result<(), String>) {
        if let Some(mut conn) = turn.conn.take() {
            if outcome.is_err() {
                let _ = exec(&mut conn, "ROLLBACK").await;
            }
        }
        turn.units = 0;
        for waiter in turn.waiters.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies the embedded migrations.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        memory::configure();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| OpenError::Connect(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // A batch nests a savepoint per unit, and SQLite keeps each savepoint's original
            // pages in a sub-journal, spilled to a temporary file past 64 KiB: in memory instead
            // (it lives for one batch; durability is the WAL's, untouched).
            .pragma("temp_store", "memory");
        // sqlx pings a connection before handing it out unless told not to: on SQLite a hop to
        // the connection's thread and back for nothing (it is in this process).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(60))
            // Cheap on the way out (sqlx's own count); thorough on the way back, where an
            // interrupted caller leaves its traces.
            .before_acquire(|conn, _| {
                Box::pin(async move { Ok(!left_in_transaction(conn, "before_acquire")) })
            })
            .after_release(|conn, _| Box::pin(async move { is_clean(conn).await }))
            // Its thread runs ahead of the request handlers (see [`priority`]).
            .after_connect(|_, _| {
                Box::pin(async move {
                    priority::raise_writer_threads();
                    Ok(())
                })
            })
            .connect_with(
                options
                    .clone()
                    .thread_name(|id| format!("{}-{id}", priority::WRITER_THREAD))
                    // Checkpoints are the background checkpointer's; this is the backstop.
                    .pragma(
                        "wal_autocheckpoint",
                        checkpoint::WRITER_AUTOCHECKPOINT_PAGES.to_string(),
                    ),
            )
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| OpenError::Migrate(e.to_string()))?;
        let inline = Arc::new(inline::InlineReads::new(options.get_filename()));
        let checkpointer = if inline.on_disk() {
            Some(
                checkpoint::Checkpointer::start(&options)
                    .await
                    .map_err(|e| OpenError::Connect(e.to_string()))?,
            )
        } else {
            None
        };
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        let group = Arc::new(GroupCommit {
            writer,
            batch: Arc::default(),
            queued: AtomicUsize::new(0),
            committed: AtomicUsize::new(0),
            chains: Default::default(),
            driving: Default::default(),
            checkpointer,
        });
        Ok(Self {
            reader,
            inline,
            group,
            appends: Arc::default(),
        })
    }

    /// Opens a write unit of the next batch (see [`GroupCommit`]), in a task of its own so a
    /// dropped caller cannot interrupt it.
    async fn begin(&self) -> StoreResult<GroupUnit> {
        let group = self.group.clone();
        crate::detached(group.begin()).await.map_err(backend)
    }

    /// Runs a unit whose statements are all known before its turn: `statements`, which begin
    /// with the unit's savepoint (`db::CHAIN_OPENING`), go to the connection in one call, and
    /// `then` reads their answers (the savepoint's left out) and says whether the unit's writes
    /// stay. Queued units run one after another in one task (see `GroupCommit::drive`), so
    /// none of them waits for the turn to be handed between tasks. A kept unit is answered once
    /// its batch is durable.
    pub(crate) async fn chained<T: Send + 'static>(
        &self,
        statements: shared::Statements<'static>,
        then: Then<T>,
    ) -> StoreResult<T> {
        debug_assert!(statements.sql().starts_with(CHAIN_OPENING));
        let (reply, answer) = oneshot::channel::<StoreResult<(T, Option<BatchOutcome>)>>();
        let step: Step = Box::new(move |conn| Box::pin(run_chained(conn, statements, then, reply)));
        let group = &self.group;
        group.chains.lock().expect("not poisoned").push_back(step);
        if !group.driving.swap(true, Ordering::SeqCst) {
            tokio::spawn(group.clone().drive());
        }
        let Ok(answer) = answer.await else {
            return Err(backend(sqlx::Error::Protocol(
                "the write ended without an outcome".into(),
            )));
        };
        let (value, kept) = answer?;
        if let Some(hear) = kept {
            batch_outcome(hear).await.map_err(backend)?;
        }
        Ok(value)
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn appends(&self) -> &crate::append::Appends {
        &self.appends
    }
}

/// One chained unit on the batch's connection: its statements in one call, then its `then`;
/// rolled back to its savepoint unless kept. Its caller hears its value (with, if kept, where
/// the batch's outcome will come) at once.
async fn run_chained<T>(
    conn: &mut SqliteConnection,
    mut statements: shared::Statements<'static>,
    then: Then<T>,
    reply: oneshot::Sender<StoreResult<(T, Option<BatchOutcome>)>>,
) -> Ran {
    use futures_util::TryStreamExt as _;
    let mut answers = Answers::new();
    let mut finished = 0;
    let ran = {
        #[allow(deprecated)] // several statements per query: SQLite only; see `db`.
        let mut stream = statements.build().fetch_many(&mut *conn);
        loop {
            match stream.try_next().await {
                Ok(Some(answer)) => {
                    finished += usize::from(answer.is_left());
                    answers.push(answer);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(backend(e)),
            }
        }
    };
    // The first answer is the savepoint's: without it there is nothing to take back.
    let opened = finished > 0;
    let outcome = match ran {
        Ok(()) => then(&mut *conn, answers.split_off(1)).await,
        Err(e) => Err(e),
    };
    let keep = matches!(outcome, Ok((_, true)));
    if !keep && opened {
        if let Err(e) = exec(conn, "ROLLBACK TO unit; RELEASE unit").await {
            let _ = reply.send(Err(backend(e)));
            return Ran::Broken("a unit could not be rolled back".into());
        }
    }
    match outcome {
        Ok((value, true)) => {
            let (tell, hear) = oneshot::channel();
            let _ = reply.send(Ok((value, Some(hear))));
            Ran::Kept(tell)
        }
        Ok((value, false)) => {
            let _ = reply.send(Ok((value, None)));
            Ran::Nothing
        }
        Err(e) => {
            let _ = reply.send(Err(e));
            Ran::Nothing
        }
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
    pub(super) type Row = sqlx::sqlite::SqliteRow;
    pub(super) type Connection = sqlx::SqliteConnection;
    /// A write transaction: a unit of a group-committed batch.
    pub(super) type Transaction = super::GroupUnit;
    pub(super) type Database = sqlx::Sqlite;

    pub(super) async fn commit(unit: Transaction) -> Result<(), sqlx::Error> {
        unit.commit().await
    }
    /// The hottest reads, answered on the calling thread when they can be (see
    /// [`super::inline`]); `None` sends them to the reader pool.
    pub(super) fn read_inline<R>(
        store: &Adapter,
        sql: &str,
        params: &[&str],
        read: &dyn Fn(&mut dyn super::shared::rows::Rows) -> storefront_app::ports::StoreResult<R>,
    ) -> Option<storefront_app::ports::StoreResult<R>> {
        store.inline.read(sql, params, read)
    }
    /// Appended to the subquery that picks the next job to claim: nothing, the one write
    /// connection already serializes claims.
    pub(super) const JOB_CLAIM_LOCK: &str = "";
    /// Appended to the read of an agent before its budgets are checked: nothing, the one write
    /// connection already serializes budget checks.
    pub(super) const ROW_LOCK: &str = "";
    /// Appended to the subquery that picks deliveries to claim: nothing, as for jobs.
    pub(super) const DELIVERY_CLAIM_LOCK: &str = "";
    /// The position in the log of the `nth` (from 1) event of one insert statement: after the
    /// last one. The one writer makes insert order commit order.
    pub(super) fn next_event_position(nth: usize) -> String {
        format!("(SELECT COALESCE(MAX(position), 0) FROM events) + {nth}")
    }
    /// Taken before an account's events are written: nothing, the one writer already keeps
    /// insert order and commit order the same.
    pub(super) const EVENT_ORDER_LOCK: Option<&str> = None;
    /// Several statements, `;`-separated, in one query: one hand-off to the connection's thread
    /// instead of one each, on the path every writer waits on. sqlx runs them for SQLite only
    /// and marks that deprecated (its issue 3108); should a later sqlx drop it, `false` here
    /// takes the statement-by-statement path, which runs the same SQL.
    pub(super) const CHAINS_STATEMENTS: bool = true;
    /// Data-modifying CTEs: SQLite has none (a `WITH` may only precede the statement that writes).
    pub(super) const WRITES_IN_CTES: bool = false;
    /// How a page of one account's rows asks for them, newest first: the condition on the
    /// account (`$1`) and the order. SQLite's planner takes the `(account_id, id)` index for this
    /// equality and order, and with the equality a cursor (`id < $n`) bounds the index scan.
    pub(super) const ACCOUNT_PAGE: (&str, &str) = ("account_id = $1", "id DESC");
    /// The first statement of a chained unit (`SqliteStore::chained`): its savepoint.
    pub(super) const CHAIN_OPENING: &str = super::CHAIN_OPENING;
    pub(super) use super::{Answers, Then};
}

// Compiled once per backend on purpose: the same SQL over this backend's `db` types.
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_app::ports::SettingsStore;

    async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        (dir, store)
    }

    /// The writer connection's thread runs ahead of the process's other threads, where the
    /// process may raise a thread's priority (as root, or with `CAP_SYS_NICE`).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_writer_thread_runs_ahead_of_the_others_where_allowed() {
        use rustix::process::{getpid, getpriority_process, setpriority_process, Pid};
        let process = getpriority_process(Some(getpid())).unwrap();
        let wanted = (process - priority::AHEAD).max(-20);
        // Whether a thread may be raised here, asked of a thread of its own (on Linux the
        // calling thread is the one `None` names).
        let allowed = std::thread::spawn(move || setpriority_process(None, wanted).is_ok())
            .join()
            .unwrap();
        if !allowed {
            eprintln!("skipped: this process may not raise a thread's priority");
            return;
        }
        let (_dir, _store) = temp_store().await;
        // Other tests' stores may be opening meanwhile, their threads not raised yet: this
        // store's thread, raised before `open` returned, is among those that are.
        let raised = priority::threads_named(priority::WRITER_THREAD)
            .into_iter()
            .filter(|&tid| {
                Pid::from_raw(tid)
                    .and_then(|pid| getpriority_process(Some(pid)).ok())
                    .is_some_and(|nice| nice == wanted)
            })
            .count();
        assert!(
            raised >= 1,
            "the store's writer thread runs ahead of the process"
        );
        // Other threads (this test's own) are left as they were.
        assert_eq!(getpriority_process(None).unwrap(), process);
    }

    async fn set(unit: &mut GroupUnit, name: &str) {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, 'v')")
            .bind(name)
            .execute(&mut **unit)
            .await
            .unwrap();
    }

    /// The statements of a chained unit that sets `name`.
    fn chained_set(name: &'static str) -> shared::Statements<'static> {
        let mut q = shared::Statements::new(CHAIN_OPENING);
        q.push("INSERT INTO settings (name, value) VALUES (")
            .push_bind(name)
            .push(", 'v')");
        q
    }

    async fn stored(store: &SqliteStore, name: &str) -> bool {
        sqlx::query("SELECT 1 FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(store.reader())
            .await
            .unwrap()
            .is_some()
    }

    /// Commits reach the database file through the background checkpointer, long before the
    /// writer's own checkpoint mark: the file alone, copied without its WAL, holds them.
    #[tokio::test]
    async fn commits_are_copied_into_the_database_file_in_the_background() {
        let (dir, store) = temp_store().await;
        let names: Vec<String> = (0..50).map(|i| format!("checkpointed-{i}")).collect();
        for name in &names {
            let mut unit = store.begin().await.unwrap();
            set(&mut unit, name).await;
            unit.commit().await.unwrap();
        }
        let checkpointer = store.group.checkpointer.as_ref().expect("a file has a WAL");
        tokio::time::timeout(Duration::from_secs(60), checkpointer.caught_up())
            .await
            .expect("a checkpoint follows the commits");

        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join("t.db"), copy.path().join("t.db")).unwrap();
        use sqlx::ConnectOptions as _;
        let mut file_alone = SqliteConnectOptions::new()
            .filename(copy.path().join("t.db"))
            .connect()
            .await
            .unwrap();
        let stored: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM settings WHERE name LIKE 'checkpointed-%'")
                .fetch_one(&mut file_alone)
                .await
                .expect("the database file alone holds the committed schema");
        assert_eq!(stored, names.len() as i64, "and every committed row");
    }

    #[tokio::test]
    async fn units_queued_behind_each_other_commit_in_one_batch() {
        let (_dir, store) = temp_store().await;
        let mut first = store.begin().await.unwrap();
        set(&mut first, "a").await;
        let later: Vec<_> = ["b", "c"]
            .into_iter()
            .map(|name| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut unit = store.begin().await.unwrap();
                    set(&mut unit, name).await;
                    unit.commit().await
                })
            })
            .collect();
        while store.group.queued.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // The first leaves the commit to those queued behind it, and is answered with them.
        first.commit().await.unwrap();
        for unit in later {
            unit.await.unwrap().unwrap();
        }
        assert_eq!(
            store.group.committed.load(Ordering::SeqCst),
            1,
            "one fsync for three"
        );
        for name in ["a", "b", "c"] {
            assert!(
                stored(&store, name).await,
                "{name} is durable once answered"
            );
        }
    }

    #[tokio::test]
    async fn a_unit_that_fails_rolls_back_only_itself() {
        let (_dir, store) = temp_store().await;
        let mut failing = store.begin().await.unwrap();
        set(&mut failing, "lost").await;
        let kept = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut unit = store.begin().await.unwrap();
                set(&mut unit, "kept").await;
                unit.commit().await
            })
        };
        while store.group.queued.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // An error path: the unit is dropped without its commit.
        drop(failing);
        kept.await.unwrap().unwrap();
        assert!(stored(&store, "kept").await);
        assert!(
            !stored(&store, "lost").await,
            "the failed unit left nothing"
        );
        assert_eq!(store.group.committed.load(Ordering::SeqCst), 1);
    }

    /// Chained units queued while a unit holds the turn run after it in the same batch, one
    /// task running them all; each is kept or taken back on its own.
    #[tokio::test]
    async fn chained_units_join_the_batch_and_each_is_kept_or_taken_back_alone() {
        let (_dir, store) = temp_store().await;
        let mut first = store.begin().await.unwrap();
        set(&mut first, "first").await;
        let chain = |name: &'static str, keep: bool| {
            let store = store.clone();
            tokio::spawn(async move {
                let then: Then<u64> = Box::new(move |_, answers| {
                    Box::pin(async move {
                        let changed = answers
                            .iter()
                            .filter_map(|a| a.as_ref().left())
                            .map(|done| done.rows_affected())
                            .sum();
                        Ok((changed, keep))
                    })
                });
                store.chained(chained_set(name), then).await
            })
        };
        let kept = chain("kept", true);
        let taken_back = chain("taken back", false);
        // Its insert fails (the name is taken in this batch): only its own savepoint goes.
        let failing = chain("first", true);
        while store.group.chains.lock().unwrap().len() < 3 {
            tokio::task::yield_now().await;
        }
        first.commit().await.unwrap();
        assert_eq!(kept.await.unwrap().unwrap(), 1);
        assert_eq!(
            taken_back.await.unwrap().unwrap(),
            1,
            "it ran, and its caller decided"
        );
        assert!(failing.await.unwrap().is_err());
        assert!(stored(&store, "first").await);
        assert!(stored(&store, "kept").await);
        assert!(!stored(&store, "taken back").await);
        assert_eq!(
            store.group.committed.load(Ordering::SeqCst),
            1,
            "one fsync for all"
        );
    }

    /// A unit whose `then` panics (a bug) fails alone, its writes taken back, and the queue
    /// goes on for the units after it.
    #[tokio::test]
    async fn a_chained_unit_that_panics_fails_without_stopping_the_queue() {
        let (_dir, store) = temp_store().await;
        let panicking: Then<()> =
            Box::new(|_, _| Box::pin(async { panic!("a bug in a unit's reading of its answers") }));
        assert!(store.chained(chained_set("lost"), panicking).await.is_err());
        let keeping: Then<()> = Box::new(|_, _| Box::pin(async { Ok(((), true)) }));
        store.chained(chained_set("after"), keeping).await.unwrap();
        assert!(stored(&store, "after").await);
        assert!(
            !stored(&store, "lost").await,
            "the panicked unit left nothing"
        );
    }

    /// Kept units leave their savepoints open and later ones nest inside them: a unit rolled
    /// back between two kept ones takes back only its own writes.
    #[tokio::test]
    async fn a_unit_failing_between_kept_units_takes_back_only_its_own_writes() {
        let (_dir, store) = temp_store().await;
        let mut first = store.begin().await.unwrap();
        set(&mut first, "first").await;
        let spawn_unit = |name: &'static str, keep: bool| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut unit = store.begin().await.unwrap();
                set(&mut unit, name).await;
                if keep {
                    unit.commit().await.unwrap();
                }
            })
        };
        let failing = spawn_unit("failing", false);
        while store.group.queued.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        let last = spawn_unit("last", true);
        while store.group.queued.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // Kept with others queued behind it: its savepoint stays open in the batch.
        let first = tokio::spawn(first.commit());
        failing.await.unwrap();
        last.await.unwrap();
        first.await.unwrap().unwrap();
        assert!(stored(&store, "first").await);
        assert!(stored(&store, "last").await);
        assert!(
            !stored(&store, "failing").await,
            "the rolled-back unit left nothing"
        );
        assert_eq!(store.group.committed.load(Ordering::SeqCst), 1);
    }

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
            let mut conn = store.group.writer.acquire().await.unwrap();
            let guard = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
            std::mem::forget(guard);
        }
        store.probe_write(now).await.expect("writes work again");

        // A transaction SQLite has open but sqlx never counted (a raw `BEGIN`).
        {
            let mut conn = store.group.writer.acquire().await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        store.probe_write(now).await.expect("writes work again");
    }

    /// An account's services come newest first, a page at a time, each page after its cursor.
    #[tokio::test]
    async fn services_are_paged_newest_first() {
        use storefront_app::page::PageRequest;
        use storefront_app::ports::ServiceStore;
        use storefront_domain::ids::AccountId;

        let (_dir, store) = temp_store().await;
        let at = "2026-01-01T00:00:00.000Z";
        let mut seed = format!(
            "INSERT INTO accounts (id, email, name, currency, created_at, updated_at)
             VALUES ('acct_a', 'a@example.test', 'A', 'usd', '{at}', '{at}');"
        );
        for n in 1..=5 {
            seed.push_str(&format!(
                "INSERT INTO orders (id, account_id, status, payment_status, payment_method,
                     product_id, quantity, configuration, configuration_warnings, line_items,
                     total_minor, currency, quote_id, idempotency_scope, idempotency_route,
                     idempotency_key, requires_install_configuration, created_at, updated_at)
                 VALUES ('ord_{n}', 'acct_a', 'fulfilled', 'paid', 'credit', 'vm', 1, '{{}}', '[]',
                     '[]', 0, 'usd', 'quo_{n}', 'acct_a', 'orders', 'k{n}', 0, '{at}', '{at}');
                 INSERT INTO services (id, order_id, account_id, product_id, status, display_name,
                     image, region, ssh_username, lease_seconds, management_capabilities,
                     created_at, updated_at)
                 VALUES ('svc_{n}', 'ord_{n}', 'acct_a', 'vm', 'active', 'vm {n}', 'debian-12',
                     'local', 'root', 3600, '[]', '{at}', '{at}');"
            ));
        }
        sqlx::raw_sql(&seed)
            .execute(&store.group.writer)
            .await
            .unwrap();

        let account = AccountId::from_trusted("acct_a".into());
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = PageRequest { limit: 2, cursor };
            let mut rows = store.list_services(&account, &page).await.unwrap();
            // A page asks for one row more than it shows: the sign that another page follows.
            let more = rows.len() > 2;
            rows.truncate(2);
            seen.extend(rows.iter().map(|s| s.id.as_str().to_owned()));
            if !more {
                break;
            }
            cursor = seen.last().cloned();
        }
        assert_eq!(seen, ["svc_5", "svc_4", "svc_3", "svc_2", "svc_1"]);
    }

    /// An order's result comes back as the very text it was stored with (it is written out
    /// unparsed), and a stored result that is not JSON is reported as unreadable, never shown.
    #[tokio::test]
    async fn an_orders_result_is_read_as_its_text_and_refused_when_not_json() {
        use storefront_app::ports::OrderStore;
        use storefront_domain::ids::OrderId;

        let (_dir, store) = temp_store().await;
        let at = "2026-01-01T00:00:00.000Z";
        let kept = r#"{"results":[{"title":"a \"b\" \u00e9","score":0.5}],"query":"q"}"#;
        let mut seed = format!(
            "INSERT INTO accounts (id, email, name, currency, created_at, updated_at)
             VALUES ('acct_a', 'a@example.test', 'A', 'usd', '{at}', '{at}');"
        );
        for (id, result) in [("ord_kept", kept), ("ord_broken", r#"{"results":[1,"#)] {
            seed.push_str(&format!(
                "INSERT INTO orders (id, account_id, status, payment_status, payment_method,
                     product_id, quantity, configuration, configuration_warnings, line_items,
                     total_minor, currency, quote_id, idempotency_scope, idempotency_route,
                     idempotency_key, requires_install_configuration, result, created_at,
                     updated_at)
                 VALUES ('{id}', 'acct_a', 'fulfilled', 'paid', 'credit', 'web-search', 1, '{{}}',
                     '[]', '[]', 0, 'usd', 'quo_{id}', 'acct_a', 'orders', '{id}', 0, '{result}',
                     '{at}', '{at}');"
            ));
        }
        sqlx::raw_sql(&seed)
            .execute(&store.group.writer)
            .await
            .unwrap();

        let order = store
            .get_order(&OrderId::from_trusted("ord_kept".into()))
            .await
            .unwrap()
            .expect("the order is there");
        assert_eq!(order.result.expect("it has a result").as_str(), kept);
        let broken = store
            .get_order(&OrderId::from_trusted("ord_broken".into()))
            .await;
        assert!(
            matches!(&broken, Err(storefront_app::ports::StoreError::Backend(m)) if m.contains("unreadable order result")),
            "{broken:?}"
        );
    }

    /// What an inline read of the setting `name` answers: `None` when it gave way to the pool,
    /// else whether the setting is there.
    fn inline_has(store: &SqliteStore, name: &str) -> Option<bool> {
        store
            .inline
            .read(
                "SELECT name FROM settings WHERE name = $1",
                &[name],
                &|rows| Ok(rows.next_row()?.is_some()),
            )
            .map(|answer| answer.unwrap())
    }

    #[tokio::test]
    async fn inline_reads_see_each_commit() {
        let (_dir, store) = temp_store().await;
        assert_eq!(inline_has(&store, "a"), Some(false));
        let mut unit = store.begin().await.unwrap();
        set(&mut unit, "a").await;
        unit.commit().await.unwrap();
        assert_eq!(
            inline_has(&store, "a"),
            Some(true),
            "a kept connection reads past the commit that followed its last read"
        );
    }

    #[test]
    fn an_inline_read_gives_way_to_a_lock_instead_of_waiting() {
        // A database another connection holds exclusively (with a rollback journal, where that
        // shuts readers out, as WAL recovery or a migration's exclusive lock does).
        // Opened here without a store, so SQLite's memory is set up first, as a store does: a
        // store opening meanwhile in another test must not swap the allocator under it.
        memory::configure();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("locked.db");
        let other = rusqlite::Connection::open(&file).unwrap();
        other
            .execute_batch(
                "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT);
                 INSERT INTO settings VALUES ('a', 'v');",
            )
            .unwrap();
        let reads = inline::InlineReads::new(&file);
        let has_a = || {
            reads
                .read(
                    "SELECT name FROM settings WHERE name = $1",
                    &["a"],
                    &|rows| Ok(rows.next_row()?.is_some()),
                )
                .map(|answer| answer.unwrap())
        };
        assert_eq!(has_a(), Some(true));
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert_eq!(has_a(), None, "gives way to the pool at once");
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(has_a(), Some(true), "answers again once the lock is gone");
    }

    /// An inline read finds every column by name whatever order the columns are asked for in,
    /// row after row (the search starts after the column found last).
    #[tokio::test]
    async fn inline_reads_find_columns_in_any_order() {
        let (_dir, store) = temp_store().await;
        let sql = "SELECT 'one' AS a, 'two' AS b, 'three' AS c \
                   UNION ALL SELECT 'four', 'five', 'six' WHERE $1 = 'x'";
        let read = store
            .inline
            .read(sql, &["x"], &|rows| {
                let mut seen = Vec::new();
                while let Some(row) = rows.next_row()? {
                    for name in ["c", "A", "b", "b", "a", "C"] {
                        seen.push(row.text_or_null(name).unwrap_or_default().to_owned());
                    }
                }
                Ok(seen)
            })
            .expect("read inline")
            .unwrap();
        assert_eq!(
            read,
            [
                "three", "one", "two", "two", "one", "three", //
                "six", "four", "five", "five", "four", "six"
            ]
        );
    }

    #[tokio::test]
    async fn an_in_memory_database_has_no_inline_reads() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert_eq!(inline_has(&store, "a"), None);
    }
}
