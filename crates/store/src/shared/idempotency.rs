//! Idempotency keys: claimed before a request acts, completed in the transaction of its
//! effect.

use async_trait::async_trait;
use sqlx::Row as _;
use storefront_app::ports::{
    ClaimOutcome, IdempotencyCompletion, IdempotencyRef, IdempotencyStore, StoreResult,
};
use storefront_domain::timestamp::{format as ts, Timestamp};

use super::common::{backend, commit, execute, parse_json, parse_ts, to_json, Statements};
use super::db;

#[async_trait]
impl IdempotencyStore for db::Adapter {
    async fn claim_idempotency_key(
        &self,
        key: &IdempotencyRef,
        fingerprint: &str,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<ClaimOutcome> {
        let mut tx = self.begin().await?;
        let now_s = ts(&now);
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, route, key, fingerprint, locked_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&key.scope)
        .bind(&key.route)
        .bind(&key.key)
        .bind(fingerprint)
        .bind(&now_s)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        let outcome = if inserted {
            ClaimOutcome::Acquired
        } else {
            let row = sqlx::query(
                "SELECT fingerprint, outcome, locked_at FROM idempotency_keys WHERE scope = $1 AND route = $2 AND key = $3",
            )
            .bind(&key.scope)
            .bind(&key.route)
            .bind(&key.key)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            let original: String = row.get("fingerprint");
            let stored: Option<String> = row.get("outcome");
            let locked_at_raw: String = row.get("locked_at");
            let locked_at = parse_ts(&locked_at_raw)?;
            if stored.is_none() && original == fingerprint && locked_at < stale_before {
                // The holder never finished (a crashed process): take the key over. The UPDATE
                // names the lock time it saw, so of two processes taking over at once only one
                // wins; the other sees the key as in progress.
                let took = sqlx::query(
                    "UPDATE idempotency_keys SET locked_at = $1
                     WHERE scope = $2 AND route = $3 AND key = $4 AND outcome IS NULL AND locked_at = $5",
                )
                .bind(&now_s)
                .bind(&key.scope)
                .bind(&key.route)
                .bind(&key.key)
                .bind(&locked_at_raw)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected()
                    == 1;
                if took {
                    ClaimOutcome::Acquired
                } else {
                    ClaimOutcome::Existing {
                        fingerprint: original,
                        outcome: None,
                    }
                }
            } else {
                ClaimOutcome::Existing {
                    fingerprint: original,
                    outcome: stored.as_deref().map(parse_json).transpose()?,
                }
            }
        };
        commit(tx).await?;
        Ok(outcome)
    }

    async fn complete_idempotency_key(
        &self,
        completion: &IdempotencyCompletion,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        complete_key(&mut tx, completion).await?;
        commit(tx).await
    }

    async fn release_idempotency_key(&self, key: &IdempotencyRef) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND route = $2 AND key = $3 AND outcome IS NULL")
            .bind(&key.scope)
            .bind(&key.route)
            .bind(&key.key)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn unlock_idempotency_key(&self, key: &IdempotencyRef) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE idempotency_keys SET locked_at = $4 WHERE scope = $1 AND route = $2 AND key = $3 AND outcome IS NULL")
            .bind(&key.scope)
            .bind(&key.route)
            .bind(&key.key)
            .bind("1970-01-01T00:00:00.000Z")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn idempotency_key_exists(&self, key: &IdempotencyRef) -> StoreResult<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM idempotency_keys WHERE scope = $1 AND route = $2 AND key = $3",
        )
        .bind(&key.scope)
        .bind(&key.route)
        .bind(&key.key)
        .fetch_optional(self.reader())
        .await
        .map_err(backend)?;
        Ok(found.is_some())
    }
}

/// Inserts a key already done, with its answer (a request that was never claimed because its
/// whole effect is this one unit); `false`, and nothing written, when the key exists.
pub(super) async fn insert_completed_key(
    conn: &mut db::Connection,
    c: &IdempotencyCompletion,
    fingerprint: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let mut insert = Statements::new("");
    push_completed_key(&mut insert, c, fingerprint, now);
    Ok(execute(conn, insert).await? == 1)
}

/// The statement of [`insert_completed_key`]: one row inserted, none when the key exists.
pub(super) fn push_completed_key(
    q: &mut Statements<'_>,
    c: &IdempotencyCompletion,
    fingerprint: &str,
    now: Timestamp,
) {
    let now_s = ts(&now);
    q.push(
        "INSERT INTO idempotency_keys (scope, route, key, fingerprint, outcome, locked_at, created_at, completed_at) VALUES (",
    );
    let mut values = q.separated(", ");
    values
        .push_bind(c.key.scope.clone())
        .push_bind(c.key.route.clone())
        .push_bind(c.key.key.clone())
        .push_bind(fingerprint.to_owned())
        .push_bind(to_json(&c.outcome))
        .push_bind(now_s.clone())
        .push_bind(now_s.clone())
        .push_bind(now_s);
    q.push(") ON CONFLICT DO NOTHING");
}

pub(super) async fn complete_key(
    conn: &mut db::Connection,
    c: &IdempotencyCompletion,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET outcome = $1, completed_at = locked_at
         WHERE scope = $2 AND route = $3 AND key = $4",
    )
    .bind(to_json(&c.outcome))
    .bind(&c.key.scope)
    .bind(&c.key.route)
    .bind(&c.key.key)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}
