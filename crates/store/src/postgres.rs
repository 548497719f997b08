//! The PostgreSQL adapter, for several API replicas and workers on one database.
//!
//! Transactions are READ COMMITTED; correctness under concurrency comes from conditional
//! statements (see `shared/mod.rs`) and unique constraints, which PostgreSQL enforces across processes
//! with row locks. Migrations run under sqlx's advisory lock, so replicas starting together
//! migrate once.

use crate::OpenError;
use shared::backend;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use storefront_app::ports::StoreResult;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per process; PostgreSQL's default limit is 100 for the whole server.
const POOL_SIZE: u32 = 16;

/// A pooled connection idle this long is pinged before it is handed out (the server may have
/// closed it meanwhile: a restart, an idle timeout).
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    appends: Arc<crate::append::Appends>,
}

impl PgStore {
    /// Connects and applies the embedded migrations.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| OpenError::Connect(e.to_string()))?
            // Every statement is prepared once per connection and planned once, for any values
            // (a generic plan). PostgreSQL's default plans the first five executions for their
            // values and then keeps planning each one whenever a generic plan looks dearer, which
            // for the store's short statements costs more than running them (a page of orders:
            // 0.14 ms planning, 0.03 ms running) and made a page of one account's orders 0.54x as
            // fast once a million other orders were loaded (docs/benchmarks.md, "Issue 19, ninth
            // steps"). Where a value decides the plan it is written into the SQL as a constant
            // (statuses, page sizes), and a page of one account's rows is written so that one
            // index alone serves it, whatever the estimates (`db::ACCOUNT_PAGE`).
            .options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            // A connection left inside a transaction (a caller dropped at the wrong moment) is
            // closed, which ends the transaction on the server, instead of being reused.
            // A connection in steady use is not pinged (a round trip to the server before every
            // query); one idle for a while is, and a dead one is replaced before anyone uses it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    Ok(is_clean(conn, "before_acquire")
                        && (meta.idle_for < PING_WHEN_IDLE_FOR || conn.ping().await.is_ok()))
                })
            })
            .after_release(|conn, _| Box::pin(async move { Ok(is_clean(conn, "after_release")) }))
            .connect_with(options)
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| OpenError::Migrate(e.to_string()))?;
        Ok(Self {
            pool,
            appends: Arc::default(),
        })
    }

    /// Opens a write transaction in a task of its own, so a dropped caller cannot interrupt it
    /// (see [`crate::detached`]).
    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        let pool = self.pool.clone();
        crate::detached(async move { pool.begin().await })
            .await
            .map_err(backend)
    }

    /// A unit whose statements are all known first, in a transaction of its own. PostgreSQL
    /// takes one statement per call with binds (`db::CHAINS_STATEMENTS` is `false`, so the
    /// shared code sends it no more); `then` reads the answers and says whether to commit.
    pub(crate) async fn chained<T: Send + 'static>(
        &self,
        mut statements: shared::Statements<'static>,
        then: db::Then<T>,
    ) -> StoreResult<T> {
        use futures_util::TryStreamExt as _;
        let mut tx = self.begin().await?;
        #[allow(deprecated)] // the same call as SQLite's chained units
        let answers: db::Answers = statements
            .build()
            .fetch_many(&mut *tx)
            .try_collect()
            .await
            .map_err(backend)?;
        let (value, keep) = then(&mut tx, answers).await?;
        if keep {
            tx.commit().await.map_err(backend)?;
        }
        Ok(value)
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn appends(&self) -> &crate::append::Appends {
        &self.appends
    }
}

fn is_clean(conn: &sqlx::PgConnection, when: &'static str) -> bool {
    let open = conn.is_in_transaction();
    if open {
        crate::discard_unclean_connection(when);
    }
    !open
}

/// What the shared SQL (`shared/`) needs to know about this backend.
mod db {
    pub(super) type Adapter = super::PgStore;
    pub(super) type Row = sqlx::postgres::PgRow;
    pub(super) type Connection = sqlx::PgConnection;
    pub(super) type Transaction = sqlx::Transaction<'static, sqlx::Postgres>;
    pub(super) type Database = sqlx::Postgres;

