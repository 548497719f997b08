//! The SQL shared by both adapters, written once.
//!
//! Both schemas store the same columns with the same types as far as the code sees them (text
//! ids, RFC 3339 text timestamps with milliseconds, JSON as text, 64-bit integers, booleans), and
//! every statement uses `$N` placeholders, which SQLite and PostgreSQL both accept. So one body of
//! code serves both; `shared_store!` instantiates it for a store type whose `begin()` opens a
//! write transaction the backend's way and whose `reader()` is a pool for reads.
//!
//! Concurrency does not rely on the backend's isolation level: every check that guards money or a
//! state change is part of the statement that makes the change (`UPDATE ... WHERE balance + x >=
//! 0`, `UPDATE ... WHERE status IN (...)`, `INSERT ... ON CONFLICT DO NOTHING`), so on PostgreSQL
//! the row lock plus READ COMMITTED's re-check of the WHERE clause serializes racing writers, and on
//! SQLite there is only ever one writer.

macro_rules! shared_store {
    ($store:ident, $db:ty, $row:ty, $conn:ty, $claim_lock:expr, $row_lock:expr) => {
        use async_trait::async_trait;
        use serde::de::DeserializeOwned;
        use serde_json::Value;
        use sqlx::Row;
        use storefront_app::page::PageRequest;
        use storefront_app::ports::{
            AccountStore, AgentRule, BudgetGuard, Change, ClaimOutcome, GovernanceStore, IdempotencyCompletion, IdempotencyRef, IdempotencyStore, JobStore, NewOrder, OrderFilter, OrderStore, PaymentStore, QuoteStore, ResourceToken, ServiceStore, SettingsStore, StoreError, StoreResult,
        };
        use storefront_domain::account::{Account, ApiKey, DashboardSession, KeyRole, LoginCode};
        use storefront_domain::ids::{AccountId, AgentId, ApprovalId, AuditId, CheckoutId, JobId, KeyId, LedgerEntryId, OrderId, PaymentId, QuoteId, ServiceId};
        use storefront_domain::payment::{Payment, PaymentPurpose, PaymentState};
        use storefront_domain::agent::{Agent, AgentStatus, Approval, ApprovalStatus, AuditEvent, DeviceGrant};
        use storefront_domain::governance::{Rule, RuleAction, RuleKind};
        use storefront_domain::checkout::{Checkout, CheckoutStatus};
        use storefront_domain::job::{Job, JobOutcome, JobStatus};
        use storefront_domain::ledger::{LedgerEntry, LedgerKind, LedgerMovement};
        use storefront_domain::money::Currency;
        use storefront_domain::order::{Order, OrderStatus, PaymentMethod, PaymentStatus};
        use storefront_domain::quote::Quote;
        use storefront_domain::service::{Service, ServiceStatus};
        use storefront_domain::timestamp::{format as ts, Timestamp};

fn backend(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error() {
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_owned());
        }
    }
    crate::count_failure(crate::failure_kind(&e));
    StoreError::Backend(e.to_string())
}

fn corrupt(what: &str) -> StoreError {
    crate::count_failure("unreadable");
    StoreError::Backend(format!("unreadable {what} in the database"))
}

/// Commits in a task of its own: once a use-case reaches its commit, the commit happens and its
/// outcome is settled even if the caller is dropped at this `.await` (see `crate::detached`).
async fn commit(tx: sqlx::Transaction<'static, $db>) -> StoreResult<()> {
    crate::detached(tx.commit()).await.map_err(backend)
}

fn parse_ts(raw: &str) -> StoreResult<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| corrupt("timestamp"))
}

fn parse_json<T: DeserializeOwned>(raw: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|_| corrupt("JSON column"))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

