//! Fills the database with orders of other accounts, so reads can be measured against a large
//! store: every preloaded row is a copy of one of the bench account's real rows (so it is whatever
//! the current schema says a row is) with new ids, a new account, and its own idempotency key.
//! One SQL statement per table: a number series joined with the template row.

use std::time::{Duration, Instant};

/// Either database, the way the storefront uses it.
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    pub async fn open(postgres: Option<&str>, sqlite_file: &std::path::Path) -> Self {
        match postgres {
            Some(url) => Self::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await
                    .expect("PostgreSQL answers"),
            ),
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(sqlite_file)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .foreign_keys(true);
                Self::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await
                        .expect("SQLite opens"),
                )
            }
        }
    }

    /// Brings the database to the state a server finds after a quiet moment, so that two
    /// measurements start alike: SQLite's write-ahead log folded in and emptied; PostgreSQL
    /// vacuumed and analyzed (what autovacuum would do after a million inserts, done now rather
    /// than in the middle of the measurement).
    pub async fn checkpoint(&self) {
        match self {
            Self::Sqlite(_) => self.execute("PRAGMA wal_checkpoint(TRUNCATE)").await,
            Self::Postgres(_) => self.execute("VACUUM ANALYZE").await,
        }
    }

    /// Closes the connections (SQLite checkpoints its log as the last one closes).
    pub async fn close(self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }

    async fn execute(&self, sql: &str) {
        let result = match self {
            Self::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            Self::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        };
        if let Err(e) = result {
            panic!("preload statement failed: {e}\n{sql}");
        }
    }

    async fn text(&self, sql: &str) -> Vec<String> {
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap_or_else(|e| panic!("preload query failed: {e}\n{sql}"))
    }

    async fn number(&self, sql: &str) -> i64 {
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("preload query failed: {e}\n{sql}"))
    }

    async fn columns(&self, table: &str) -> Vec<String> {
        let sql = match self {
            Self::Sqlite(_) => format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
            Self::Postgres(_) => format!(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}' ORDER BY ordinal_position"
            ),
        };
        self.text(&sql).await
    }

    /// `id` as 32 lowercase hex digits (the body of a storefront id).
    fn hex(&self, expr: &str) -> String {
        match self {
            Self::Sqlite(_) => format!("printf('%032x', {expr})"),
            Self::Postgres(_) => format!("lpad(to_hex({expr}), 32, '0')"),
        }
    }

    /// The numbers 1..=count as `n.i`: (a clause before the INSERT, the FROM item).
    fn series(&self, count: u64) -> (String, String) {
        match self {
            Self::Sqlite(_) => (
                format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "),
                "n".into(),
            ),
            Self::Postgres(_) => (String::new(), format!("generate_series(1, {count}) AS n(i)")),
        }
    }

    /// Copies the row of `table` that `template` selects `count` times, each column either as
    /// the template has it or as `overrides` computes it from `n.i`; `skip` columns take their
    /// defaults.
    async fn copy(
        &self,
        table: &str,
        template: &str,
        count: u64,
        overrides: &[(&str, String)],
        skip: &[&str],
    ) {
        let columns: Vec<String> = self
            .columns(table)
            .await
            .into_iter()
            .filter(|c| !skip.contains(&c.as_str()))
            .collect();
        assert!(!columns.is_empty(), "table {table} has no columns");
        let values: Vec<String> = columns
            .iter()
            .map(|c| {
                overrides
                    .iter()
                    .find(|(name, _)| name == c)
                    .map_or_else(|| format!("t.{c}"), |(_, expr)| expr.clone())
            })
            .collect();
        let (with, from) = self.series(count);
        let quoted: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        self.execute(&format!(
            "{with}INSERT INTO {table} ({}) SELECT {} FROM {from}, {table} t WHERE {template}",
            quoted.join(", "),
            values.join(", ")
        ))
        .await;
    }
}

/// What was loaded and how long it took.
pub struct Preloaded {
    pub orders: u64,
    pub accounts: u64,
    pub took: Duration,
}

/// Adds `orders` orders, each with its charge in the ledger and one event, spread over
/// `accounts` new accounts, all copied from `account`'s `order`. The server must be stopped.
pub async fn preload(db: &Db, account: &str, order: &str, orders: u64, accounts: u64) -> Preloaded {
    let started = Instant::now();
    let account_of = |i: &str| {
        format!(
            "'acct_' || {}",
            db.hex(&format!("(({i}) % {accounts}) + 1"))
        )
    };
    db.copy(
        "accounts",
        &format!("t.id = '{account}'"),
        accounts,
        &[
            ("id", format!("'acct_' || {}", db.hex("n.i"))),
            ("email", "'preload-' || n.i || '@example.com'".into()),
        ],
        &[],
    )
    .await;
    eprintln!("    {accounts} accounts ({:.0?})", started.elapsed());
    db.copy(
        "orders",
        &format!("t.id = '{order}'"),
        orders,
        &[
            ("id", format!("'ord_' || {}", db.hex("n.i"))),
            ("account_id", account_of("n.i")),
            ("idempotency_key", "'preload-' || n.i".into()),
        ],
        &[],
    )
    .await;
    eprintln!("    {orders} orders ({:.0?})", started.elapsed());
    db.copy(
        "ledger_entries",
        &format!("t.order_id = '{order}' AND t.kind = 'charge'"),
        orders,
        &[
            ("id", format!("'led_' || {}", db.hex("n.i"))),
            ("account_id", account_of("n.i")),
            ("order_id", format!("'ord_' || {}", db.hex("n.i"))),
        ],
        &[],
    )
    .await;
    eprintln!("    {orders} ledger entries ({:.0?})", started.elapsed());
    let event = db
        .text(&format!(
            "SELECT id FROM events WHERE account_id = '{account}' ORDER BY id LIMIT 1"
        ))
        .await;
    if let Some(event) = event.first() {
        // PostgreSQL numbers positions by its sequence; SQLite by one more than the last.
        let (position, skip): (Vec<(&str, String)>, &[&str]) = match db {
            Db::Sqlite(_) => {
                let last = db
                    .number("SELECT COALESCE(MAX(position), 0) FROM events")
                    .await;
                (vec![("position", format!("{last} + n.i"))], &[])
            }
            Db::Postgres(_) => (Vec::new(), &["position"]),
        };
        let mut overrides = vec![
            ("id", format!("'evt_' || {}", db.hex("n.i"))),
            ("account_id", account_of("n.i")),
        ];
        overrides.extend(position);
        db.copy(
            "events",
            &format!("t.id = '{event}'"),
            orders,
            &overrides,
            skip,
        )
        .await;
        eprintln!("    {orders} events ({:.0?})", started.elapsed());
    }
    Preloaded {
        orders,
        accounts,
        took: started.elapsed(),
    }
}

/// The id in the middle of `account`'s orders: a cursor for a deep page.
pub async fn middle_order(db: &Db, account: &str) -> Option<String> {
    let count = db
        .number(&format!(
            "SELECT COUNT(*) FROM orders WHERE account_id = '{account}'"
        ))
        .await;
    db.text(&format!(
        "SELECT id FROM orders WHERE account_id = '{account}' ORDER BY id LIMIT 1 OFFSET {}",
        count / 2
    ))
    .await
    .into_iter()
    .next()
}