    /// Commits in a task of its own (see `crate::detached`).
    pub(super) async fn commit(tx: Transaction) -> Result<(), sqlx::Error> {
        crate::detached(tx.commit()).await
    }
    /// Reads answered on the calling thread: none here, every statement is a round trip to the
    /// server (the SQLite adapter's comment says why it has them).
    pub(super) fn read_inline<R>(
        _: &Adapter,
        _: &str,
        _: &[&str],
        _: &dyn Fn(&mut dyn super::shared::rows::Rows) -> storefront_app::ports::StoreResult<R>,
    ) -> Option<storefront_app::ports::StoreResult<R>> {
        None
    }
    /// Appended to the subquery that picks the next job to claim: a claimer skips a job another
    /// transaction is claiming instead of waiting for it, so no job is held by two workers.
    pub(super) const JOB_CLAIM_LOCK: &str = "FOR UPDATE SKIP LOCKED";
    /// Appended to the read of an agent before its budgets are checked: locks the agent's row,
    /// so the budget checks of one agent's concurrent orders run one after another.
    pub(super) const ROW_LOCK: &str = "FOR UPDATE";
    /// Appended to the subquery that picks deliveries to claim (which joins their endpoints):
    /// locks the deliveries only, skipping those another claimer holds.
    pub(super) const DELIVERY_CLAIM_LOCK: &str = "FOR UPDATE OF d SKIP LOCKED";
    /// An event's position in the log: the next value of its sequence, taken under
    /// `EVENT_ORDER_LOCK`.
    pub(super) fn next_event_position(_nth: usize) -> &'static str {
        "DEFAULT"
    }
    /// Several statements in one query: not with binds (the extended protocol runs one).
    pub(super) const CHAINS_STATEMENTS: bool = false;
    /// Data-modifying CTEs (`WITH x AS (INSERT ... RETURNING ...)`): a one-unit order's writes
    /// go as one statement instead (see `shared/orders.rs`).
    pub(super) const WRITES_IN_CTES: bool = true;
    /// How a page of one account's rows asks for them, newest first: the condition on the
    /// account (`$1`) and the order. Written so that only the `(account_id, id)` index gives
    /// that order. With `account_id = $1 ... ORDER BY id DESC`, PostgreSQL's planner walks the
    /// primary key backwards and filters by account whenever the account holds a large share of
    /// the table — through every newer row of the other accounts when the account's own rows are
    /// older (5 ms and 40,000 rows thrown away for a page of 51, against 0.05 ms and 5 buffers
    /// this way). A range that is one value is not an equality to the planner, so it cannot
    /// drop `account_id` from the order as it does for a column an equality fixes; and a
    /// backward scan still starts at the cursor (`id < $n`), as with an equality.
    pub(super) const ACCOUNT_PAGE: (&str, &str) =
        ("account_id BETWEEN $1 AND $1", "account_id DESC, id DESC");
    /// A chained unit's first statement: none, its transaction is its own.
    pub(super) const CHAIN_OPENING: &str = "";
    pub(super) type Answers = Vec<sqlx::Either<sqlx::postgres::PgQueryResult, Row>>;
    pub(super) type Then<T> = Box<
        dyn for<'c> FnOnce(
                &'c mut Connection,
                Answers,
            ) -> futures_util::future::BoxFuture<
                'c,
                storefront_app::ports::StoreResult<(T, bool)>,
            > + Send,
    >;
    /// Taken before an account's events are written, and held until commit: the account's row,
    /// so that its events take their positions in commit order. `FOR NO KEY UPDATE` is the lock
    /// a charge's balance update takes (so credit orders wait for nothing new); unlike
    /// `FOR UPDATE` it does not conflict with the key-share locks that inserting rows which
    /// reference the account takes, which would deadlock two writers of one account.
    pub(super) const EVENT_ORDER_LOCK: Option<&str> =
        Some("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE");
}