/// Applies a ledger movement inside the caller's transaction: the conditional update refuses an
/// overdraft atomically, then the entry records the balance it produced.
async fn apply_movement(
    conn: &mut $conn,
    m: &LedgerMovement,
    now: Timestamp,
) -> StoreResult<LedgerEntry> {
    let now_s = ts(&now);
    let updated: Option<i64> = sqlx::query_scalar(
        "UPDATE accounts SET balance_minor = balance_minor + $1, updated_at = $2
         WHERE id = $3 AND balance_minor + $1 >= 0 RETURNING balance_minor",
    )
    .bind(m.amount_minor)
    .bind(&now_s)
    .bind(m.account_id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    let Some(balance_after) = updated else {
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT balance_minor FROM accounts WHERE id = $1")
                .bind(m.account_id.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
        return Err(match balance {
            Some(balance_minor) => StoreError::InsufficientCredits { balance_minor },
            None => StoreError::NotFound(format!("account {}", m.account_id)),
        });
    };
    let entry = LedgerEntry {
        id: LedgerEntryId::generate(),
        account_id: m.account_id.clone(),
        kind: m.kind,
        amount_minor: m.amount_minor,
        balance_after_minor: balance_after,
        order_id: m.order_id.clone(),
        description: m.description.clone(),
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO ledger_entries (id, account_id, kind, amount_minor, balance_after_minor, order_id, description, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.id.as_str())
    .bind(entry.account_id.as_str())
    .bind(entry.kind.as_str())
    .bind(entry.amount_minor)
    .bind(entry.balance_after_minor)
    .bind(entry.order_id.as_ref().map(|o| o.as_str().to_owned()))
    .bind(&entry.description)
    .bind(&now_s)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(entry)
}

async fn complete_key(conn: &mut $conn, c: &IdempotencyCompletion) -> StoreResult<()> {
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

fn account_from_row(r: &$row) -> StoreResult<Account> {
    Ok(Account {
        id: AccountId::from_trusted(r.get("id")),
        email: r.get("email"),
        name: r.get("name"),
        currency: Currency::parse(r.get::<&str, _>("currency"))
            .ok_or_else(|| corrupt("currency"))?,
        balance_minor: r.get("balance_minor"),
        created_at: parse_ts(r.get("created_at"))?,
    })
}

fn key_from_row(r: &$row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: KeyId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        role: KeyRole::parse(r.get("role")).ok_or_else(|| corrupt("key role"))?,
        agent_id: r
            .get::<Option<String>, _>("agent_id")
            .map(AgentId::from_trusted),
        name: r.get("name"),
        prefix: r.get("prefix"),
        secret_hash: r.get("secret_hash"),
        created_at: parse_ts(r.get("created_at"))?,
        revoked_at: r
            .get::<Option<&str>, _>("revoked_at")
            .map(parse_ts)
            .transpose()?,
    })
}

fn ledger_from_row(r: &$row) -> StoreResult<LedgerEntry> {
    Ok(LedgerEntry {
        id: LedgerEntryId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        kind: LedgerKind::parse(r.get("kind")).ok_or_else(|| corrupt("ledger kind"))?,
        amount_minor: r.get("amount_minor"),
        balance_after_minor: r.get("balance_after_minor"),
        order_id: r
            .get::<Option<String>, _>("order_id")
            .map(OrderId::from_trusted),
        description: r.get("description"),
        created_at: parse_ts(r.get("created_at"))?,
    })
}

fn quote_from_row(r: &$row) -> StoreResult<Quote> {
    Ok(Quote {
        id: QuoteId::from_trusted(r.get("id")),
        account_id: r
            .get::<Option<String>, _>("account_id")
            .map(AccountId::from_trusted),
        product_id: r.get("product_id"),
        quantity: r.get("quantity"),
        configuration_normalized: parse_json(r.get("configuration"))?,
        configuration_warnings: parse_json(r.get("warnings"))?,
        line_items: parse_json(r.get("line_items"))?,
        total_minor: r.get("total_minor"),
        currency: Currency::parse(r.get::<&str, _>("currency"))
            .ok_or_else(|| corrupt("currency"))?,
        catalog_version: r.get("catalog_version"),
        management_capabilities: parse_json(r.get("management_capabilities"))?,
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
    })
}

fn order_from_row(r: &$row) -> StoreResult<Order> {
    let opt_json = |col: &str| -> StoreResult<Option<Value>> {
        r.get::<Option<&str>, _>(col).map(parse_json).transpose()
    };
    Ok(Order {
        id: OrderId::from_trusted(r.get("id")),
        account_id: r
            .get::<Option<String>, _>("account_id")
            .map(AccountId::from_trusted),
        agent_id: r.get::<Option<String>, _>("agent_id").map(AgentId::from_trusted),
        status: OrderStatus::parse(r.get("status")).ok_or_else(|| corrupt("order status"))?,
        payment_status: PaymentStatus::parse(r.get("payment_status"))
            .ok_or_else(|| corrupt("payment status"))?,
        payment_method: PaymentMethod::parse(r.get("payment_method"))
            .ok_or_else(|| corrupt("payment method"))?,
        product_id: r.get("product_id"),
        quantity: r.get("quantity"),
        configuration: parse_json(r.get("configuration"))?,
        configuration_warnings: parse_json(r.get("configuration_warnings"))?,
        line_items: parse_json(r.get("line_items"))?,
        total_minor: r.get("total_minor"),
        currency: Currency::parse(r.get::<&str, _>("currency"))
            .ok_or_else(|| corrupt("currency"))?,
        quote_id: QuoteId::from_trusted(r.get("quote_id")),
        idempotency_key: r.get("idempotency_key"),
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
        provisioning_estimate: r
            .get::<Option<&str>, _>("provisioning_estimate")
            .map(parse_json)
            .transpose()?,
        requires_install_configuration: r.get("requires_install_configuration"),
        service_id: r
            .get::<Option<String>, _>("service_id")
            .map(ServiceId::from_trusted),
        result: opt_json("result")?,
        failure: r
            .get::<Option<&str>, _>("failure")
            .map(parse_json)
            .transpose()?,
    })
}

fn service_from_row(r: &$row) -> StoreResult<Service> {
    Ok(Service {
        id: ServiceId::from_trusted(r.get("id")),
        order_id: OrderId::from_trusted(r.get("order_id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        product_id: r.get("product_id"),
        status: ServiceStatus::parse(r.get("status")).ok_or_else(|| corrupt("service status"))?,
        display_name: r.get("display_name"),
        image: r.get("image"),
        region: r.get("region"),
        authorized_key: r.get("authorized_key"),
        host: r.get("host"),
        ssh_port: r.get::<Option<i64>, _>("ssh_port").and_then(|p| u16::try_from(p).ok()),
        ssh_username: r.get("ssh_username"),
        host_key_fingerprint: r.get("host_key_fingerprint"),
        private_key_sealed: r.get("private_key_sealed"),
        lease_seconds: r.get("lease_seconds"),
        expires_at: r.get::<Option<&str>, _>("expires_at").map(parse_ts).transpose()?,
        activated_at: r.get::<Option<&str>, _>("activated_at").map(parse_ts).transpose()?,
        management_capabilities: parse_json(r.get("management_capabilities"))?,
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

fn job_from_row(r: &$row) -> StoreResult<Job> {
    Ok(Job {
        id: JobId::from_trusted(r.get("id")),
        kind: r.get("kind"),
        payload: parse_json(r.get("payload"))?,
        status: JobStatus::parse(r.get("status")).ok_or_else(|| corrupt("job status"))?,
        attempts: r.get("attempts"),
        max_attempts: r.get("max_attempts"),
        run_at: parse_ts(r.get("run_at"))?,
        locked_by: r.get("locked_by"),
        locked_until: r.get::<Option<&str>, _>("locked_until").map(parse_ts).transpose()?,
        last_error: r.get("last_error"),
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

fn payment_from_row(r: &$row) -> StoreResult<Payment> {
    Ok(Payment {
        id: PaymentId::from_trusted(r.get("id")),
        account_id: r.get::<Option<String>, _>("account_id").map(AccountId::from_trusted),
        order_id: r.get::<Option<String>, _>("order_id").map(OrderId::from_trusted),
        purpose: PaymentPurpose::parse(r.get("purpose")).ok_or_else(|| corrupt("payment purpose"))?,
        rail: PaymentMethod::parse(r.get("rail")).ok_or_else(|| corrupt("payment rail"))?,
        amount_minor: r.get("amount_minor"),
        currency: Currency::parse(r.get("currency")).ok_or_else(|| corrupt("currency"))?,
        status: PaymentState::parse(r.get("status")).ok_or_else(|| corrupt("payment status"))?,
        session_id: r.get("session_id"),
        checkout_url: r.get("checkout_url"),
        payment_reference: r.get("payment_reference"),
        challenge_id: r.get("challenge_id"),
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

impl $store {
    /// The one row `sql` finds for `key` (its only parameter), mapped.
    async fn find_one<T>(&self, sql: &str, key: &str, map: fn(&$row) -> StoreResult<T>) -> StoreResult<Option<T>> {
        let row = sqlx::query(sql).bind(key).fetch_optional(self.reader()).await.map_err(backend)?;
        row.as_ref().map(map).transpose()
    }
}

#[async_trait]
impl SettingsStore for $store {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.reader())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn probe_write(&self, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO write_probe (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(ts(&now))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn setting_or_init(&self, name: &str, initial: &str) -> StoreResult<String> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(initial)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let value: String = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await?;
        Ok(value)
    }

    async fn put_settings(&self, settings: &[(&str, &str)]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for (name, value) in settings {
            sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        commit(tx).await
    }
}

#[async_trait]
impl AccountStore for $store {
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
        self.find_one("SELECT * FROM accounts WHERE id = $1", id.as_str(), account_from_row).await
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

    async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_key(&mut tx, key).await?;
        commit(tx).await
    }

    async fn find_api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>> {
        self.find_one("SELECT * FROM api_keys WHERE secret_hash = $1", secret_hash, key_from_row).await
    }

    async fn get_api_key(&self, id: &KeyId) -> StoreResult<Option<ApiKey>> {
        self.find_one("SELECT * FROM api_keys WHERE id = $1", id.as_str(), key_from_row).await
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
        self.find_one("SELECT * FROM device_grants WHERE device_code_hash = $1", hash, device_grant_from_row).await
    }

    async fn find_device_grant_by_user_code(&self, user_code: &str) -> StoreResult<Option<DeviceGrant>> {
        self.find_one("SELECT * FROM device_grants WHERE user_code = $1", user_code, device_grant_from_row).await
    }

    async fn update_device_grant(&self, g: &DeviceGrant, expected_status: &str) -> StoreResult<bool> {
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
        self.find_one("SELECT * FROM login_codes WHERE code_hash = $1", code_hash, login_code_from_row).await
    }

    async fn use_login_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE login_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
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

    async fn find_dashboard_session(&self, secret_hash: &str) -> StoreResult<Option<DashboardSession>> {
        self.find_one("SELECT * FROM dashboard_sessions WHERE secret_hash = $1", secret_hash, dashboard_session_from_row).await
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

#[async_trait]
impl QuoteStore for $store {
    async fn insert_quote(&self, q: &Quote) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_quote_row(&mut tx, q).await?;
        commit(tx).await
    }

    async fn get_quote(&self, id: &QuoteId) -> StoreResult<Option<Quote>> {
        self.find_one("SELECT * FROM quotes WHERE id = $1", id.as_str(), quote_from_row).await
    }
}

#[async_trait]
impl IdempotencyStore for $store {
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
                    ClaimOutcome::Existing { fingerprint: original, outcome: None }
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
}

#[async_trait]
impl OrderStore for $store {
    async fn record_movement(
        &self,
        movement: &LedgerMovement,
        now: Timestamp,
    ) -> StoreResult<LedgerEntry> {
        let mut tx = self.begin().await?;
        let entry = apply_movement(&mut tx, movement, now).await?;
        commit(tx).await?;
        Ok(entry)
    }

    async fn list_ledger(
        &self,
        account: &AccountId,
        page: &PageRequest,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM ledger_entries WHERE account_id = $1 AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(account.as_str())
        .bind(page.cursor.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter().map(ledger_from_row).collect()
    }

    async fn ledger_sum(&self, account: &AccountId) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM ledger_entries WHERE account_id = $1",
        )
        .bind(account.as_str())
        .fetch_one(self.reader())
        .await
        .map_err(backend)
    }

    async fn insert_order(&self, new: &NewOrder<'_>) -> StoreResult<bool> {
        let o = new.order;
        let mut tx = self.begin().await?;
        if let Some(guard) = new.budget {
            check_budget(&mut tx, guard).await?;
        }
        if let Some((service, expected)) = new.updates_service {
            if !update_service_row(&mut tx, service, expected).await? {
                return Ok(false);
            }
        }
        if let Some(charge) = new.charge {
            apply_movement(&mut tx, charge, o.created_at).await?;
        }
        if let Some(quote) = new.quote {
            insert_quote_row(&mut tx, quote).await?;
        }
        insert_order_row(&mut tx, o, new.idempotency).await?;
        if let Some(service) = new.service {
            insert_service_row(&mut tx, service).await?;
        }
        for job in new.jobs {
            insert_job_row(&mut tx, job).await?;
        }
        insert_token_rows(&mut tx, new.resource_tokens).await?;
        if let Some(approval) = new.approval {
            insert_approval_row(&mut tx, approval).await?;
        }
        if let Some(payment) = new.payment {
            insert_payment_row(&mut tx, payment).await?;
        }
        if let Some(c) = new.completes {
            complete_key(&mut tx, c).await?;
        }
        commit(tx).await?;
        Ok(true)
    }

    async fn apply_change(&self, change: &Change<'_>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        if let Some((id, kind)) = change.webhook_event {
            let at = change.payment.map(|(p, _)| p.updated_at).unwrap_or_else(chrono::Utc::now);
            let inserted = sqlx::query("INSERT INTO webhook_events (id, kind, received_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
                .bind(id)
                .bind(kind)
                .bind(ts(&at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            if inserted == 0 {
                return Ok(false);
            }
        }
        if let Some((payment, expected)) = change.payment {
            if !update_payment_row(&mut tx, payment, expected).await? {
                return Ok(false);
            }
        }
        if let Some(payment) = change.new_payment {
            insert_payment_row(&mut tx, payment).await?;
        }
        if let Some((approval, expected)) = change.approval {
            if !update_approval_row(&mut tx, approval, expected).await? {
                return Ok(false);
            }
        }
        if let Some((checkout, expected)) = change.checkout {
            if !update_checkout_row(&mut tx, checkout, expected).await? {
                return Ok(false);
            }
        }
        if let Some(approval) = change.new_approval {
            insert_approval_row(&mut tx, approval).await?;
        }
        if let Some((order, expected)) = change.order {
            if !update_order_row(&mut tx, order, expected).await? {
                return Ok(false);
            }
        }
        if let Some((service, expected)) = change.service {
            if !update_service_row(&mut tx, service, expected).await? {
                return Ok(false);
            }
        }
        if let Some(m) = change.movement {
            let at = change
                .order
                .map(|(o, _)| o.updated_at)
                .or(change.service.map(|(s, _)| s.updated_at))
                .or(change.payment.map(|(p, _)| p.updated_at));
            apply_movement(&mut tx, m, at.unwrap_or_else(chrono::Utc::now)).await?;
        }
        if let Some(service) = change.new_service {
            insert_service_row(&mut tx, service).await?;
        }
        insert_token_rows(&mut tx, change.resource_tokens).await?;
        for job in change.jobs {
            insert_job_row(&mut tx, job).await?;
        }
        if let Some(c) = change.completes {
            complete_key(&mut tx, c).await?;
        }
        commit(tx).await?;
        Ok(true)
    }

    async fn get_order(&self, id: &OrderId) -> StoreResult<Option<Order>> {
        self.find_one("SELECT * FROM orders WHERE id = $1", id.as_str(), order_from_row).await
    }

    async fn find_order_by_idempotency_key(
        &self,
        key: &IdempotencyRef,
    ) -> StoreResult<Option<Order>> {
        let row = sqlx::query(
            "SELECT * FROM orders WHERE idempotency_scope = $1 AND idempotency_route = $2 AND idempotency_key = $3",
        )
        .bind(&key.scope)
        .bind(&key.route)
        .bind(&key.key)
        .fetch_optional(self.reader())
        .await
        .map_err(backend)?;
        row.as_ref().map(order_from_row).transpose()
    }

    async fn list_orders(&self, account: &AccountId, f: &OrderFilter) -> StoreResult<Vec<Order>> {
        let rows = sqlx::query(
            "SELECT * FROM orders WHERE account_id = $1
               AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR product_id = $3) AND ($4 IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5",
        )
        .bind(account.as_str())
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.product_id.as_deref())
        .bind(f.page.cursor.as_deref())
        .bind(i64::from(f.page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter().map(order_from_row).collect()
    }
}

#[async_trait]
impl ServiceStore for $store {
    async fn get_service(&self, id: &ServiceId) -> StoreResult<Option<Service>> {
        self.find_one("SELECT * FROM services WHERE id = $1", id.as_str(), service_from_row).await
    }

    async fn recent_provisioning_seconds(&self, product_id: &str, limit: u32) -> StoreResult<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT created_at, activated_at FROM services WHERE product_id = $1 AND activated_at IS NOT NULL
             ORDER BY id DESC LIMIT $2",
        )
        .bind(product_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| Ok((parse_ts(r.get("activated_at"))? - parse_ts(r.get("created_at"))?).num_seconds()))
            .collect()
    }

    async fn find_resource_token(&self, token_hash: &str) -> StoreResult<Option<ResourceToken>> {
        self.find_one("SELECT * FROM resource_tokens WHERE token_hash = $1", token_hash, |r| {
            Ok(ResourceToken {
                token_hash: r.get("token_hash"),
                service_id: ServiceId::from_trusted(r.get("service_id")),
                scope: r.get("scope"),
                created_at: parse_ts(r.get("created_at"))?,
            })
        })
        .await
    }

    async fn list_services(&self, account: &AccountId, page: &PageRequest) -> StoreResult<Vec<Service>> {
        let rows = sqlx::query(
            "SELECT * FROM services WHERE account_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(account.as_str())
        .bind(page.cursor.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter().map(service_from_row).collect()
    }

    async fn services_in(&self, statuses: &[ServiceStatus]) -> StoreResult<Vec<Service>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=statuses.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT * FROM services WHERE status IN ({}) ORDER BY id", placeholders.join(", "));
        let mut query = sqlx::query(&sql);
        for s in statuses {
            query = query.bind(s.as_str());
        }
        let rows = query.fetch_all(self.reader()).await.map_err(backend)?;
        rows.iter().map(service_from_row).collect()
    }
}

#[async_trait]
impl JobStore for $store {
    async fn enqueue_job(&self, job: &Job) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_job_row(&mut tx, job).await?;
        commit(tx).await
    }

    async fn claim_job(
        &self,
        kinds: &[String],
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<Job>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let placeholders: Vec<String> = (4..4 + kinds.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1, updated_at = $3
             WHERE id = (SELECT id FROM jobs
                         WHERE kind IN ({})
                           AND ((status = 'queued' AND run_at <= $3) OR (status = 'running' AND locked_until < $3))
                         ORDER BY run_at, id LIMIT 1 {})
             RETURNING *",
            placeholders.join(", "),
            $claim_lock
        );
        let now_s = ts(&now);
        let mut query = sqlx::query(&sql).bind(worker).bind(ts(&lease_until)).bind(&now_s);
        for kind in kinds {
            query = query.bind(kind.as_str());
        }
        let mut tx = self.begin().await?;
        let row = query.fetch_optional(&mut *tx).await.map_err(backend)?;
        commit(tx).await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn heartbeat_job(&self, id: &JobId, worker: &str, lease_until: Timestamp) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let held = sqlx::query(
            "UPDATE jobs SET locked_until = $1 WHERE id = $2 AND locked_by = $3 AND status = 'running'",
        )
        .bind(ts(&lease_until))
        .bind(id.as_str())
        .bind(worker)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        commit(tx).await?;
        Ok(held)
    }

    async fn finish_job(&self, id: &JobId, worker: &str, outcome: &JobOutcome, now: Timestamp) -> StoreResult<bool> {
        let (status, run_at, error) = match outcome {
            JobOutcome::Done => (JobStatus::Done, None, None),
            JobOutcome::Retry { run_at, error } => (JobStatus::Queued, Some(ts(run_at)), Some(error.clone())),
            JobOutcome::Failed { error } => (JobStatus::Failed, None, Some(error.clone())),
        };
        let mut tx = self.begin().await?;
        // A retry past the last attempt fails the job instead.
        let held = sqlx::query(
            "UPDATE jobs SET
                 status = CASE WHEN $1 = 'queued' AND attempts >= max_attempts THEN 'failed' ELSE $1 END,
                 run_at = COALESCE($2, run_at), last_error = COALESCE($3, last_error),
                 locked_by = NULL, locked_until = NULL, updated_at = $4
             WHERE id = $5 AND locked_by = $6 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(run_at)
        .bind(error)
        .bind(ts(&now))
        .bind(id.as_str())
        .bind(worker)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        commit(tx).await?;
        Ok(held)
    }

    async fn get_job(&self, id: &JobId) -> StoreResult<Option<Job>> {
        self.find_one("SELECT * FROM jobs WHERE id = $1", id.as_str(), job_from_row).await
    }
}

#[async_trait]
impl PaymentStore for $store {
    async fn insert_payment(&self, payment: &Payment) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_payment_row(&mut tx, payment).await?;
        commit(tx).await
    }

    async fn get_payment(&self, id: &PaymentId) -> StoreResult<Option<Payment>> {
        self.find_one("SELECT * FROM payments WHERE id = $1", id.as_str(), payment_from_row).await
    }

    async fn find_payment_by_session(&self, session_id: &str) -> StoreResult<Option<Payment>> {
        self.find_one("SELECT * FROM payments WHERE session_id = $1", session_id, payment_from_row).await
    }

    async fn find_payment_for_order(&self, order_id: &OrderId) -> StoreResult<Option<Payment>> {
        self.find_one("SELECT * FROM payments WHERE order_id = $1", order_id.as_str(), payment_from_row).await
    }
}

#[async_trait]
impl GovernanceStore for $store {
    async fn insert_agent(&self, a: &Agent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO agents (id, account_id, name, description, status, soul, trusted_stores, blocked_stores, created_at, updated_at,
                                 requires_confirmation, agent_type, platform, capabilities, connected_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(a.id.as_str())
        .bind(a.account_id.as_str())
        .bind(&a.name)
        .bind(&a.description)
        .bind(a.status.as_str())
        .bind(&a.soul)
        .bind(to_json(&a.trusted_stores))
        .bind(to_json(&a.blocked_stores))
        .bind(ts(&a.created_at))
        .bind(ts(&a.updated_at))
        .bind(a.requires_confirmation)
        .bind(a.agent_type.as_deref())
        .bind(a.platform.as_deref())
        .bind(to_json(&a.capabilities))
        .bind(a.connected_at.as_ref().map(ts))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn get_agent(&self, id: &AgentId) -> StoreResult<Option<Agent>> {
        self.find_one("SELECT * FROM agents WHERE id = $1 AND deleted_at IS NULL", id.as_str(), agent_from_row).await
    }

    async fn list_agents(&self, account: &AccountId) -> StoreResult<Vec<Agent>> {
        let rows = sqlx::query("SELECT * FROM agents WHERE account_id = $1 AND deleted_at IS NULL ORDER BY id")
            .bind(account.as_str())
            .fetch_all(self.reader())
            .await
            .map_err(backend)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn update_agent(&self, a: &Agent) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE agents SET name = $1, description = $2, status = $3, soul = $4, trusted_stores = $5, blocked_stores = $6, updated_at = $7,
                               requires_confirmation = $9, agent_type = $10, platform = $11, capabilities = $12, connected_at = $13
             WHERE id = $8 AND deleted_at IS NULL",
        )
        .bind(&a.name)
        .bind(&a.description)
        .bind(a.status.as_str())
        .bind(&a.soul)
        .bind(to_json(&a.trusted_stores))
        .bind(to_json(&a.blocked_stores))
        .bind(ts(&a.updated_at))
        .bind(a.id.as_str())
        .bind(a.requires_confirmation)
        .bind(a.agent_type.as_deref())
        .bind(a.platform.as_deref())
        .bind(to_json(&a.capabilities))
        .bind(a.connected_at.as_ref().map(ts))
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        commit(tx).await?;
        Ok(done == 1)
    }

    async fn delete_agent(&self, id: &AgentId, now: Timestamp) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE agents SET deleted_at = $1, updated_at = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(ts(&now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE agent_id = $2 AND revoked_at IS NULL")
            .bind(ts(&now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await?;
        Ok(done == 1)
    }

    async fn insert_rule(&self, r: &AgentRule) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO rules (id, agent_id, code, name, kind, params, action, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&r.rule.id)
        .bind(r.agent_id.as_str())
        .bind(&r.rule.code)
        .bind(&r.rule.name)
        .bind(r.rule.kind.name())
        .bind(to_json(&r.rule.kind.params()))
        .bind(r.rule.action.as_str())
        .bind(r.rule.enabled)
        .bind(ts(&r.created_at))
        .bind(ts(&r.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn list_rules(&self, agent: &AgentId) -> StoreResult<Vec<AgentRule>> {
        let rows = sqlx::query("SELECT * FROM rules WHERE agent_id = $1 ORDER BY code")
            .bind(agent.as_str())
            .fetch_all(self.reader())
            .await
            .map_err(backend)?;
        rows.iter().map(rule_from_row).collect()
    }

    async fn update_rule(&self, r: &AgentRule) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE rules SET name = $1, params = $2, action = $3, enabled = $4, updated_at = $5 WHERE id = $6 AND agent_id = $7",
        )
        .bind(&r.rule.name)
        .bind(to_json(&r.rule.kind.params()))
        .bind(r.rule.action.as_str())
        .bind(r.rule.enabled)
        .bind(ts(&r.updated_at))
        .bind(&r.rule.id)
        .bind(r.agent_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        commit(tx).await?;
        Ok(done == 1)
    }

    async fn delete_rule(&self, agent: &AgentId, rule_id: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM rules WHERE id = $1 AND agent_id = $2")
            .bind(rule_id)
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        commit(tx).await?;
        Ok(done == 1)
    }

    async fn insert_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO audit_events (id, account_id, agent_id, kind, result, rule_code, detail, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.id.as_str())
        .bind(e.account_id.as_str())
        .bind(e.agent_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(&e.kind)
        .bind(e.result.as_deref())
        .bind(e.rule_code.as_deref())
        .bind(to_json(&e.detail))
        .bind(ts(&e.created_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn list_audit(&self, account: &AccountId, agent: Option<&AgentId>, after: Option<&str>, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE account_id = $1 AND ($2 IS NULL OR agent_id = $2) AND ($3 IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(account.as_str())
        .bind(agent.map(|a| a.as_str().to_owned()))
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: AuditId::from_trusted(r.get("id")),
                    account_id: AccountId::from_trusted(r.get("account_id")),
                    agent_id: r.get::<Option<String>, _>("agent_id").map(AgentId::from_trusted),
                    kind: r.get("kind"),
                    result: r.get("result"),
                    rule_code: r.get("rule_code"),
                    detail: parse_json(r.get("detail"))?,
                    created_at: parse_ts(r.get("created_at"))?,
                })
            })
            .collect()
    }

    async fn insert_checkout(&self, c: &Checkout) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO checkouts (id, account_id, agent_id, status, currency, items, total_minor, merchant_name, merchant_domain,
                                    category, metadata, rule_result, rule_name, reason, receipt_order, created_at, updated_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(c.id.as_str())
        .bind(c.account_id.as_str())
        .bind(c.agent_id.as_str())
        .bind(c.status.as_str())
        .bind(&c.currency)
        .bind(to_json(&c.lines))
        .bind(c.total_minor)
        .bind(c.merchant_name.as_deref())
        .bind(c.merchant_domain.as_deref())
        .bind(c.category.as_deref())
        .bind(c.metadata.as_ref().map(to_json))
        .bind(c.rule_result.as_deref())
        .bind(c.rule_name.as_deref())
        .bind(c.reason.as_deref())
        .bind(c.order.as_ref().map(to_json))
        .bind(ts(&c.created_at))
        .bind(ts(&c.updated_at))
        .bind(ts(&c.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await
    }

    async fn get_checkout(&self, id: &CheckoutId) -> StoreResult<Option<Checkout>> {
        self.find_one("SELECT * FROM checkouts WHERE id = $1", id.as_str(), checkout_from_row).await
    }

    async fn agent_open_checkouts(&self, agent: &AgentId) -> StoreResult<Vec<Checkout>> {
        let rows = sqlx::query("SELECT * FROM checkouts WHERE agent_id = $1 AND status NOT IN ('completed', 'canceled') ORDER BY id")
            .bind(agent.as_str())
            .fetch_all(self.reader())
            .await
            .map_err(backend)?;
        rows.iter().map(checkout_from_row).collect()
    }

    async fn find_approval_for_checkout(&self, checkout: &CheckoutId) -> StoreResult<Option<Approval>> {
        self.find_one(
            "SELECT * FROM approvals WHERE checkout_id = $1 ORDER BY id DESC LIMIT 1",
            checkout.as_str(),
            approval_from_row,
        )
        .await
    }

    async fn agent_open_orders(&self, agent: &AgentId) -> StoreResult<Vec<Order>> {
        let rows = sqlx::query(
            "SELECT * FROM orders WHERE agent_id = $1 AND status IN ('pending_payment', 'awaiting_approval') ORDER BY id",
        )
        .bind(agent.as_str())
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter().map(order_from_row).collect()
    }

    async fn get_approval(&self, id: &ApprovalId) -> StoreResult<Option<Approval>> {
        self.find_one("SELECT * FROM approvals WHERE id = $1", id.as_str(), approval_from_row).await
    }

    async fn find_approval_for_order(&self, order: &OrderId) -> StoreResult<Option<Approval>> {
        self.find_one("SELECT * FROM approvals WHERE order_id = $1", order.as_str(), approval_from_row).await
    }

    async fn list_approvals(&self, account: &AccountId, status: Option<ApprovalStatus>) -> StoreResult<Vec<Approval>> {
        let rows = sqlx::query(
            "SELECT * FROM approvals WHERE account_id = $1 AND ($2 IS NULL OR status = $2) ORDER BY id DESC LIMIT 200",
        )
        .bind(account.as_str())
        .bind(status.map(|s| s.as_str()))
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter().map(approval_from_row).collect()
    }

    async fn agent_spending(&self, agent: &AgentId, since: Timestamp) -> StoreResult<Vec<(Timestamp, i64)>> {
        let rows = sqlx::query(
            "SELECT created_at, total_minor FROM orders
             WHERE agent_id = $1 AND created_at >= $2 AND status NOT IN ('failed', 'canceled')
             UNION ALL
             SELECT created_at, total_minor FROM checkouts
             WHERE agent_id = $1 AND created_at >= $2 AND status IN ('approved', 'completed')
             ORDER BY created_at",
        )
        .bind(agent.as_str())
        .bind(ts(&since))
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| Ok((parse_ts(r.get("created_at"))?, r.get::<i64, _>("total_minor"))))
            .collect()
    }
}

async fn insert_quote_row(conn: &mut $conn, q: &Quote) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO quotes (id, account_id, product_id, quantity, configuration, warnings, line_items,
                             total_minor, currency, catalog_version, management_capabilities, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(q.id.as_str())
    .bind(q.account_id.as_ref().map(|a| a.as_str().to_owned()))
    .bind(&q.product_id)
    .bind(q.quantity)
    .bind(to_json(&q.configuration_normalized))
    .bind(to_json(&q.configuration_warnings))
    .bind(to_json(&q.line_items))
    .bind(q.total_minor)
    .bind(q.currency.as_str())
    .bind(&q.catalog_version)
    .bind(to_json(&q.management_capabilities))
    .bind(ts(&q.created_at))
    .bind(ts(&q.expires_at))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Inserts an order row. Orders without a key get a unique per-order scope so the uniqueness
/// constraint on keys still holds.
async fn insert_order_row(conn: &mut $conn, o: &Order, idempotency: Option<&IdempotencyRef>) -> StoreResult<()> {
        let (scope, route, key) = match idempotency {
            Some(k) => (k.scope.clone(), k.route.clone(), k.key.clone()),
            None => (o.id.to_string(), String::new(), o.id.to_string()),
        };
        sqlx::query(
            "INSERT INTO orders (id, account_id, status, payment_status, payment_method, product_id, quantity,
                                 configuration, configuration_warnings, line_items, total_minor, currency, quote_id,
                                 idempotency_scope, idempotency_route, idempotency_key,
                                 provisioning_estimate, requires_install_configuration, service_id, result, failure,
                                 created_at, updated_at, agent_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
        )
        .bind(o.id.as_str())
        .bind(o.account_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(o.status.as_str())
        .bind(o.payment_status.as_str())
        .bind(o.payment_method.as_str())
        .bind(&o.product_id)
        .bind(o.quantity)
        .bind(to_json(&o.configuration))
        .bind(to_json(&o.configuration_warnings))
        .bind(to_json(&o.line_items))
        .bind(o.total_minor)
        .bind(o.currency.as_str())
        .bind(o.quote_id.as_str())
        .bind(scope)
        .bind(route)
        .bind(key)
        .bind(o.provisioning_estimate.as_ref().map(to_json))
        .bind(o.requires_install_configuration)
        .bind(o.service_id.as_ref().map(|s| s.as_str().to_owned()))
        .bind(o.result.as_ref().map(to_json))
        .bind(o.failure.as_ref().map(to_json))
        .bind(ts(&o.created_at))
        .bind(ts(&o.updated_at))
        .bind(o.agent_id.as_ref().map(|a| a.as_str().to_owned()))
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Locks the agent (PostgreSQL: its row; SQLite: the single writer already serializes), then
/// refuses the order if any budget would be exceeded by it.
async fn check_budget(conn: &mut $conn, guard: &BudgetGuard) -> StoreResult<()> {
    let lock = format!("SELECT id FROM agents WHERE id = $1 {}", $row_lock);
    sqlx::query(&lock)
        .bind(guard.agent_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    for (since, max_minor) in &guard.limits {
        let spent: i64 = sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE(SUM(t), 0) AS BIGINT) FROM (
                 SELECT total_minor AS t FROM orders
                 WHERE agent_id = $1 AND created_at >= $2 AND status NOT IN ('failed', 'canceled')
                 UNION ALL
                 SELECT total_minor AS t FROM checkouts
                 WHERE agent_id = $1 AND created_at >= $2 AND status IN ('approved', 'completed')
             ) spend",
        )
        .bind(guard.agent_id.as_str())
        .bind(ts(since))
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        if spent.saturating_add(guard.amount_minor) > *max_minor {
            return Err(StoreError::BudgetExceeded {
                spent_minor: spent,
                max_minor: *max_minor,
            });
        }
    }
    Ok(())
}

fn approval_from_row(r: &$row) -> StoreResult<Approval> {
    Ok(Approval {
        id: ApprovalId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        agent_id: AgentId::from_trusted(r.get("agent_id")),
        order_id: r.get::<Option<String>, _>("order_id").map(OrderId::from_trusted),
        checkout_id: r.get::<Option<String>, _>("checkout_id").map(CheckoutId::from_trusted),
        status: ApprovalStatus::parse(r.get("status")).ok_or_else(|| corrupt("approval status"))?,
        // A tier is stored as its digits (TEXT, as it was when tiers were labels).
        tier: r
            .get::<&str, _>("tier")
            .parse()
            .map_err(|_| corrupt("approval tier"))?,
        rule_code: r.get("rule_code"),
        reason: r.get("reason"),
        amount_minor: r.get("amount_minor"),
        currency: r.get("currency"),
        decision_reason: r.get("decision_reason"),
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
        decided_at: r.get::<Option<&str>, _>("decided_at").map(parse_ts).transpose()?,
    })
}

async fn insert_approval_row(conn: &mut $conn, a: &Approval) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO approvals (id, account_id, agent_id, order_id, status, tier, rule_code, reason, amount_minor, currency,
                                decision_reason, created_at, expires_at, decided_at, checkout_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(a.id.as_str())
    .bind(a.account_id.as_str())
    .bind(a.agent_id.as_str())
    .bind(a.order_id.as_ref().map(|o| o.as_str().to_owned()))
    .bind(a.status.as_str())
    .bind(a.tier.to_string())
    .bind(&a.rule_code)
    .bind(&a.reason)
    .bind(a.amount_minor)
    .bind(&a.currency)
    .bind(a.decision_reason.as_deref())
    .bind(ts(&a.created_at))
    .bind(ts(&a.expires_at))
    .bind(a.decided_at.as_ref().map(ts))
    .bind(a.checkout_id.as_ref().map(|c| c.as_str().to_owned()))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Conditional on the current status: an approval is decided once.
async fn update_approval_row(conn: &mut $conn, a: &Approval, expected: &[ApprovalStatus]) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders: Vec<String> = (5..5 + expected.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "UPDATE approvals SET status = $1, decision_reason = $2, decided_at = $3 WHERE id = $4 AND status IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(a.status.as_str())
        .bind(a.decision_reason.as_deref())
        .bind(a.decided_at.as_ref().map(ts))
        .bind(a.id.as_str());
    for status in expected {
        query = query.bind(status.as_str());
    }
    Ok(query.execute(&mut *conn).await.map_err(backend)?.rows_affected() == 1)
}

fn checkout_from_row(r: &$row) -> StoreResult<Checkout> {
    Ok(Checkout {
        id: CheckoutId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        agent_id: AgentId::from_trusted(r.get("agent_id")),
        status: CheckoutStatus::parse(r.get("status")).ok_or_else(|| corrupt("checkout status"))?,
        currency: r.get("currency"),
        lines: parse_json(r.get("items"))?,
        total_minor: r.get("total_minor"),
        merchant_name: r.get("merchant_name"),
        merchant_domain: r.get("merchant_domain"),
        category: r.get("category"),
        metadata: r.get::<Option<&str>, _>("metadata").map(parse_json).transpose()?,
        rule_result: r.get("rule_result"),
        rule_name: r.get("rule_name"),
        reason: r.get("reason"),
        order: r.get::<Option<&str>, _>("receipt_order").map(parse_json).transpose()?,
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
    })
}

/// Conditional on the current status, like the other state changes.
async fn update_checkout_row(conn: &mut $conn, c: &Checkout, expected: &[CheckoutStatus]) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders: Vec<String> = (15..15 + expected.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "UPDATE checkouts SET status = $1, items = $2, total_minor = $3, merchant_name = $4, merchant_domain = $5, category = $6,
                              metadata = $7, rule_result = $8, rule_name = $9, reason = $10, receipt_order = $11, updated_at = $12,
                              currency = $13
         WHERE id = $14 AND status IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(c.status.as_str())
        .bind(to_json(&c.lines))
        .bind(c.total_minor)
        .bind(c.merchant_name.as_deref())
        .bind(c.merchant_domain.as_deref())
        .bind(c.category.as_deref())
        .bind(c.metadata.as_ref().map(to_json))
        .bind(c.rule_result.as_deref())
        .bind(c.rule_name.as_deref())
        .bind(c.reason.as_deref())
        .bind(c.order.as_ref().map(to_json))
        .bind(ts(&c.updated_at))
        .bind(&c.currency)
        .bind(c.id.as_str());
    for status in expected {
        query = query.bind(status.as_str());
    }
    Ok(query.execute(&mut *conn).await.map_err(backend)?.rows_affected() == 1)
}

fn login_code_from_row(r: &$row) -> StoreResult<LoginCode> {
    Ok(LoginCode {
        code_hash: r.get("code_hash"),
        account_id: AccountId::from_trusted(r.get("account_id")),
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
        used_at: r.get::<Option<&str>, _>("used_at").map(parse_ts).transpose()?,
    })
}

fn dashboard_session_from_row(r: &$row) -> StoreResult<DashboardSession> {
    Ok(DashboardSession {
        secret_hash: r.get("secret_hash"),
        account_id: AccountId::from_trusted(r.get("account_id")),
        key_id: r.get::<Option<String>, _>("key_id").map(KeyId::from_trusted),
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
        ended_at: r.get::<Option<&str>, _>("ended_at").map(parse_ts).transpose()?,
    })
}

fn device_grant_from_row(r: &$row) -> StoreResult<DeviceGrant> {
    Ok(DeviceGrant {
        device_code_hash: r.get("device_code_hash"),
        user_code: r.get("user_code"),
        customer_email: r.get("customer_email"),
        agent_name: r.get("agent_name"),
        status: r.get("status"),
        account_id: r.get::<Option<String>, _>("account_id").map(AccountId::from_trusted),
        agent_id: r.get::<Option<String>, _>("agent_id").map(AgentId::from_trusted),
        interval_seconds: r.get("interval_seconds"),
        last_polled_at: r.get::<Option<&str>, _>("last_polled_at").map(parse_ts).transpose()?,
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
    })
}

fn agent_from_row(r: &$row) -> StoreResult<Agent> {
    Ok(Agent {
        id: AgentId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        name: r.get("name"),
        description: r.get("description"),
        status: AgentStatus::parse(r.get("status")).ok_or_else(|| corrupt("agent status"))?,
        soul: r.get("soul"),
        trusted_stores: parse_json(r.get("trusted_stores"))?,
        blocked_stores: parse_json(r.get("blocked_stores"))?,
        requires_confirmation: r.get("requires_confirmation"),
        agent_type: r.get("agent_type"),
        platform: r.get("platform"),
        capabilities: parse_json(r.get("capabilities"))?,
        connected_at: r.get::<Option<&str>, _>("connected_at").map(parse_ts).transpose()?,
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

fn rule_from_row(r: &$row) -> StoreResult<AgentRule> {
    let params: Value = parse_json(r.get("params"))?;
    let kind: &str = r.get("kind");
    Ok(AgentRule {
        agent_id: AgentId::from_trusted(r.get("agent_id")),
        rule: Rule {
            id: r.get("id"),
            code: r.get("code"),
            name: r.get("name"),
            enabled: r.get("enabled"),
            action: RuleAction::parse(r.get("action")).ok_or_else(|| corrupt("rule action"))?,
            kind: RuleKind::parse(kind, &params).map_err(|_| corrupt("rule params"))?,
        },
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

/// The status check is part of the UPDATE, so two concurrent transitions (even from two
/// processes) cannot both succeed: the second re-evaluates the WHERE after the first commits
/// and matches nothing. `Ok(false)` when the order was not in an expected state.
async fn update_order_row(conn: &mut $conn, o: &Order, expected: &[OrderStatus]) -> StoreResult<bool> {
        if expected.is_empty() {
            return Ok(false);
        }
        let placeholders: Vec<String> = (9..9 + expected.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "UPDATE orders SET status = $1, payment_status = $2, service_id = $3, result = $4, failure = $5, updated_at = $6,
                               configuration = $8
             WHERE id = $7 AND status IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(o.status.as_str())
            .bind(o.payment_status.as_str())
            .bind(o.service_id.as_ref().map(|s| s.as_str().to_owned()))
            .bind(o.result.as_ref().map(to_json))
            .bind(o.failure.as_ref().map(to_json))
            .bind(ts(&o.updated_at))
            .bind(o.id.as_str())
            .bind(to_json(&o.configuration));
        for status in expected {
            query = query.bind(status.as_str());
        }
        let moved = query
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        if !moved {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM orders WHERE id = $1")
                .bind(o.id.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
            return match exists {
                Some(_) => Ok(false),
                None => Err(StoreError::NotFound(format!("order {}", o.id))),
            };
        }
    Ok(true)
}

async fn insert_token_rows(conn: &mut $conn, tokens: &[ResourceToken]) -> StoreResult<()> {
    for token in tokens {
        sqlx::query("INSERT INTO resource_tokens (token_hash, service_id, scope, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&token.token_hash)
            .bind(token.service_id.as_str())
            .bind(&token.scope)
            .bind(ts(&token.created_at))
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

async fn insert_job_row(conn: &mut $conn, job: &Job) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(job.id.as_str())
    .bind(&job.kind)
    .bind(to_json(&job.payload))
    .bind(job.status.as_str())
    .bind(job.attempts)
    .bind(job.max_attempts)
    .bind(ts(&job.run_at))
    .bind(ts(&job.created_at))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn insert_service_row(conn: &mut $conn, s: &Service) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO services (id, order_id, account_id, product_id, status, display_name, image, region, authorized_key,
                               host, ssh_port, ssh_username, host_key_fingerprint, private_key_sealed, lease_seconds,
                               expires_at, management_capabilities, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(s.id.as_str())
    .bind(s.order_id.as_str())
    .bind(s.account_id.as_str())
    .bind(&s.product_id)
    .bind(s.status.as_str())
    .bind(&s.display_name)
    .bind(&s.image)
    .bind(&s.region)
    .bind(s.authorized_key.as_deref())
    .bind(s.host.as_deref())
    .bind(s.ssh_port.map(i64::from))
    .bind(&s.ssh_username)
    .bind(s.host_key_fingerprint.as_deref())
    .bind(s.private_key_sealed.as_deref())
    .bind(s.lease_seconds)
    .bind(s.expires_at.as_ref().map(ts))
    .bind(to_json(&s.management_capabilities))
    .bind(ts(&s.created_at))
    .bind(ts(&s.updated_at))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Conditional on the current status, like `update_order_row`.
async fn update_service_row(conn: &mut $conn, s: &Service, expected: &[ServiceStatus]) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders: Vec<String> = (12..12 + expected.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "UPDATE services SET status = $1, image = $2, host = $3, ssh_port = $4, host_key_fingerprint = $5,
                             private_key_sealed = $6, expires_at = $7, updated_at = $8, lease_seconds = $9,
                             activated_at = $11
         WHERE id = $10 AND status IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(s.status.as_str())
        .bind(&s.image)
        .bind(s.host.as_deref())
        .bind(s.ssh_port.map(i64::from))
        .bind(s.host_key_fingerprint.as_deref())
        .bind(s.private_key_sealed.as_deref())
        .bind(s.expires_at.as_ref().map(ts))
        .bind(ts(&s.updated_at))
        .bind(s.lease_seconds)
        .bind(s.id.as_str())
        .bind(s.activated_at.as_ref().map(ts));
    for status in expected {
        query = query.bind(status.as_str());
    }
    Ok(query.execute(&mut *conn).await.map_err(backend)?.rows_affected() == 1)
}

async fn insert_payment_row(conn: &mut $conn, p: &Payment) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO payments (id, account_id, order_id, purpose, rail, amount_minor, currency, status, session_id,
                               checkout_url, payment_reference, challenge_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(p.id.as_str())
    .bind(p.account_id.as_ref().map(|a| a.as_str().to_owned()))
    .bind(p.order_id.as_ref().map(|o| o.as_str().to_owned()))
    .bind(p.purpose.as_str())
    .bind(p.rail.as_str())
    .bind(p.amount_minor)
    .bind(p.currency.as_str())
    .bind(p.status.as_str())
    .bind(p.session_id.as_deref())
    .bind(p.checkout_url.as_deref())
    .bind(p.payment_reference.as_deref())
    .bind(p.challenge_id.as_deref())
    .bind(ts(&p.created_at))
    .bind(ts(&p.updated_at))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Conditional on the current status, like `update_order_row`.
async fn update_payment_row(conn: &mut $conn, p: &Payment, expected: &[PaymentState]) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders: Vec<String> = (5..5 + expected.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "UPDATE payments SET status = $1, payment_reference = $2, updated_at = $3 WHERE id = $4 AND status IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(p.status.as_str())
        .bind(p.payment_reference.as_deref())
        .bind(ts(&p.updated_at))
        .bind(p.id.as_str());
    for status in expected {
        query = query.bind(status.as_str());
    }
    Ok(query.execute(&mut *conn).await.map_err(backend)?.rows_affected() == 1)
}

async fn insert_key(conn: &mut $conn, key: &ApiKey) -> StoreResult<()> {
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

    };
}

pub(crate) use shared_store;
