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
use storefront_app::ports::{StoreError, StoreResult};
use tokio::sync::{oneshot, OwnedMutexGuard};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

mod checkpoint;
mod inline;
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
    /// Calls of chained units sent, for tests; `/metrics` counts them too.
    calls: AtomicUsize,
    /// Units whose statements were known before their turn ([`SqliteStore::chained`]), waiting
    /// for the task that runs them.
    chains: std::sync::Mutex<std::collections::VecDeque<Queued>>,
    /// Whether a task is running the queued chained units.
    driving: std::sync::atomic::AtomicBool,
    /// Copies committed pages into the database file off the writer's path; `None` for an
    /// in-memory database, which has no WAL.
    checkpointer: Option<checkpoint::Checkpointer>,
}

/// A chained unit waiting for its turn ([`SqliteStore::chained`]), its value's type erased.
struct Queued {
    shape: shared::Shape,
    /// How many statements `push` writes, its savepoint aside.
    statements: usize,
    push: Box<dyn Fn(&mut shared::Statements<'static>) + Send>,
    /// Hears the unit's answers (its savepoint's left out), or why its call failed before they
    /// were all given, and says what follows.
    settle: Box<dyn FnOnce(StoreResult<Answers>) -> Settled + Send>,
}

/// What follows a chained unit's answers.
enum Settled {
    /// Its writes stay (its caller has its value): it waits for the batch's outcome.
    Kept(oneshot::Sender<Result<(), String>>),
    /// Its writes are taken back; then its caller hears its value, or that the rollback failed.
    Undo(Box<dyn FnOnce(Result<(), String>) + Send>),
    /// It runs further statements on the connection as its own statements left it.
    More(Step),
}

/// A chained unit's further statements, run on the batch's connection: what became of it.
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

/// A chained unit's further statements (see `shared::Verdict::More`), on the batch's
/// connection: its value, and whether its writes stay (`false` rolls it back).
pub(crate) type Then<T> = Box<
    dyn for<'c> FnOnce(
            &'c mut SqliteConnection,
        ) -> futures_util::future::BoxFuture<'c, StoreResult<(T, bool)>>
        + Send,
>;

/// How each chained unit's statements begin in a call: its savepoint.
const CHAIN_OPENING: &str = "SAVEPOINT unit; ";

/// Most chained units in one call. Calls hold a power of two of them (1, 2, 4, 8, 16), so each
/// shape of unit makes at most five texts for the connection's statement cache (100 entries).
const MAX_UNITS_PER_CALL: usize = 16;

#[derive(Default)]
struct Batch {
    /// The write connection, inside `BEGIN IMMEDIATE` while a batch is open.
    conn: Option<PoolConnection<Sqlite>>,
    /// Units released into the open batch.
    units: usize,
    /// Those units, told the batch's outcome once it is known.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

impl Batch {
    /// The open batch's connection.
    fn connection(&mut self) -> &mut SqliteConnection {
        self.conn.as_deref_mut().expect("a batch is open")
    }
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

    /// Runs the queued chained units, in the order they came, on the batch's connection without
    /// handing the turn between tasks. Queued units of one shape go in one call: each one's
    /// savepoint and statements, all of them one hand-off to the connection's thread and back
    /// (see [`GroupCommit::run_call`]). Commits like any unit: when nobody is queued behind, or
    /// the batch is full.
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
        loop {
            let room = MAX_UNITS_PER_BATCH.saturating_sub(turn.units).max(1);
            let call = self.next_call(room);
            if call.is_empty() {
                break;
            }
            if turn.conn.is_none() {
                match self.open_batch("BEGIN IMMEDIATE").await {
                    Ok(conn) => turn.conn = Some(conn),
                    Err(e) => {
                        // The call's units are dropped unrun: their callers hear that they
                        // ended without an outcome. The failure is counted; the next call tries
                        // again.
                        crate::count_failure(crate::failure_kind(&e));
                        continue;
                    }
                }
            }
            // A panic (a bug) in a unit's reading of its answers leaves its writes in an
            // unknown state: the batch is rolled back for everyone in it (the call's units not
            // answered yet fail with it), and the queue goes on.
            let ran = std::panic::AssertUnwindSafe(self.run_call(&mut turn, call))
                .catch_unwind()
                .await;
            if ran.is_err() {
                self.end_batch(&mut turn, Err("a write unit panicked".into()))
                    .await;
            }
            if turn.units >= MAX_UNITS_PER_BATCH {
                self.commit_batch(&mut turn).await;
            }
        }
        if self.queued.load(Ordering::SeqCst) == 0 {
            self.commit_batch(&mut turn).await;
        }
    }

