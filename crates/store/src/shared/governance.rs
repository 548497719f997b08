//! Agents, their rules and budgets, the audit trail, checkouts and approvals.

use async_trait::async_trait;
use sqlx::Row as _;
use storefront_app::ports::{
    AgentForDecision, AgentRule, BudgetGuard, GovernanceStore, Refusal, StoreResult,
};
use storefront_domain::agent::{Agent, Approval, ApprovalStatus, AuditEvent};
use storefront_domain::checkout::{Checkout, CheckoutStatus};
use storefront_domain::event::Event;
use storefront_domain::governance::RuleKind;
use storefront_domain::ids::{AccountId, AgentId, ApprovalId, AuditId, CheckoutId, OrderId};
use storefront_domain::order::Order;
use storefront_domain::timestamp::{format as ts, Timestamp};

use super::common::{backend, commit, parse_json, parse_ts, placeholders, to_json};
use super::db;
use super::events::insert_event_rows;
use super::rows::{
    agent_from_row, approval_from_row, checkout_from_row, order_from_row, rule_from_columns,
    rule_from_row, ColumnsExt as _,
};

/// An agent (`$1`) joined with its rules and its spending rows (one source per row: a rule's
/// columns or a spending row's), so a decision costs one read. Spending (since `$2`) is read
/// only when an enabled rule of a kind `$3`, `$4` needs it; `SPENDING` says which rows count.
static AGENT_FOR_DECISION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT a.*, x.* FROM agents a LEFT JOIN (
             SELECT r.id AS rule_id, r.agent_id AS rule_agent_id, r.code AS rule_code,
                    r.name AS rule_name, r.kind AS rule_kind, r.params AS rule_params,
                    r.action AS rule_action, r.enabled AS rule_enabled,
                    r.created_at AS rule_created_at, r.updated_at AS rule_updated_at,
                    NULL AS spent_at, NULL AS spent_minor
             FROM rules r WHERE r.agent_id = $1
             UNION ALL
             SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.created_at, s.total_minor
             FROM ({SPENDING}) s
             WHERE EXISTS (SELECT 1 FROM rules WHERE agent_id = $1 AND enabled AND kind IN ($3, $4))
         ) x ON TRUE
         WHERE a.id = $1 AND a.deleted_at IS NULL
         ORDER BY x.rule_code, x.spent_at"
    )
});

/// What an agent spent (`$1`) since a time (`$2`): its live orders and its approved or completed
/// checkouts, as `(created_at, total_minor)` rows.
const SPENDING: &str = "SELECT created_at, total_minor FROM orders
     WHERE agent_id = $1 AND created_at >= $2 AND status NOT IN ('failed', 'canceled')
     UNION ALL
     SELECT created_at, total_minor FROM checkouts
     WHERE agent_id = $1 AND created_at >= $2 AND status IN ('approved', 'completed')";

#[async_trait]
impl GovernanceStore for db::Adapter {
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
        self.find_one(
            "SELECT * FROM agents WHERE id = $1 AND deleted_at IS NULL",
            id.as_str(),
            |r| agent_from_row(r),
        )
        .await
    }

    async fn get_agent_for_decision(
        &self,
        id: &AgentId,
        spending_since: Timestamp,
    ) -> StoreResult<Option<AgentForDecision>> {
        let params = [
            id.as_str(),
            &ts(&spending_since),
            RuleKind::READING_SPENDING[0],
            RuleKind::READING_SPENDING[1],
        ];
        // Every agent-key order and check starts here: inline where it can be.
        self.read_rows(&AGENT_FOR_DECISION, &params, |rows| {
            let Some(first) = rows.next_row()? else {
                return Ok(None);
            };
            let agent = agent_from_row(first)?;
            let mut rules = Vec::new();
            let mut spending = Vec::new();
            let mut row = Some(first);
            while let Some(r) = row {
                if r.column::<Option<&str>>("rule_id").is_some() {
                    rules.push(rule_from_columns(r, "rule_")?);
                } else if let Some(at) = r.column::<Option<&str>>("spent_at") {
                    spending.push((parse_ts(at)?, r.column::<i64>("spent_minor")));
                }
                row = rows.next_row()?;
            }
            Ok(Some(AgentForDecision {
                agent,
                rules,
                spending,
            }))
        })
        .await
    }

    async fn list_agents(&self, account: &AccountId) -> StoreResult<Vec<Agent>> {
        let rows = sqlx::query(
            "SELECT * FROM agents WHERE account_id = $1 AND deleted_at IS NULL ORDER BY id",
        )
        .bind(account.as_str())
        .fetch_all(self.reader())
        .await
        .map_err(backend)?;
        rows.iter().map(|r| agent_from_row(r)).collect()
    }

    async fn update_agent(&self, a: &Agent, events: &[Event]) -> StoreResult<bool> {
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
        if done != 1 {
            return Ok(false);
        }
        insert_event_rows(&mut tx, events).await?;
        commit(tx).await?;
        Ok(true)
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
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE agent_id = $2 AND revoked_at IS NULL",
        )
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

    /// Batched with the audit records of other callers (see `crate::append`).
    async fn insert_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        let store = self.clone();
        self.appends()
            .audit
            .append(e.clone(), move |events| {
                let store = store.clone();
                async move {
                    let mut tx = store.begin().await?;
                    insert_audit_rows(&mut tx, &events).await?;
                    commit(tx).await
                }
            })
            .await
    }

    async fn list_audit(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>> {
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
                    agent_id: r
                        .get::<Option<String>, _>("agent_id")
                        .map(AgentId::from_trusted),
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
        self.find_one(
            "SELECT * FROM checkouts WHERE id = $1",
            id.as_str(),
            checkout_from_row,
        )
        .await
    }

    async fn agent_open_checkouts(&self, agent: &AgentId) -> StoreResult<Vec<Checkout>> {
        let rows = sqlx::query("SELECT * FROM checkouts WHERE agent_id = $1 AND status NOT IN ('completed', 'canceled') ORDER BY id")
            .bind(agent.as_str())
            .fetch_all(self.reader())
            .await
            .map_err(backend)?;
        rows.iter().map(checkout_from_row).collect()
    }

    async fn find_approval_for_checkout(
        &self,
        checkout: &CheckoutId,
    ) -> StoreResult<Option<Approval>> {
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
        rows.iter().map(|r| order_from_row(r)).collect()
    }

    async fn get_approval(&self, id: &ApprovalId) -> StoreResult<Option<Approval>> {
        self.find_one(
            "SELECT * FROM approvals WHERE id = $1",
            id.as_str(),
            approval_from_row,
        )
        .await
    }

    async fn find_approval_for_order(&self, order: &OrderId) -> StoreResult<Option<Approval>> {
        self.find_one(
            "SELECT * FROM approvals WHERE order_id = $1",
            order.as_str(),
            approval_from_row,
        )
        .await
    }

    async fn list_approvals(
        &self,
        account: &AccountId,
        status: Option<ApprovalStatus>,
    ) -> StoreResult<Vec<Approval>> {
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

    async fn agent_spending(
        &self,
        agent: &AgentId,
        since: Timestamp,
    ) -> StoreResult<Vec<(Timestamp, i64)>> {
        let rows = sqlx::query(&format!("{SPENDING} ORDER BY created_at"))
            .bind(agent.as_str())
            .bind(ts(&since))
            .fetch_all(self.reader())
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_ts(r.get("created_at"))?,
                    r.get::<i64, _>("total_minor"),
                ))
            })
            .collect()
    }
}

