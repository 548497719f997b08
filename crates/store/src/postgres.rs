//! The PostgreSQL adapter, for several API replicas and workers on one database.
//!
//! Transactions are READ COMMITTED; correctness under concurrency comes from conditional
//! statements (see `sql.rs`) and unique constraints, which PostgreSQL enforces across processes
//! with row locks. Migrations run under sqlx's advisory lock, so replicas starting together
//! migrate once.

use crate::OpenError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per process; PostgreSQL's default limit is 100 for the whole server.
const POOL_SIZE: u32 = 16;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies the embedded migrations.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let options =
            PgConnectOptions::from_str(url).map_err(|e| OpenError::Connect(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| OpenError::Migrate(e.to_string()))?;
        Ok(Self { pool })
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(backend)
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

crate::sql::shared_store!(
    PgStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    sqlx::PgConnection,
    "FOR UPDATE SKIP LOCKED",
    "FOR UPDATE"
);