    /// The next call's units: the first queued and those of its shape right behind it, at most
    /// `room`, a power of two of them.
    fn next_call(&self, room: usize) -> Vec<Queued> {
        let mut chains = self.chains.lock().expect("not poisoned");
        let Some(shape) = chains.front().map(|unit| unit.shape) else {
            return Vec::new();
        };
        let alike = chains
            .iter()
            .take(MAX_UNITS_PER_CALL.min(room))
            .take_while(|unit| unit.shape == shape)
            .count();
        let size = 1 << alike.ilog2();
        chains.drain(..size).collect()
    }

    /// Sends a call's units to the connection as one call, then settles each in turn. A unit
    /// kept on its answers alone leaves the units after it standing. One that is taken back or
    /// needs further statements first takes back the units after it (popping their savepoints,
    /// which nest inside its own), so the connection is as its own statements left it; those
    /// units go back to the front of the queue, unanswered, and run again in the next call.
    async fn run_call(&self, turn: &mut Batch, call: Vec<Queued>) {
        use futures_util::TryStreamExt as _;
        let mut statements = shared::Statements::new("");
        for (i, unit) in call.iter().enumerate() {
            if i > 0 {
                statements.push("; ");
            }
            statements.push(CHAIN_OPENING);
            (unit.push)(&mut statements);
        }
        let mut answers = Answers::new();
        let failure = {
            #[allow(deprecated)] // several statements per query: SQLite only; see `db`.
            let mut stream = statements.build().fetch_many(turn.connection());
            loop {
                match stream.try_next().await {
                    Ok(Some(answer)) => answers.push(answer),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            }
        };
        self.calls.fetch_add(1, Ordering::SeqCst);
        metrics::counter!("storefront_sqlite_chained_calls_total").increment(1);
        metrics::counter!("storefront_sqlite_chained_call_units_total")
            .increment(call.len() as u64);
        let (shares, unclaimed) = answers_by_unit(answers, &call);
        if unclaimed > 0 {
            // A unit said it writes fewer statements than it does (a bug): which answers are
            // whose is unknown, so none of them is kept. The call's units fail with the batch.
            debug_assert!(false, "a chained unit miscounted its statements");
            self.end_batch(turn, Err("a write unit miscounted its statements".into()))
                .await;
            return;
        }
        let mut failure = failure.map(backend);
        let mut units = call.into_iter().zip(shares);
        while let Some((unit, share)) = units.next() {
            let settled = if share.finished == unit.statements + 1 {
                // The savepoint's answer is the first.
                (unit.settle)(Ok(share.answers.into_iter().skip(1).collect()))
            } else {
                (unit.settle)(Err(failure.take().unwrap_or_else(|| {
                    StoreError::Backend("a chained statement went unanswered".into())
                })))
            };
            if let Settled::Kept(tell) = settled {
                turn.waiters.push(tell);
                turn.units += 1;
                continue;
            }
            let rest: Vec<(Queued, bool)> = units
                .by_ref()
                .map(|(unit, share)| (unit, share.finished > 0))
                .collect();
            let later = rest.iter().filter(|(_, opened)| *opened).count();
            let undone_later = undo(turn.connection(), later).await;
            // The units after it were not answered: they run again, first.
            {
                let mut chains = self.chains.lock().expect("not poisoned");
                for (unit, _) in rest.into_iter().rev() {
                    chains.push_front(unit);
                }
            }
            if let Err(e) = undone_later {
                let why = e.to_string();
                match settled {
                    Settled::Undo(answer) => answer(Err(why.clone())),
                    // Its step is dropped unrun: its caller hears it ended without an outcome.
                    Settled::More(_) | Settled::Kept(_) => {}
                }
                self.end_batch(turn, Err(why)).await;
                return;
            }
            let ran = match settled {
                Settled::Undo(answer) => {
                    let undone = match share.finished {
                        0 => Ok(()),
                        _ => undo(turn.connection(), 1).await.map_err(|e| e.to_string()),
                    };
                    let broken = undone.as_ref().err().cloned();
                    answer(undone);
                    broken.map_or(Ran::Nothing, Ran::Broken)
                }
                Settled::More(step) => step(turn.connection()).await,
                Settled::Kept(_) => unreachable!("a kept unit went on above"),
            };
            match ran {
                Ran::Kept(tell) => {
                    turn.waiters.push(tell);
                    turn.units += 1;
                }
                Ran::Nothing => {}
                Ran::Broken(why) => self.end_batch(turn, Err(why)).await,
            }
            return;
        }
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
        without_memory_statistics();
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
                    // A call of chained units answers about ten items a unit; the connection's
                    // thread stops to wait for room past this many (sqlx's default is 50).
                    .row_buffer_size(16 * MAX_UNITS_PER_CALL)
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
            calls: AtomicUsize::new(0),
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

    /// Runs a unit whose statements are all known before its turn. Queued units run one after
    /// another in one task (see `GroupCommit::drive`), several of one shape in one call, so none
    /// of them waits for the turn to be handed between tasks. A kept unit is answered once its
    /// batch is durable.
    pub(crate) async fn chained<T: Send + 'static>(
        &self,
        chain: shared::Chain<T>,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel::<StoreResult<(T, Option<BatchOutcome>)>>();
        let shared::Chain {
            shape,
            statements,
            push,
            read,
        } = chain;
        let settle = Box::new(move |answers: StoreResult<Answers>| {
            let verdict = match answers {
                Ok(answers) => read(answers),
                Err(e) => shared::Verdict::Undo(Err(e)),
            };
            match verdict {
                shared::Verdict::Keep(value) => {
                    let (tell, hear) = oneshot::channel();
                    let _ = reply.send(Ok((value, Some(hear))));
                    Settled::Kept(tell)
                }
                shared::Verdict::Undo(outcome) => Settled::Undo(Box::new(move |undone| {
                    let _ = reply.send(match undone {
                        Ok(()) => outcome.map(|value| (value, None)),
                        Err(why) => Err(StoreError::Backend(format!(
                            "a write could not be taken back: {why}"
                        ))),
                    });
                })),
                shared::Verdict::More(then) => {
                    Settled::More(Box::new(move |conn| Box::pin(run_more(conn, then, reply))))
                }
            }
        });
        let group = &self.group;
        group
            .chains
            .lock()
            .expect("not poisoned")
            .push_back(Queued {
                shape,
                statements,
                push,
                settle,
            });
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

/// A chained unit's further statements on the batch's connection, rolled back to its savepoint
/// unless kept. Its caller hears its value (with, if kept, where the batch's outcome will come)
/// at once.
async fn run_more<T>(
    conn: &mut SqliteConnection,
    then: Then<T>,
    reply: oneshot::Sender<StoreResult<(T, Option<BatchOutcome>)>>,
) -> Ran {
    let outcome = then(&mut *conn).await;
    if !matches!(outcome, Ok((_, true))) {
        if let Err(e) = undo(conn, 1).await {
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

/// Takes back the `units` innermost units of the batch: each is the innermost savepoint named
/// `unit` when its turn comes (kept units leave theirs open, and later ones nest inside).
async fn undo(conn: &mut SqliteConnection, units: usize) -> Result<(), sqlx::Error> {
    if units == 0 {
        return Ok(());
    }
    // At most a call's units: as many texts for the statement cache.
    let sql = vec!["ROLLBACK TO unit; RELEASE unit"; units].join("; ");
    sqlx::query(&sql).execute(conn).await.map(|_| ())
}

/// A unit's share of its call's answers.
struct Share {
    answers: Answers,
    /// How many of its statements (its savepoint first) finished.
    finished: usize,
}

/// Splits a call's answers by unit, in the call's order: each unit's savepoint and statements
/// (a statement's rows, then its result). A call that failed leaves the unit it failed in
/// short, and those after it with nothing. Also how many answers no unit claimed.
fn answers_by_unit(answers: Answers, call: &[Queued]) -> (Vec<Share>, usize) {
    let mut answers = answers.into_iter();
    let shares = call
        .iter()
        .map(|unit| {
            let mut share = Share {
                answers: Answers::new(),
                finished: 0,
            };
            while share.finished < unit.statements + 1 {
                let Some(answer) = answers.next() else { break };
                share.finished += usize::from(answer.is_left());
                share.answers.push(answer);
            }
            share
        })
        .collect();
    (shares, answers.count())
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

/// Turns off SQLite's memory statistics, which nothing here reads and which take a process-wide
/// mutex on every allocation and free (seen in the write connection's profile); SQLite's
/// documentation recommends this (`SQLITE_DEFAULT_MEMSTATUS=0`). Only possible before SQLite
/// initializes, so it is done before the first connection opens.
#[allow(unsafe_code)]
fn without_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `Once` makes this the only call, made before this process opens any SQLite
        // connection (they all open through `SqliteStore::open`, after it), so no other SQLite
        // call runs meanwhile, as sqlite3_config requires. Had SQLite initialized already it
        // would answer SQLITE_MISUSE and change nothing.
        unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0);
        }
    });
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

    /// A chained unit that sets `name`: its value is the rows its statement changed, and its
    /// answers decide as `verdict` says.
    fn chained_set(
        name: &'static str,
        verdict: fn(u64) -> shared::Verdict<u64>,
    ) -> shared::Chain<u64> {
        shared::Chain {
            shape: shared::Shape {
                kind: "set",
                variant: 0,
            },
            statements: 1,
            push: Box::new(move |q| {
                q.push("INSERT INTO settings (name, value) VALUES (")
                    .push_bind(name)
                    .push(", 'v')");
            }),
            read: Box::new(move |answers| {
                let changed = answers
                    .iter()
                    .filter_map(|a| a.as_ref().left())
                    .map(|done| done.rows_affected())
                    .sum();
                verdict(changed)
            }),
        }
    }

    fn keep(changed: u64) -> shared::Verdict<u64> {
        shared::Verdict::Keep(changed)
    }

    fn take_back(changed: u64) -> shared::Verdict<u64> {
        shared::Verdict::Undo(Ok(changed))
    }

    /// Kept after a further statement that sets `<name>, more` (its name is not known here, so
    /// the statement reads the last unit's row).
    fn keep_after_more(changed: u64) -> shared::Verdict<u64> {
        shared::Verdict::More(Box::new(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO settings (name, value) \
                     SELECT name || ', more', value FROM settings WHERE rowid = last_insert_rowid()",
                )
                .execute(conn)
                .await
                .map_err(backend)?;
                Ok((changed, true))
            })
        }))
    }

    /// Queues chained units while a unit of the test's holds the turn, so that they wait for it
    /// together; the held unit sets `first` and is committed once they are all queued.
    async fn queued_together(
        store: &SqliteStore,
        units: Vec<shared::Chain<u64>>,
    ) -> Vec<StoreResult<u64>> {
        let mut first = store.begin().await.unwrap();
        set(&mut first, "first").await;
        let count = units.len();
        let mut callers = Vec::new();
        for unit in units {
            let caller = store.clone();
            callers.push(tokio::spawn(async move { caller.chained(unit).await }));
            // One at a time, so they are queued in this order.
            let queued = callers.len();
            while store.group.chains.lock().unwrap().len() < queued {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(store.group.chains.lock().unwrap().len(), count);
        first.commit().await.unwrap();
        let mut answers = Vec::new();
        for caller in callers {
            answers.push(caller.await.unwrap());
        }
        answers
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

    /// Chained units queued while a unit holds the turn go to the connection in one call, in the
    /// same batch. One taken back, or needing a further statement, first takes back the units
    /// sent after it, which run again in the next call: each unit is kept or taken back alone.
    #[tokio::test]
    async fn queued_chained_units_go_in_one_call_and_each_is_kept_or_taken_back_alone() {
        let (_dir, store) = temp_store().await;
        let answers = queued_together(
            &store,
            vec![
                chained_set("kept", keep),
                chained_set("taken back", take_back),
                chained_set("kept after", keep),
                chained_set("more", keep_after_more),
            ],
        )
        .await;
        let answers: Vec<u64> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            answers,
            [1, 1, 1, 1],
            "each ran once and its caller decided"
        );
        for name in ["first", "kept", "kept after", "more", "more, more"] {
            assert!(
                stored(&store, name).await,
                "{name} is durable once answered"
            );
        }
        assert!(!stored(&store, "taken back").await);
        assert_eq!(
            store.group.calls.load(Ordering::SeqCst),
            2,
            "one call for the four, and one for the two sent after the unit taken back"
        );
        assert_eq!(
            store.group.committed.load(Ordering::SeqCst),
            1,
            "one fsync for all"
        );
    }

    /// A unit whose statement fails in a call (its name is taken in this batch) fails alone:
    /// the units sent after it, stopped by the failure, run in the next call.
    #[tokio::test]
    async fn a_chained_unit_failing_in_a_call_fails_alone() {
        let (_dir, store) = temp_store().await;
        let answers = queued_together(
            &store,
            vec![
                chained_set("before", keep),
                chained_set("first", keep),
                chained_set("after", keep),
                chained_set("last", keep),
            ],
        )
        .await;
        assert!(matches!(answers[1], Err(StoreError::Conflict(_))));
        for (i, name) in [(0, "before"), (2, "after"), (3, "last")] {
            assert_eq!(answers[i].as_ref().ok(), Some(&1));
            assert!(
                stored(&store, name).await,
                "{name} is durable once answered"
            );
        }
        assert_eq!(store.group.calls.load(Ordering::SeqCst), 2);
        assert_eq!(store.group.committed.load(Ordering::SeqCst), 1);
    }

    /// A call holds the queued units of one shape, a power of two of them, in the order they
    /// came; a unit of another shape starts a call of its own.
    #[tokio::test]
    async fn a_call_holds_a_power_of_two_of_the_queued_units_of_one_shape() {
        let (_dir, store) = temp_store().await;
        let mut units: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| chained_set(name, keep))
            .collect();
        let mut other = chained_set("other", keep);
        other.shape.variant = 1;
        units.push(other);
        let answers = queued_together(&store, units).await;
        assert!(answers.iter().all(|a| a.as_ref().ok() == Some(&1)));
        assert_eq!(
            store.group.calls.load(Ordering::SeqCst),
            3,
            "a and b; c; other"
        );
    }

    /// A unit whose reading of its answers panics (a bug) fails, its batch taken back, and the
    /// queue goes on for the units after it.
    #[tokio::test]
    async fn a_chained_unit_that_panics_fails_without_stopping_the_queue() {
        let (_dir, store) = temp_store().await;
        let panicking = chained_set("lost", |_| {
            panic!("a bug in a unit's reading of its answers")
        });
        assert!(store.chained(panicking).await.is_err());
        store.chained(chained_set("after", keep)).await.unwrap();
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