// Compiled once per backend on purpose: the same SQL over this backend's `db` types.
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_app::ports::SettingsStore;

    /// A store on a database of its own, or `None` (the test is skipped) without
    /// `STOREFRONT_TEST_POSTGRES_URL`.
    async fn fresh_store() -> Option<PgStore> {
        let Some(admin_url) = std::env::var("STOREFRONT_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("skipped on PostgreSQL: set STOREFRONT_TEST_POSTGRES_URL to run it");
            return None;
        };
        // A database of its own (named like the server tests' so `.ci/run` drops it). The
        // counter tells apart the tests of this process that start in the same microsecond.
        static CREATED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "sf_test_store_{}_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros(),
            CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => unreachable!("a PostgreSQL URL names a database"),
        };
        Some(PgStore::open(&url).await.unwrap())
    }

    /// A connection returned to the pool inside a transaction nothing will end (a caller dropped
    /// at the wrong moment) is closed instead of being handed out again.
    #[tokio::test]
    async fn a_connection_left_inside_a_transaction_is_not_reused() {
        let Some(store) = fresh_store().await else {
            return;
        };

        // Hold every connection of the pool, each left inside a transaction with no guard.
        let mut held = Vec::new();
        for _ in 0..POOL_SIZE {
            let mut conn = store.pool.acquire().await.unwrap();
            std::mem::forget(conn.begin().await.unwrap());
            held.push(conn);
        }
        drop(held);
        // Every later write gets a clean connection and commits. (Reusing a connection left in
        // a transaction would hang here on the row lock that transaction keeps; the limit
        // bounds that failure, it is not a timing assumption.)
        for _ in 0..POOL_SIZE {
            tokio::time::timeout(
                Duration::from_secs(30),
                store.probe_write(chrono::Utc::now()),
            )
            .await
            .expect("no write waits on a transaction left open")
            .expect("writes work");
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM write_probe")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(count, 1, "the probe's row is there, committed");
    }

    /// A page of an account that holds most of a table, but whose newest rows are older than
    /// the others', is read through the account's index: walking the primary key backwards
    /// would first pass every newer row of the other accounts.
    #[tokio::test]
    async fn a_page_of_an_account_is_read_through_its_index() {
        use storefront_app::page::PageRequest;
        use storefront_app::ports::OrderStore;
        use storefront_domain::ids::AccountId;

        let Some(store) = fresh_store().await else {
            return;
        };
        let (older, newer) = (60_000, 40_000);
        sqlx::raw_sql(&format!(
            "INSERT INTO accounts (id, email, name, currency, created_at, updated_at) VALUES
                 ('acct_big', 'big@example.test', 'Big', 'usd', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),
                 ('acct_new', 'new@example.test', 'New', 'usd', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
             INSERT INTO ledger_entries
                 (id, account_id, kind, amount_minor, balance_after_minor, description, created_at)
             SELECT 'le_' || lpad(n::text, 8, '0'),
                    CASE WHEN n <= {older} THEN 'acct_big' ELSE 'acct_new' END,
                    'top_up', 1, 1, 'seed', '2026-01-01T00:00:00.000Z'
             FROM generate_series(1, {older} + {newer}) AS n;
             ANALYZE ledger_entries;"
        ))
        .execute(&store.pool)
        .await
        .unwrap();

        // The first page, and a deep one (after the cursor, its newest entries are half way).
        let middle = format!("le_{:08}", older / 2);
        for (cursor, newest) in [(None, older), (Some(middle), older / 2 - 1)] {
            let page = PageRequest {
                limit: 50,
                cursor: cursor.clone(),
            };
            let mut params = vec!["acct_big"];
            let sql = shared::newest_first("ledger_entries", "", &page, &mut params);
            let explain = format!("EXPLAIN {sql}");
            let mut query = sqlx::query_scalar(&explain);
            for param in params {
                query = query.bind(param);
            }
            let plan: Vec<String> = query.fetch_all(&store.pool).await.unwrap();
            let plan = plan.join("\n");
            assert!(
                plan.contains("ledger_entries_by_account") && !plan.contains("Filter"),
                "the page is read from the account's index, with no row read and thrown away:\n{plan}"
            );

            let entries = store
                .list_ledger(&AccountId::from_trusted("acct_big".into()), &page)
                .await
                .unwrap();
            let ids: Vec<String> = entries.iter().map(|e| e.id.as_str().to_owned()).collect();
            let expected: Vec<String> = (newest - 50..=newest)
                .rev()
                .map(|n| format!("le_{n:08}"))
                .collect();
            assert_eq!(
                ids, expected,
                "the account's entries, newest first, and one more"
            );
        }
    }

    /// A row of a few kilobytes (an order with its result, a key's recorded answer, an event's
    /// snapshot) is stored as it is, without the compression PostgreSQL applies past about
    /// 2 KB by default; a row larger than a page is still compressed.
    #[tokio::test]
    async fn rows_of_a_few_kilobytes_are_stored_uncompressed() {
        let Some(store) = fresh_store().await else {
            return;
        };
        // Very compressible text, as JSON is: compression would shrink it whenever tried.
        let text = |bytes: usize| format!("{{\"q\":\"{}\"}}", "abcd".repeat(bytes / 4));
        sqlx::raw_sql(
            "INSERT INTO accounts (id, email, name, currency, created_at, updated_at) VALUES
                 ('acct_a', 'a@example.test', 'A', 'usd', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        for (id, bytes) in [("evt_small", 3_000), ("evt_large", 12_000)] {
            sqlx::query(
                "INSERT INTO events (id, account_id, type, data, created_at)
                 VALUES ($1, 'acct_a', 'order.completed', $2, '2026-01-01T00:00:00.000Z')",
            )
            .bind(id)
            .bind(text(bytes))
            .execute(&store.pool)
            .await
            .unwrap();
        }
        let compression = |id: &'static str| {
            let pool = store.pool.clone();
            async move {
                sqlx::query_scalar::<_, Option<String>>(
                    "SELECT pg_column_compression(data) FROM events WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        };
        assert_eq!(
            compression("evt_small").await,
            None,
            "3 KB are kept as they are"
        );
        assert!(
            compression("evt_large").await.is_some(),
            "a row past a page is still compressed"
        );
        // The same storage for the other tables whose rows are a few kilobytes.
        let tuned: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_class
             WHERE 'toast_tuple_target=8160' = ANY(reloptions) ORDER BY relname",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(tuned, ["events", "idempotency_keys", "orders"]);
    }
}