/// Locks the agent (PostgreSQL: its row; SQLite: the single writer already serializes), then
/// refuses the order if any budget would be exceeded by it.
pub(super) async fn check_budget(
    conn: &mut db::Connection,
    guard: &BudgetGuard,
) -> StoreResult<Result<(), Refusal>> {
    let lock = format!("SELECT id FROM agents WHERE id = $1 {}", db::ROW_LOCK);
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
            return Ok(Err(Refusal::BudgetExceeded {
                spent_minor: spent,
                max_minor: *max_minor,
            }));
        }
    }
    Ok(Ok(()))
}

pub(super) async fn insert_approval_row(
    conn: &mut db::Connection,
    a: &Approval,
) -> StoreResult<()> {
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
pub(super) async fn update_approval_row(
    conn: &mut db::Connection,
    a: &Approval,
    expected: &[ApprovalStatus],
) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders = placeholders(5, expected.len());
    let sql = format!(
        "UPDATE approvals SET status = $1, decision_reason = $2, decided_at = $3 WHERE id = $4 AND status IN ({})",
        placeholders
    );
    let mut query = sqlx::query(&sql)
        .bind(a.status.as_str())
        .bind(a.decision_reason.as_deref())
        .bind(a.decided_at.as_ref().map(ts))
        .bind(a.id.as_str());
    for status in expected {
        query = query.bind(status.as_str());
    }
    Ok(query
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected()
        == 1)
}

/// Conditional on the current status, like the other state changes.
pub(super) async fn update_checkout_row(
    conn: &mut db::Connection,
    c: &Checkout,
    expected: &[CheckoutStatus],
) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders = placeholders(15, expected.len());
    let sql = format!(
        "UPDATE checkouts SET status = $1, items = $2, total_minor = $3, merchant_name = $4, merchant_domain = $5, category = $6,
                              metadata = $7, rule_result = $8, rule_name = $9, reason = $10, receipt_order = $11, updated_at = $12,
                              currency = $13
         WHERE id = $14 AND status IN ({})",
        placeholders
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
    Ok(query
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected()
        == 1)
}

/// Many audit records in one statement.
async fn insert_audit_rows(conn: &mut db::Connection, events: &[AuditEvent]) -> StoreResult<()> {
    let mut insert = sqlx::QueryBuilder::<db::Database>::new(
        "INSERT INTO audit_events (id, account_id, agent_id, kind, result, rule_code, detail, created_at) ",
    );
    insert.push_values(events, |mut row, e| {
        row.push_bind(e.id.as_str().to_owned())
            .push_bind(e.account_id.as_str().to_owned())
            .push_bind(e.agent_id.as_ref().map(|a| a.as_str().to_owned()))
            .push_bind(e.kind.clone())
            .push_bind(e.result.clone())
            .push_bind(e.rule_code.clone())
            .push_bind(to_json(&e.detail))
            .push_bind(ts(&e.created_at));
    });
    insert.build().execute(&mut *conn).await.map_err(backend)?;
    Ok(())
}
