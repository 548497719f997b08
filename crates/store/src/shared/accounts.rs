//! Accounts, API keys, device grants, login codes and dashboard sessions.

use async_trait::async_trait;
use storefront_app::ports::{AccountStore, StoreResult};
use storefront_domain::account::{Account, ApiKey, DashboardSession, LoginCode};
use storefront_domain::agent::DeviceGrant;
use storefront_domain::ids::{AccountId, KeyId};
use storefront_domain::timestamp::{format as ts, Timestamp};

use super::common::{backend, commit};
use super::db;
use super::rows::{
    account_from_row, dashboard_session_from_row, device_grant_from_row, key_from_row,
    login_code_from_row,
};

#[async_trait]
impl AccountStore for db::Adapter {
    async fn create_account(&self, account: &Account, owner_key: &ApiKey) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let created = ts(&account.created_at);
        sqlx::query(
            "INSERT INTO accounts (id, email, name, currency, balance_minor, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 0, $5, $5)",
        )
        .bind(account.id.as_str())
        .bind(&account.email)
        .bind(&account.name)
        .bind(account.currency.as_str())
        .bind(&created)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        insert_key(&mut tx, owner_key).await?;
        commit(tx).await
    }

    async fn get_account(&self, id: &AccountId) -> StoreResult<Option<Account>> {
        self.find_one(
            "SELECT * FROM accounts WHERE id = $1",
            id.as_str(),
            account_from_row,
        )
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY id")
            .fetch_all(self.reader())
            .await
            .map_err(backend)?;
        rows.iter().map(account_from_row).collect()
    }

    async fn count_accounts(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(self.reader())
            .await
            .map_err(backend)
    }

    async fn set_balance_low_threshold(
        &self,
        account: &AccountId,
        threshold_minor: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE accounts SET balance_low_minor = $1 WHERE id = $2")
            .bind(threshold_minor)
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_key(&mut tx, key).await?;
        commit(tx).await
    }

    async fn find_api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>> {
        self.find_one(
            "SELECT * FROM api_keys WHERE secret_hash = $1",
            secret_hash,
            key_from_row,
        )
        .await
    }

    async fn get_api_key(&self, id: &KeyId) -> StoreResult<Option<ApiKey>> {
        self.find_one(
            "SELECT * FROM api_keys WHERE id = $1",
            id.as_str(),
            key_from_row,
        )
        .await
    }

    async fn list_api_keys(&self, account: &AccountId) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_keys WHERE account_id = $1 ORDER BY id")
            .bind(account.as_str())
            .fetch_all(self.reader())
            .await
            .map_err(backend)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(
        &self,
        account: &AccountId,
        id: &KeyId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
        )
        .bind(ts(&now))
        .bind(id.as_str())
        .bind(account.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_device_grant(&self, g: &DeviceGrant) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO device_grants (device_code_hash, user_code, customer_email, agent_name, status, account_id, agent_id,
                                        interval_seconds, last_polled_at, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&g.device_code_hash)
        .bind(&g.user_code)
        .bind(&g.customer_email)
        .bind(&g.agent_name)
        .bind(&g.status)
        .bind(g.account_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(g.agent_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(g.interval_seconds)
        .bind(g.last_polled_at.as_ref().map(ts))
        .bind(ts(&g.created_at))
        .bind(ts(&g.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn find_device_grant(&self, hash: &str) -> StoreResult<Option<DeviceGrant>> {
        self.find_one(
            "SELECT * FROM device_grants WHERE device_code_hash = $1",
            hash,
            device_grant_from_row,
        )
        .await
    }

    async fn find_device_grant_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceGrant>> {
        self.find_one(
            "SELECT * FROM device_grants WHERE user_code = $1",
            user_code,
            device_grant_from_row,
        )
        .await
    }

    async fn update_device_grant(
        &self,
        g: &DeviceGrant,
        expected_status: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE device_grants SET status = $1, account_id = $2, agent_id = $3, interval_seconds = $4, last_polled_at = $5
             WHERE device_code_hash = $6 AND status = $7",
        )
        .bind(&g.status)
        .bind(g.account_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(g.agent_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(g.interval_seconds)
        .bind(g.last_polled_at.as_ref().map(ts))
        .bind(&g.device_code_hash)
        .bind(expected_status)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        commit(tx).await?;
        Ok(done == 1)
    }

    async fn insert_login_code(&self, c: &LoginCode) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO login_codes (code_hash, account_id, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, NULL)")
            .bind(&c.code_hash)
            .bind(c.account_id.as_str())
            .bind(ts(&c.created_at))
            .bind(ts(&c.expires_at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn find_login_code(&self, code_hash: &str) -> StoreResult<Option<LoginCode>> {
        self.find_one(
            "SELECT * FROM login_codes WHERE code_hash = $1",
            code_hash,
            login_code_from_row,
        )
        .await
    }

    async fn use_login_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE login_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
        )
        .bind(ts(&now))
        .bind(code_hash)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        commit(tx).await?;
        Ok(done == 1)
    }

    async fn insert_dashboard_session(&self, d: &DashboardSession) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (secret_hash, account_id, key_id, created_at, expires_at, ended_at)
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&d.secret_hash)
        .bind(d.account_id.as_str())
        .bind(d.key_id.as_ref().map(|k| k.as_str().to_owned()))
        .bind(ts(&d.created_at))
        .bind(ts(&d.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn find_dashboard_session(
        &self,
        secret_hash: &str,
    ) -> StoreResult<Option<DashboardSession>> {
        self.find_one(
            "SELECT * FROM dashboard_sessions WHERE secret_hash = $1",
            secret_hash,
            dashboard_session_from_row,
        )
        .await
    }

    async fn end_dashboard_session(&self, secret_hash: &str, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE dashboard_sessions SET ended_at = $1 WHERE secret_hash = $2 AND ended_at IS NULL")
            .bind(ts(&now))
            .bind(secret_hash)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }
}

async fn insert_key(conn: &mut db::Connection, key: &ApiKey) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, role, agent_id, name, prefix, secret_hash, created_at, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(key.id.as_str())
    .bind(key.account_id.as_str())
    .bind(key.role.as_str())
    .bind(key.agent_id.as_ref().map(|a| a.as_str().to_owned()))
    .bind(&key.name)
    .bind(&key.prefix)
    .bind(&key.secret_hash)
    .bind(ts(&key.created_at))
    .bind(key.revoked_at.as_ref().map(ts))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}
